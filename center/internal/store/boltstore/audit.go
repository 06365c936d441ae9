package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// auditKey orders events by time then sequence: 8 bytes of Unix
// microseconds then 8 bytes of sequence, both big-endian. Validate keeps
// times after 2000, so the microseconds are positive.
func auditKey(e *store.Event) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k[:8], uint64(e.Time.UnixMicro()))
	binary.BigEndian.PutUint64(k[8:], e.Seq)
	return k
}

// timeKey is the smallest audit key at or after t (zero t: the start).
func timeKey(q int64) []byte {
	k := make([]byte, 16)
	if q > 0 {
		binary.BigEndian.PutUint64(k[:8], uint64(q))
	}
	return k
}

// requestIndexKey is the flat request index's key: the request ID, a zero
// byte (request IDs never hold one), then the audit key.
func requestIndexKey(requestID string, auditKey []byte) []byte {
	k := make([]byte, 0, len(requestID)+1+len(auditKey))
	return append(append(append(k, requestID...), 0), auditKey...)
}

func dailyKey(day string, e *store.Event) []byte {
	return []byte(day + "\x00" + e.Municipality + "\x00" + string(e.Type) + "\x00" + string(e.Kind))
}

// AppendEvent implements store.AuditLog.
func (s *Store) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	if err := e.Validate(); err != nil {
		return store.Event{}, err
	}
	e.Time = store.Time(e.Time)
	err := s.batch(ctx, func(tx *bolt.Tx) error { return appendEvent(tx, &e) })
	if err != nil {
		return store.Event{}, err
	}
	return e, nil
}

// appendEvent stores e (validated and normalised by the caller) with its
// indexes and settlement counter, assigning its sequence number.
func appendEvent(tx *bolt.Tx, e *store.Event) error {
	audit := tx.Bucket(bucketAudit)
	seq, err := audit.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	// Chain the event to the last one, in sequence order.
	meta := tx.Bucket(bucketMeta)
	prev := store.GenesisHash
	if h := meta.Get(keyAuditHead); len(h) == 8+64 {
		prev = string(h[8:])
	}
	e.Hash = store.ChainHash(prev, *e)
	e.PrevHash = prev
	key := auditKey(e)
	if err := putJSON(audit, key, e); err != nil {
		return err
	}
	var seqKey [8]byte
	binary.BigEndian.PutUint64(seqKey[:], seq)
	if err := tx.Bucket(bucketAuditBySeq).Put(seqKey[:], key); err != nil {
		return err
	}
	if err := meta.Put(keyAuditHead, append(seqKey[:], e.Hash...)); err != nil {
		return err
	}
	// The lookup indexes (kiosk, request, certificate, …) are written
	// later, many events to a transaction, by the indexer (indexer.go);
	// the settlement counters are written now, so a count never disagrees
	// with the log.
	if err := countSettlement(tx, e, nil); err != nil {
		return err
	}
	if e.Municipality != "" {
		daily := tx.Bucket(bucketAuditDaily)
		dk := dailyKey(store.SettlementDay(e.Time), e)
		var counts [16]byte
		if old := daily.Get(dk); len(old) == 16 {
			copy(counts[:], old)
		}
		binary.BigEndian.PutUint64(counts[:8], binary.BigEndian.Uint64(counts[:8])+1)
		binary.BigEndian.PutUint64(counts[8:], binary.BigEndian.Uint64(counts[8:])+uint64(e.Copies))
		if err := daily.Put(dk, counts[:]); err != nil {
			return err
		}
	}
	return nil
}

// prepareEvents validates and normalises events before a transaction.
func prepareEvents(events []store.Event) ([]store.Event, error) {
	out := make([]store.Event, len(events))
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return nil, err
		}
		e.Time = store.Time(e.Time)
		out[i] = e
	}
	return out, nil
}

// DailyCounts implements store.AuditLog.
func (s *Store) DailyCounts(ctx context.Context, firstDay, lastDay string) ([]store.DailyCount, error) {
	first, err := store.ParseDay(firstDay)
	if err != nil {
		return nil, err
	}
	last, err := store.ParseDay(lastDay)
	if err != nil {
		return nil, err
	}
	if last.Before(first) {
		return nil, fmt.Errorf("%w: lastDay is before firstDay", store.ErrInvalid)
	}
	var out []store.DailyCount
	err = s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAuditDaily).Cursor()
		n := 0
		for k, v := c.Seek([]byte(firstDay)); k != nil; k, v = c.Next() {
			parts := bytes.Split(k, []byte{0})
			if len(parts) != 4 || len(v) != 16 {
				return fmt.Errorf("boltstore: malformed settlement counter")
			}
			if string(parts[0]) > lastDay {
				break
			}
			if n++; n%iterCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			out = append(out, store.DailyCount{
				Day:          string(parts[0]),
				Municipality: string(parts[1]),
				Type:         store.EventType(parts[2]),
				Kind:         certificate.Kind(parts[3]),
				Events:       int64(binary.BigEndian.Uint64(v[:8])),
				Copies:       int64(binary.BigEndian.Uint64(v[8:])),
			})
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.Day != b.Day:
			return a.Day < b.Day
		case a.Municipality != b.Municipality:
			return a.Municipality < b.Municipality
		case a.Type != b.Type:
			return a.Type < b.Type
		}
		return a.Kind < b.Kind
	})
	return out, err
}

// EventsBySeq implements store.AuditLog.
func (s *Store) EventsBySeq(ctx context.Context, from uint64, limit int) ([]store.Event, error) {
	limit = store.EventQuery{Limit: limit}.EffectiveLimit()
	var out []store.Event
	err := s.view(ctx, func(tx *bolt.Tx) error {
		audit := tx.Bucket(bucketAudit)
		c := tx.Bucket(bucketAuditBySeq).Cursor()
		var start [8]byte
		binary.BigEndian.PutUint64(start[:], from)
		n := 0
		for k, v := c.Seek(start[:]); k != nil && len(out) < limit; k, v = c.Next() {
			if n++; n%iterCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			raw := audit.Get(v)
			if raw == nil {
				// The chain's index names an event that is gone: report
				// it as an event with only its sequence number, so a
				// verifier sees the hole where it is.
				out = append(out, store.Event{Seq: binary.BigEndian.Uint64(k)})
				continue
			}
			var e store.Event
			if err := json.Unmarshal(raw, &e); err != nil {
				return fmt.Errorf("boltstore: decoding event: %w", err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// AuditHead implements store.AuditLog.
func (s *Store) AuditHead(ctx context.Context) (uint64, string, error) {
	seq, hash := uint64(0), store.GenesisHash
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if h := tx.Bucket(bucketMeta).Get(keyAuditHead); len(h) == 8+64 {
			seq, hash = binary.BigEndian.Uint64(h[:8]), string(h[8:])
		}
		return nil
	})
	return seq, hash, err
}

// PutCheckpoint implements store.AuditLog.
func (s *Store) PutCheckpoint(ctx context.Context, c store.Checkpoint) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c.Time = store.Time(c.Time)
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], c.Seq)
	var exists bool
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		if exists = b.Get(key[:]) != nil; exists {
			return nil
		}
		return putJSON(b, key[:], &c)
	})
	if err == nil && exists {
		err = fmt.Errorf("%w: a checkpoint at sequence %d", store.ErrExists, c.Seq)
	}
	return err
}

// Checkpoints implements store.AuditLog.
func (s *Store) Checkpoints(ctx context.Context) ([]store.Checkpoint, error) {
	var out []store.Checkpoint
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = listJSON[store.Checkpoint](ctx, tx.Bucket(bucketCheckpoints), nil)
		return err
	})
	return out, err
}
