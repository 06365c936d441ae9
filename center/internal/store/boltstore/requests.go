package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// timeIDKey orders by time then ID: 8 bytes of Unix microseconds, then the ID.
func timeIDKey(t time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixMicro()))
	return append(k, id...)
}

func getRequest(tx *bolt.Tx, id string) (store.Request, bool, error) {
	var r store.Request
	ok, err := getJSON(tx.Bucket(bucketRequests), []byte(id), &r)
	if ok && err == nil {
		r.Replay = bytes.Clone(tx.Bucket(bucketReqReplay).Get([]byte(id)))
	}
	return r, ok, err
}

// putRequest stores r and its replay; prev is the stored version (nil for a
// new request), whose index entries it replaces.
func putRequest(tx *bolt.Tx, r *store.Request, prev *store.Request) error {
	id := []byte(r.ID)
	byClaim, byFinish, replay := tx.Bucket(bucketReqByClaim), tx.Bucket(bucketReqByFinish), tx.Bucket(bucketReqReplay)
	if prev != nil {
		if err := byClaim.Delete(timeIDKey(prev.ClaimedAt, prev.ID)); err != nil {
			return err
		}
		if !prev.FinishedAt.IsZero() {
			if err := byFinish.Delete(timeIDKey(prev.FinishedAt, prev.ID)); err != nil {
				return err
			}
		}
	}
	if err := putJSON(tx.Bucket(bucketRequests), id, r); err != nil {
		return err
	}
	if err := byClaim.Put(timeIDKey(r.ClaimedAt, r.ID), nil); err != nil {
		return err
	}
	if len(r.Replay) == 0 {
		return replay.Delete(id)
	}
	if err := replay.Put(id, r.Replay); err != nil {
		return err
	}
	return byFinish.Put(timeIDKey(r.FinishedAt, r.ID), nil)
}

func deleteRequest(tx *bolt.Tx, r *store.Request) error {
	for _, del := range []struct {
		b   []byte
		key []byte
	}{
		{bucketRequests, []byte(r.ID)},
		{bucketReqReplay, []byte(r.ID)},
		{bucketReqByClaim, timeIDKey(r.ClaimedAt, r.ID)},
		{bucketReqByFinish, timeIDKey(r.FinishedAt, r.ID)},
	} {
		if err := tx.Bucket(del.b).Delete(del.key); err != nil {
			return err
		}
	}
	return nil
}

func appendEvents(tx *bolt.Tx, events []store.Event) error {
	for i := range events {
		if err := appendEvent(tx, &events[i]); err != nil {
			return err
		}
	}
	return nil
}

// ClaimRequest implements store.RequestRegister.
func (s *Store) ClaimRequest(ctx context.Context, r store.Request, staleBefore time.Time, events ...store.Event) (store.Request, error) {
	if err := r.Validate(); err != nil {
		return store.Request{}, err
	}
	evs, err := prepareEvents(events)
	if err != nil {
		return store.Request{}, err
	}
	r.ClaimedAt = store.Time(r.ClaimedAt)
	r.State, r.Attempt, r.Code, r.CertificateIDs, r.Outcome = store.RequestClaimed, 1, "", nil, ""
	r.FinishedAt, r.SettledAt, r.Replay = time.Time{}, time.Time{}, nil
	staleBefore = store.Time(staleBefore)
	var got store.Request
	var exists bool
	err = s.batch(ctx, func(tx *bolt.Tx) error {
		got, exists = r, false
		prev, ok, err := getRequest(tx, r.ID)
		if err != nil {
			return err
		}
		if ok {
			if prev.State != store.RequestClaimed || staleBefore.IsZero() || !prev.ClaimedAt.Before(staleBefore) {
				got, exists = prev, true
				return nil
			}
			// The claim's issuance died with its process: take it over.
			got = prev
			got.Attempt++
			got.ClaimedAt = r.ClaimedAt
			if err := putRequest(tx, &got, &prev); err != nil {
				return err
			}
		} else if err := putRequest(tx, &got, nil); err != nil {
			return err
		}
		// Sequence numbers are assigned on each run; copy so a rerun of
		// this function starts from the caller's events.
		return appendEvents(tx, slices.Clone(evs))
	})
	if err != nil {
		return store.Request{}, err
	}
	if exists {
		return got, fmt.Errorf("%w: request %s is already registered (%s)", store.ErrExists, r.ID, got.State)
	}
	return got, nil
}

// FinishRequest implements store.RequestRegister.
func (s *Store) FinishRequest(ctx context.Context, id string, attempt int, f store.RequestFinish, events ...store.Event) (store.Request, error) {
	if err := f.Validate(); err != nil {
		return store.Request{}, err
	}
	evs, err := prepareEvents(events)
	if err != nil {
		return store.Request{}, err
	}
	at := store.Time(f.At)
	var got store.Request
	var refusal error
	err = s.batch(ctx, func(tx *bolt.Tx) error {
		refusal = nil
		prev, ok, err := getRequest(tx, id)
		switch {
		case err != nil:
			return err
		case !ok:
			refusal = fmt.Errorf("%w: request %s is not registered", store.ErrNotFound, id)
			return nil
		case prev.State != store.RequestClaimed || prev.Attempt != attempt:
			got = prev
			refusal = fmt.Errorf("%w: request %s is %s (attempt %d), not claimed by attempt %d", store.ErrTransition, id, prev.State, prev.Attempt, attempt)
			return nil
		}
		got = prev
		if f.State == store.RequestReleased {
			if err := deleteRequest(tx, &prev); err != nil {
				return err
			}
		} else {
			got.State, got.Code, got.FinishedAt = f.State, f.Code, at
			got.CertificateIDs, got.Replay = slices.Clone(f.CertificateIDs), f.Replay
			if err := putRequest(tx, &got, &prev); err != nil {
				return err
			}
		}
		return appendEvents(tx, slices.Clone(evs))
	})
	if err == nil {
		err = refusal
	}
	if f.State == store.RequestReleased && err == nil {
		got.State = store.RequestReleased
	}
	return got, err
}

// SettleRequest implements store.RequestRegister.
func (s *Store) SettleRequest(ctx context.Context, id, kioskID, outcome string, at time.Time, ev store.Event) (store.Request, error) {
	if err := store.ValidateOutcome(outcome); err != nil {
		return store.Request{}, err
	}
	evs, err := prepareEvents([]store.Event{ev})
	if err != nil {
		return store.Request{}, err
	}
	at = store.Time(at)
	var got store.Request
	var refusal error
	err = s.batch(ctx, func(tx *bolt.Tx) error {
		refusal = nil
		prev, ok, err := getRequest(tx, id)
		switch {
		case err != nil:
			return err
		case !ok || prev.KioskID != kioskID:
			got = store.Request{}
			refusal = fmt.Errorf("%w: no request %s from this kiosk", store.ErrNotFound, id)
			return nil
		case prev.State == store.RequestSettled:
			got = prev
			refusal = fmt.Errorf("%w: request %s settled as %s", store.ErrSettled, id, prev.Outcome)
			return nil
		case prev.State != store.RequestIssued:
			got = prev
			refusal = fmt.Errorf("%w: request %s is %s, not issued", store.ErrTransition, id, prev.State)
			return nil
		}
		got = prev
		got.State, got.Outcome, got.SettledAt, got.Replay = store.RequestSettled, outcome, at, nil
		if err := putRequest(tx, &got, &prev); err != nil {
			return err
		}
		return appendEvents(tx, slices.Clone(evs))
	})
	if err == nil {
		err = refusal
	}
	return got, err
}

// Request implements store.RequestRegister.
func (s *Store) Request(ctx context.Context, id string) (store.Request, error) {
	var r store.Request
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var ok bool
		var err error
		r, ok, err = getRequest(tx, id)
		if err == nil && !ok {
			err = fmt.Errorf("%w: request %s is not registered", store.ErrNotFound, id)
		}
		return err
	})
	return r, err
}

// expireBatch bounds how many requests one expiry transaction touches, so
// expiry never holds the writer long beside live issuance.
const expireBatch = 1000

// ExpireRequests implements store.RequestRegister.
func (s *Store) ExpireRequests(ctx context.Context, replayBefore, forgetBefore time.Time) (int, error) {
	deleted := 0
	for _, phase := range []struct {
		index  []byte
		before time.Time
		forget bool
	}{
		{bucketReqByFinish, store.Time(replayBefore), false},
		{bucketReqByClaim, store.Time(forgetBefore), true},
	} {
		if phase.before.IsZero() {
			continue
		}
		end := timeIDKey(phase.before, "")
		for {
			n := 0
			err := s.update(ctx, func(tx *bolt.Tx) error {
				n = 0
				c := tx.Bucket(phase.index).Cursor()
				var keys [][]byte
				for k, _ := c.First(); k != nil && bytes.Compare(k, end) < 0 && len(keys) < expireBatch; k, _ = c.Next() {
					keys = append(keys, bytes.Clone(k))
				}
				for _, key := range keys {
					r, ok, err := getRequest(tx, string(key[8:]))
					if err != nil {
						return err
					}
					n++
					if !ok {
						// An index entry without its request: drop it.
						if err := tx.Bucket(phase.index).Delete(key); err != nil {
							return err
						}
						continue
					}
					if phase.forget {
						if err := deleteRequest(tx, &r); err != nil {
							return err
						}
						continue
					}
					// Without a replay, putRequest leaves it out of the finish index.
					prev := r
					r.Replay = nil
					if err := putRequest(tx, &r, &prev); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return deleted, err
			}
			if phase.forget {
				deleted += n
			}
			if n < expireBatch {
				break
			}
		}
	}
	return deleted, nil
}
