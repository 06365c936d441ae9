// Package auditlog makes the audit log — the basis of settlement between
// municipalities and store chains — tamper-evident, and checks it.
//
// The store chains every event to its predecessor (store.ChainHash), so
// editing, deleting or reordering an event breaks the chain from that
// event on. An insider who rewrites the chain from some point on (every
// hash recomputed) is caught by the checkpoints: at least once a minute the
// Checkpointer signs the chain's head (sequence number and hash) with the
// audit key, a key of its own that signs nothing else and can live in an
// HSM (keyring, PurposeAudit). Verify recomputes the chain, checks every
// checkpoint's signature and hash, reports the first broken link, and
// recomputes the settlement counters from the verified events, so the
// figures a municipality is billed on can be shown to follow from a log
// that was not changed.
package auditlog

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Source is what verification reads (store.Store).
type Source interface {
	EventsBySeq(ctx context.Context, from uint64, limit int) ([]store.Event, error)
	Checkpoints(ctx context.Context) ([]store.Checkpoint, error)
	ListSigningKeys(ctx context.Context, purpose store.KeyPurpose) ([]store.SigningKey, error)
	DailyCounts(ctx context.Context, firstDay, lastDay string) ([]store.DailyCount, error)
}

// Problem is one broken link.
type Problem struct {
	Seq  uint64 `json:"seq"`
	What string `json:"what"`
}

// Report is the result of Verify.
type Report struct {
	Events      uint64 `json:"events"`      // events read
	Checkpoints int    `json:"checkpoints"` // checkpoints verified
	// Unchained counts events written before the log was chained (older
	// centers); the chain is checked from the first chained event on.
	Unchained uint64 `json:"unchained,omitempty"`
	// First is the first broken link, nil when the log verifies.
	First *Problem `json:"first,omitempty"`
	// Problems lists up to 100 problems in sequence order.
	Problems []Problem `json:"problems,omitempty"`
	// Settlement holds the settlement counters recomputed from the
	// verified events, and Mismatches the days whose stored counters
	// disagree with them.
	Settlement []store.DailyCount `json:"settlement,omitempty"`
	Mismatches []string           `json:"settlementMismatches,omitempty"`
	// VerifiedThrough is the last sequence number covered by a verified
	// checkpoint (events after it are chained but not yet signed).
	VerifiedThrough uint64 `json:"verifiedThrough"`
}

// OK reports whether the log verified.
func (r *Report) OK() bool { return r.First == nil && len(r.Mismatches) == 0 }

func (r *Report) problem(seq uint64, format string, args ...any) {
	p := Problem{Seq: seq, What: fmt.Sprintf(format, args...)}
	if r.First == nil {
		r.First = &p
	}
	if len(r.Problems) < 100 {
		r.Problems = append(r.Problems, p)
	}
}

// Verify checks the whole log. The settlement counters of the days
// between firstDay and lastDay (YYYY-MM-DD; empty for none) are recomputed
// and compared.
func Verify(ctx context.Context, src Source, firstDay, lastDay string) (*Report, error) {
	keys, err := auditKeys(ctx, src)
	if err != nil {
		return nil, err
	}
	cps, err := src.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	r := &Report{}
	bySeq := map[uint64]store.Checkpoint{}
	for _, c := range cps {
		bySeq[c.Seq] = c
	}
	counts := map[string]*store.DailyCount{}
	prev, chained := "", false
	next := uint64(1)
	for {
		evs, err := src.EventsBySeq(ctx, next, store.MaxEventLimit)
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			r.Events++
			switch {
			case e.Seq != next:
				r.problem(next, "events %d to %d are missing", next, e.Seq-1)
			case e.Type == "" && e.Hash == "":
				r.problem(e.Seq, "event is missing (its index entry remains)")
			}
			next = e.Seq + 1
			if e.Hash == "" && !chained {
				r.Unchained++
				continue
			}
			if !chained {
				chained, prev = true, e.PrevHash
			}
			switch {
			case e.PrevHash != prev:
				r.problem(e.Seq, "does not follow the event before it (events deleted, inserted or reordered)")
			case store.ChainHash(e.PrevHash, e) != e.Hash:
				r.problem(e.Seq, "was altered after it was written (its hash does not match its content)")
			}
			prev = e.Hash
			if c, ok := bySeq[e.Seq]; ok {
				if err := checkCheckpoint(c, e.Hash, keys); err != nil {
					r.problem(e.Seq, "checkpoint: %v", err)
				} else {
					r.Checkpoints++
					if r.First == nil {
						r.VerifiedThrough = e.Seq
					}
				}
				delete(bySeq, e.Seq)
			}
			if e.Municipality != "" && firstDay != "" {
				day := store.SettlementDay(e.Time)
				if day >= firstDay && day <= lastDay {
					k := day + "\x00" + e.Municipality + "\x00" + string(e.Type) + "\x00" + string(e.Kind)
					dc := counts[k]
					if dc == nil {
						dc = &store.DailyCount{Day: day, Municipality: e.Municipality, Type: e.Type, Kind: e.Kind}
						counts[k] = dc
					}
					dc.Events++
					dc.Copies += int64(e.Copies)
				}
			}
		}
	}
	for seq := range bySeq {
		r.problem(seq, "a checkpoint names an event the log does not hold (events removed from the end)")
	}
	if firstDay != "" {
		stored, err := src.DailyCounts(ctx, firstDay, lastDay)
		if err != nil {
			return nil, err
		}
		for _, dc := range stored {
			k := dc.Day + "\x00" + dc.Municipality + "\x00" + string(dc.Type) + "\x00" + string(dc.Kind)
			got := counts[k]
			if got == nil || got.Events != dc.Events || got.Copies != dc.Copies {
				r.Mismatches = append(r.Mismatches, fmt.Sprintf("%s %s %s %s: stored %d events/%d copies, the log gives %v",
					dc.Day, dc.Municipality, dc.Type, dc.Kind, dc.Events, dc.Copies, counted(got)))
			}
			delete(counts, k)
		}
		for _, dc := range counts {
			r.Mismatches = append(r.Mismatches, fmt.Sprintf("%s %s %s %s: no stored counter, the log gives %d events/%d copies",
				dc.Day, dc.Municipality, dc.Type, dc.Kind, dc.Events, dc.Copies))
		}
		r.Settlement = flatten(counts, stored)
	}
	return r, nil
}

func counted(d *store.DailyCount) string {
	if d == nil {
		return "none"
	}
	return fmt.Sprintf("%d events/%d copies", d.Events, d.Copies)
}

func flatten(left map[string]*store.DailyCount, stored []store.DailyCount) []store.DailyCount {
	out := append([]store.DailyCount(nil), stored...)
	for _, d := range left {
		out = append(out, *d)
	}
	return out
}

func auditKeys(ctx context.Context, src Source) (map[string]*ecdsa.PublicKey, error) {
	sks, err := src.ListSigningKeys(ctx, store.PurposeAudit)
	if err != nil {
		return nil, err
	}
	out := map[string]*ecdsa.PublicKey{}
	for _, sk := range sks {
		pub, err := parsePublicKey(sk.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("auditlog: key %s: %w", sk.KID, err)
		}
		out[sk.KID] = pub
	}
	return out, nil
}

func parsePublicKey(b []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("no PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return pub, nil
}

func checkCheckpoint(c store.Checkpoint, hash string, keys map[string]*ecdsa.PublicKey) error {
	pub, ok := keys[c.KeyID]
	if !ok {
		return fmt.Errorf("signed by unknown key %s", c.KeyID)
	}
	digest := sha256.Sum256(c.Message())
	if !ecdsa.VerifyASN1(pub, digest[:], c.Signature) {
		return errors.New("signature does not verify")
	}
	if c.Hash != hash {
		return errors.New("the chain was rewritten: the signed head differs from the log's")
	}
	return nil
}

// Head is what the Checkpointer reads (store.Store).
type Head interface {
	AuditHead(ctx context.Context) (uint64, string, error)
	PutCheckpoint(ctx context.Context, c store.Checkpoint) error
}

// Checkpointer signs the chain's head.
type Checkpointer struct {
	Store  Head
	Signer crypto.Signer
	KeyID  string
	Now    func() time.Time
	Log    *slog.Logger
	last   uint64
}

// Checkpoint signs the current head if it moved since the last one.
func (c *Checkpointer) Checkpoint(ctx context.Context) error {
	seq, hash, err := c.Store.AuditHead(ctx)
	if err != nil || seq == 0 || seq == c.last {
		return err
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	cp := store.Checkpoint{Seq: seq, Hash: hash, Time: store.Time(now()), KeyID: c.KeyID}
	digest := sha256.Sum256(cp.Message())
	if cp.Signature, err = c.Signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		return fmt.Errorf("auditlog: sign checkpoint: %w", err)
	}
	if err := c.Store.PutCheckpoint(ctx, cp); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	c.last = seq
	return nil
}

// Run checkpoints every interval until ctx ends, and once more at the end.
func (c *Checkpointer) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The final head, so a clean stop leaves nothing unsigned.
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := c.Checkpoint(fctx); err != nil && c.Log != nil {
				c.Log.Error("final audit checkpoint", "err", err)
			}
			cancel()
			return
		case <-t.C:
			if err := c.Checkpoint(ctx); err != nil && c.Log != nil && ctx.Err() == nil {
				c.Log.Error("audit checkpoint", "err", err)
			}
		}
	}
}
