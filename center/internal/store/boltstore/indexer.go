package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// The audit log's lookup indexes (by kiosk, request, certificate,
// municipality, operator, result and type) are written behind the log: an
// event is durable, chained and counted when its append commits, and the
// indexer adds it to the indexes in a later transaction, together with
// every other event appended since. Why: each index entry lands on a
// different B+tree page, and bbolt writes (and first copies into memory)
// every page a transaction dirties; written with each append, the indexes
// were 12 of the 21 pages and about two thirds of the allocations of one
// issuance's three commits (docs/BENCHMARKS.md). Gathered over a quarter
// of a second, the time-ordered indexes' right edges are written once per
// pass instead of once per commit, and a request's entries share a page.
//
// A query never misses an event for it: Events reads the index and then
// the events the indexer has not reached yet (store.meta audit.indexed,
// written in the same transaction as the entries it covers, so a crash
// leaves the two consistent and the indexer resumes where it stopped).

var keyAuditIndexed = []byte("audit.indexed")

const (
	// indexEvery is how often the indexer runs while events arrive.
	indexEvery = 250 * time.Millisecond
	// indexBatch bounds one pass, so that the commit carrying it (shared
	// with issuance writes) stays short after a backlog.
	indexBatch = 2000
)

// indexedSeq is the sequence number up to which every event is indexed.
func indexedSeq(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyAuditIndexed); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func putIndexedSeq(tx *bolt.Tx, seq uint64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], seq)
	return tx.Bucket(bucketMeta).Put(keyAuditIndexed, v[:])
}

// initIndexedSeq marks the events of a file written before the indexer
// (indexed with their appends) as indexed.
func initIndexedSeq(tx *bolt.Tx) error {
	if tx.Bucket(bucketMeta).Get(keyAuditIndexed) != nil {
		return nil
	}
	return putIndexedSeq(tx, tx.Bucket(bucketAudit).Sequence())
}

// pendingEvent is an appended event the indexer has not reached.
type pendingEvent struct {
	key []byte // audit key
	e   store.Event
}

// forPending calls fn for each event after the indexed sequence, in
// sequence order, at most limit of them (0: all).
func forPending(tx *bolt.Tx, limit int, fn func(seq uint64, key []byte, e *store.Event) error) error {
	from := indexedSeq(tx)
	if from >= tx.Bucket(bucketAudit).Sequence() {
		return nil
	}
	audit := tx.Bucket(bucketAudit)
	var start [8]byte
	binary.BigEndian.PutUint64(start[:], from+1)
	c := tx.Bucket(bucketAuditBySeq).Cursor()
	n := 0
	for k, key := c.Seek(start[:]); k != nil && (limit == 0 || n < limit); k, key = c.Next() {
		n++
		raw := audit.Get(key)
		if raw == nil {
			return fmt.Errorf("boltstore: audit sequence %d names a missing event", binary.BigEndian.Uint64(k))
		}
		var e store.Event
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("boltstore: decoding event: %w", err)
		}
		if err := fn(binary.BigEndian.Uint64(k), key, &e); err != nil {
			return err
		}
	}
	return nil
}

// indexPass indexes up to indexBatch pending events; more reports that
// events remain.
func indexPass(tx *bolt.Tx) (more bool, err error) {
	last, n := uint64(0), 0
	err = forPending(tx, indexBatch, func(seq uint64, key []byte, e *store.Event) error {
		last, n = seq, n+1
		return indexEvent(tx, e, key, nil)
	})
	if err != nil || n == 0 {
		return false, err
	}
	return n == indexBatch, putIndexedSeq(tx, last)
}

// indexPending indexes every pending event, a pass per commit. It goes to
// the commit queue directly: Close runs it after the store stopped taking
// calls.
func (s *Store) indexPending(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var more bool
		err := s.commit.do(func(tx *bolt.Tx) error {
			var err error
			more, err = indexPass(tx)
			return err
		})
		if err != nil || !more {
			return err
		}
	}
}

// hasPending reports whether events await the indexer.
func (s *Store) hasPending() bool {
	pending := false
	s.db.View(func(tx *bolt.Tx) error {
		pending = indexedSeq(tx) < tx.Bucket(bucketAudit).Sequence()
		return nil
	})
	return pending
}

// indexLoop runs the indexer every interval until stop closes, then
// indexes what is left.
func (s *Store) indexLoop(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			s.indexPending(context.Background())
			return
		case <-t.C:
			if s.hasPending() {
				// A failure (a full disk) is the commit's, and the
				// events stay pending for the next pass and for queries.
				s.indexPending(context.Background())
			}
		}
	}
}

// pendingMatches returns the pending events q selects within the audit
// key bounds [lo, hi) (hi nil: no end), past the page position after (nil:
// none) in q's direction.
func pendingMatches(tx *bolt.Tx, q *store.EventQuery, lo, hi, after []byte) ([]pendingEvent, error) {
	var out []pendingEvent
	err := forPending(tx, 0, func(_ uint64, key []byte, e *store.Event) error {
		if bytes.Compare(key, lo) < 0 || (hi != nil && bytes.Compare(key, hi) >= 0) || !matches(q, e) {
			return nil
		}
		if after != nil {
			if c := bytes.Compare(key, after); (!q.Descending && c <= 0) || (q.Descending && c >= 0) {
				return nil
			}
		}
		out = append(out, pendingEvent{key: slices.Clone(key), e: *e})
		return nil
	})
	return out, err
}

// mergeEvents merges two lists of events ordered by audit key in q's
// direction and keeps the first limit.
func mergeEvents(a, b []pendingEvent, descending bool, limit int) []store.Event {
	out := make([]store.Event, 0, min(limit, len(a)+len(b)))
	for len(out) < limit && (len(a) > 0 || len(b) > 0) {
		takeA := len(b) == 0
		if len(a) > 0 && len(b) > 0 {
			c := bytes.Compare(a[0].key, b[0].key)
			takeA = (c < 0) != descending
		}
		if takeA {
			out, a = append(out, a[0].e), a[1:]
		} else {
			out, b = append(out, b[0].e), b[1:]
		}
	}
	return out
}
