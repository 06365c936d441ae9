package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// checkChain recomputes the hash chain over evs (in sequence order).
func checkChain(t *testing.T, evs []store.Event) {
	t.Helper()
	prev := store.GenesisHash
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has sequence %d: the chain has a hole or is out of order", i+1, e.Seq)
		}
		if e.PrevHash != prev {
			t.Fatalf("event %d: prevHash %s, want %s", e.Seq, e.PrevHash, prev)
		}
		if want := store.ChainHash(prev, e); e.Hash != want {
			t.Fatalf("event %d: hash %s, recomputed %s", e.Seq, e.Hash, want)
		}
		prev = e.Hash
	}
}

func testAuditChain(t *testing.T, s store.Store) {
	ctx := context.Background()
	seq, head, err := s.AuditHead(ctx)
	mustNil(t, "AuditHead of an empty log", err)
	if seq != 0 || head != store.GenesisHash {
		t.Fatalf("empty log head = %d %s", seq, head)
	}
	// Concurrent appends, and events appended inside register changes:
	// one chain in sequence order all the same.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				e := event(base.Add(time.Duration(i)*time.Second), store.EventPrinted, fmt.Sprintf("kiosk-%d", w), "012041", certificate.Domestic, 1)
				if _, err := s.AppendEvent(ctx, e); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := NewRequest("req-chain", "kiosk-c", base)
		if _, err := s.ClaimRequest(ctx, r, time.Time{}, reqEvent(r, store.EventRequested, base)); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	evs, err := s.EventsBySeq(ctx, 1, store.MaxEventLimit)
	mustNil(t, "EventsBySeq", err)
	if len(evs) != 41 {
		t.Fatalf("%d events, want 41", len(evs))
	}
	checkChain(t, evs)
	seq, head, err = s.AuditHead(ctx)
	mustNil(t, "AuditHead", err)
	if seq != 41 || head != evs[40].Hash {
		t.Fatalf("head = %d %s, want 41 and the last event's hash", seq, head)
	}
	tail, err := s.EventsBySeq(ctx, 40, 10)
	mustNil(t, "EventsBySeq from 40", err)
	if len(tail) != 2 || tail[0].Seq != 40 {
		t.Fatalf("EventsBySeq(40) = %d events from %d", len(tail), tail[0].Seq)
	}
	// An event whose hash fields a caller filled in is refused: the store
	// sets them.
	forged := event(base, store.EventPrinted, "kiosk-f", "012041", certificate.Domestic, 1)
	forged.Hash = "x"
	_, err = s.AppendEvent(ctx, forged)
	mustIs(t, "AppendEvent with a malformed hash", err, store.ErrInvalid)

	cp := store.Checkpoint{Seq: 41, Hash: head, Time: base, KeyID: "audit-1", Signature: []byte{1, 2, 3}}
	mustNil(t, "PutCheckpoint", s.PutCheckpoint(ctx, cp))
	mustIs(t, "PutCheckpoint twice", s.PutCheckpoint(ctx, cp), store.ErrExists)
	mustIs(t, "PutCheckpoint invalid", s.PutCheckpoint(ctx, store.Checkpoint{Seq: 1}), store.ErrInvalid)
	earlier := cp
	earlier.Seq, earlier.Hash = 20, evs[19].Hash
	mustNil(t, "PutCheckpoint earlier", s.PutCheckpoint(ctx, earlier))
	cps, err := s.Checkpoints(ctx)
	mustNil(t, "Checkpoints", err)
	if len(cps) != 2 || cps[0].Seq != 20 || cps[1].Seq != 41 || string(cps[1].Signature) != string([]byte{1, 2, 3}) || !cps[1].Time.Equal(store.Time(base)) {
		t.Fatalf("Checkpoints = %+v", cps)
	}
}
