package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/storetest"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// openIndexing opens a store whose indexer runs every interval (zero:
// never by itself, so every event stays pending until indexPending).
func openIndexing(t *testing.T, path string, interval time.Duration) *Store {
	t.Helper()
	db, err := boltfile.Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := prepare(db); err != nil {
		t.Fatal(err)
	}
	s := newStore(db, interval)
	s.owned = true
	return s
}

// The conformance suite with every event still pending (queries read the
// log's unindexed tail), and with an indexer racing the queries.
func TestConformanceIndexing(t *testing.T) {
	for _, interval := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprint("indexer every ", interval), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				return openIndexing(t, filepath.Join(t.TempDir(), "center.db"), interval)
			})
		})
	}
}

// TestIndexerCatchesUp: events appended while nothing indexes them are
// found by every query, the same before and after the indexer runs, paged
// or not, and a store opened on a file with a backlog (a center killed
// before its indexer ran) indexes it.
func TestIndexerCatchesUp(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "center.db")
	s := openIndexing(t, path, 0)
	base := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	const n = indexBatch + 301 // more than one pass
	for i := range n {
		// Times not in sequence order: a write that waited in the
		// queue carries an earlier time than one appended before it.
		e := store.Event{Time: base.Add(time.Duration(i%97) * time.Second), Type: store.EventRequested,
			KioskID: fmt.Sprintf("K%d", i%7), RequestID: fmt.Sprintf("req-%d", i%400), Municipality: []string{"131016", "012041"}[i%2],
			Kind: certificate.Domestic, Copies: 1, Result: []string{"ok", "refused"}[i%3/2]}
		if i%5 == 0 {
			e.Type, e.CertificateID = store.EventIssued, fmt.Sprintf("C%011d", i%50)
		}
		if _, err := s.AppendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	queries := []store.EventQuery{
		{KioskID: "K3"},
		{KioskID: "K3", Descending: true},
		{RequestID: "req-17"},
		{CertificateID: "C00000000010"},
		{Municipality: "012041", From: base.Add(10 * time.Second), To: base.Add(20 * time.Second)},
		{Result: "refused", Descending: true, From: base.Add(30 * time.Second)},
		{Type: store.EventIssued},
		{KioskID: "K-none"},
		{}, // the log itself
	}
	// pages reads every event q selects, limit at a time.
	pages := func(q store.EventQuery, limit int) []store.Event {
		t.Helper()
		q.Limit = limit
		var out []store.Event
		for {
			page, err := s.Events(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, page...)
			if len(page) < q.Limit {
				return out
			}
			q.After = page[len(page)-1].Position()
		}
	}
	all := func(q store.EventQuery) []store.Event { return pages(q, store.MaxEventLimit) }
	paged := func(q store.EventQuery) []store.Event { return pages(q, 50) }
	seqs := func(evs []store.Event) []uint64 {
		out := make([]uint64, len(evs))
		for i, e := range evs {
			out[i] = e.Seq
		}
		return out
	}
	before := make([][]uint64, len(queries))
	for i, q := range queries {
		before[i] = seqs(all(q))
		if got := seqs(paged(q)); !slices.Equal(got, before[i]) {
			t.Errorf("query %+v pending: in pages of 50 %d events, at once %d", q, len(got), len(before[i]))
		}
		if len(before[i]) == 0 && q.KioskID != "K-none" {
			t.Errorf("query %+v found nothing", q)
		}
	}
	if got := len(before[len(before)-1]); got != n {
		t.Fatalf("the log holds %d events, want %d", got, n)
	}
	// Half indexed: one pass, then the rest.
	if err := s.commit.do(func(tx *bolt.Tx) error { _, err := indexPass(tx); return err }); err != nil {
		t.Fatal(err)
	}
	for i, q := range queries {
		if got := seqs(paged(q)); !slices.Equal(got, before[i]) {
			t.Errorf("query %+v half indexed: %d events, want %d", q, len(got), len(before[i]))
		}
	}
	if err := s.indexPending(ctx); err != nil {
		t.Fatal(err)
	}
	if s.hasPending() {
		t.Fatal("events pending after indexPending")
	}
	for i, q := range queries {
		if got := seqs(all(q)); !slices.Equal(got, before[i]) {
			t.Errorf("query %+v indexed: %d events, want %d", q, len(got), len(before[i]))
		}
	}

	// A backlog left by a store that stopped without indexing is indexed
	// by the next one to open the file.
	for i := range 50 {
		e := store.Event{Time: base.Add(time.Hour), Type: store.EventPrinted, KioskID: "K-late", RequestID: fmt.Sprintf("late-%d", i)}
		if _, err := s.AppendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	s.Close() // this store's indexer never runs: the 50 stay pending
	s2, err := Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s2.hasPending() {
		if time.Now().After(deadline) {
			t.Fatal("the reopened store did not index the backlog")
		}
		time.Sleep(20 * time.Millisecond)
	}
	late, err := s2.Events(ctx, store.EventQuery{KioskID: "K-late", Limit: store.MaxEventLimit})
	if err != nil || len(late) != 50 {
		t.Fatalf("K-late after reopening: %d events, %v; want 50", len(late), err)
	}
}

// TestCloseIndexesTheRest: Close indexes what is pending.
func TestCloseIndexesTheRest(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "center.db")
	s := openIndexing(t, path, time.Hour)
	if _, err := s.AppendEvent(ctx, store.Event{Time: time.Now(), Type: store.EventRequested, KioskID: "K1", RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	if !s.hasPending() {
		t.Fatal("the event was indexed with its append")
	}
	s.Close()
	db, err := boltfile.Open(path, boltfile.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if indexedSeq(tx) != tx.Bucket(bucketAudit).Sequence() {
			t.Error("events pending after Close")
		}
		return nil
	})
}
