package boltstore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/auditlog"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// The audit log is tamper-evident: edits, deletions, reorderings, a
// rewritten chain and edited settlement counters in a copy of the store are
// each found by auditlog.Verify, which names the first broken link.

var tamperDay = time.Date(2024, 4, 1, 1, 0, 0, 0, time.UTC) // 10:00 JST

// tamperLog writes 20 events with a checkpoint after event 10 and event
// 20, closes the store and returns its file.
func tamperLog(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "center.db")
	s, err := Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err := s.PutSigningKey(ctx, store.SigningKey{KID: "audit-test", Purpose: store.PurposeAudit, Format: store.FormatPEM,
		PublicKey: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), Created: tamperDay, NotAfter: tamperDay.Add(time.Hour), Status: store.KeyActive}); err != nil {
		t.Fatal(err)
	}
	cp := &auditlog.Checkpointer{Store: s, Signer: key, KeyID: "audit-test", Now: func() time.Time { return tamperDay }}
	for i := range 20 {
		e := store.Event{Time: tamperDay.Add(time.Duration(i) * time.Minute), Type: store.EventPrinted, KioskID: "K1",
			Municipality: "012041", Kind: certificate.Domestic, Copies: 1, RequestID: "req" + string(rune('a'+i)), Result: "printed"}
		if _, err := s.AppendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
		if i == 9 || i == 19 {
			if err := cp.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	return path
}

// tamper edits a copy of the store file with f and verifies it.
func tamper(t *testing.T, orig string, f func(tx *bolt.Tx) error) *auditlog.Report {
	t.Helper()
	path := filepath.Join(t.TempDir(), "copy.db")
	in, _ := os.Open(orig)
	out, _ := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	io.Copy(out, in)
	in.Close()
	out.Close()
	if f != nil {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(f); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	s, err := Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	day := store.SettlementDay(tamperDay)
	rep, err := auditlog.Verify(context.Background(), s, day, day)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// editEvent rewrites event seq with f (and, with rechain, recomputes every
// hash from it on, as an insider covering their tracks would).
func editEvent(seq uint64, f func(*store.Event), rechain bool) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		audit, bySeq := tx.Bucket(bucketAudit), tx.Bucket(bucketAuditBySeq)
		prev := ""
		for s := seq; ; s++ {
			k := bySeq.Get(seqKey(s))
			if k == nil {
				break
			}
			var e store.Event
			json.Unmarshal(audit.Get(k), &e)
			if s == seq {
				f(&e)
				prev = e.PrevHash
			}
			if !rechain && s != seq {
				break
			}
			if rechain {
				e.PrevHash = prev
				e.Hash = store.ChainHash(prev, e)
				prev = e.Hash
			}
			b, _ := json.Marshal(e)
			if err := audit.Put(k, b); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestTamperEvidentAudit(t *testing.T) {
	orig := tamperLog(t)
	tests := []struct {
		name     string
		edit     func(tx *bolt.Tx) error
		firstSeq uint64
		want     string // in the first problem, or in a settlement mismatch
		mismatch bool
	}{
		{"untouched", nil, 0, "", false},
		{"copies edited", editEvent(5, func(e *store.Event) { e.Copies = 3 }, false), 5, "altered", false},
		{"kiosk edited", editEvent(12, func(e *store.Event) { e.KioskID = "K9" }, false), 12, "altered", false},
		{"event deleted", func(tx *bolt.Tx) error {
			k := tx.Bucket(bucketAuditBySeq).Get(seqKey(7))
			tx.Bucket(bucketAuditBySeq).Delete(seqKey(7))
			return tx.Bucket(bucketAudit).Delete(k)
		}, 7, "missing or out of place", false},
		{"event deleted, index kept", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAudit).Delete(tx.Bucket(bucketAuditBySeq).Get(seqKey(8)))
		}, 8, "missing", false},
		{"events reordered", func(tx *bolt.Tx) error {
			by, audit := tx.Bucket(bucketAuditBySeq), tx.Bucket(bucketAudit)
			k3, k4 := by.Get(seqKey(3)), by.Get(seqKey(4))
			v3, v4 := bytes.Clone(audit.Get(k3)), bytes.Clone(audit.Get(k4))
			audit.Put(k3, v4)
			return audit.Put(k4, v3)
		}, 3, "out of place", false},
		{"chain rewritten after an edit", editEvent(15, func(e *store.Event) { e.Copies = 5 }, true), 20, "rewritten", false},
		{"events cut from the end", func(tx *bolt.Tx) error {
			by, audit := tx.Bucket(bucketAuditBySeq), tx.Bucket(bucketAudit)
			for s := uint64(18); s <= 20; s++ {
				audit.Delete(by.Get(seqKey(s)))
				by.Delete(seqKey(s))
			}
			return nil
		}, 20, "does not hold", false},
		{"settlement counter edited", func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketAuditDaily).Cursor()
			k, v := c.First()
			v = bytes.Clone(v)
			binary.BigEndian.PutUint64(v[8:], 99)
			return tx.Bucket(bucketAuditDaily).Put(bytes.Clone(k), v)
		}, 0, "stored 20 events/99 copies", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := tamper(t, orig, tc.edit)
			switch {
			case tc.want == "":
				if !rep.OK() || rep.Checkpoints != 2 || rep.VerifiedThrough != 20 || rep.Events != 20 {
					t.Fatalf("untouched log: %+v", rep)
				}
				if len(rep.Settlement) != 1 || rep.Settlement[0].Copies != 20 {
					t.Fatalf("recomputed settlement %+v", rep.Settlement)
				}
			case tc.mismatch:
				if rep.OK() || len(rep.Mismatches) == 0 || !strings.Contains(rep.Mismatches[0], tc.want) {
					t.Fatalf("report %+v, want a settlement mismatch %q", rep, tc.want)
				}
			default:
				if rep.First == nil || rep.First.Seq != tc.firstSeq || !strings.Contains(rep.First.What, tc.want) {
					t.Fatalf("first problem %+v, want event %d %q (all: %+v)", rep.First, tc.firstSeq, tc.want, rep.Problems)
				}
			}
		})
	}
}
