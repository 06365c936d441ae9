package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Every statement here is one atomic step under PostgreSQL's row locks, in
// READ COMMITTED: an INSERT … ON CONFLICT DO NOTHING of a request ID that
// a concurrent transaction is inserting waits for it and then does
// nothing, and an UPDATE whose WHERE names the expected state re-checks it
// on the row version it waited for. So of concurrent claims exactly one
// inserts, of concurrent settlements exactly one updates, on one instance
// or many, and the rest read the row that won.

const requestColumns = `id, kiosk_id, fingerprint, municipality, kind, copies, state, attempt, code,
	certificate_ids, outcome, claimed_at, finished_at, settled_at`

func scanRequest(row pgx.Row, r *store.Request, extra ...any) error {
	var kind, state string
	var claimed time.Time
	var finished, settled *time.Time
	err := row.Scan(append([]any{&r.ID, &r.KioskID, &r.Fingerprint, &r.Municipality, &kind, &r.Copies, &state, &r.Attempt,
		&r.Code, &r.CertificateIDs, &r.Outcome, &claimed, &finished, &settled}, extra...)...)
	r.Kind, r.State = certificate.Kind(kind), store.RequestState(state)
	r.ClaimedAt, r.FinishedAt, r.SettledAt = utc(&claimed), utc(finished), utc(settled)
	if len(r.CertificateIDs) == 0 {
		r.CertificateIDs = nil
	}
	return err
}

// getRequest reads a request with its replay; ok is false when it is not
// registered.
func getRequest(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id string) (r store.Request, ok bool, err error) {
	err = scanRequest(q.QueryRow(ctx, `SELECT `+requestColumns+`, replay FROM requests WHERE id = $1`, id), &r, &r.Replay)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Request{}, false, nil
	}
	return r, err == nil, err
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func nullStrings(s []string) any {
	if len(s) == 0 {
		return nil
	}
	return s
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
	err = s.write(ctx, "claim request", func(ctx context.Context, tx pgx.Tx, b *batch) error {
		got, exists = r, false
		tag, err := tx.Exec(ctx, `INSERT INTO requests (id, kiosk_id, fingerprint, municipality, kind, copies, state, attempt, code, outcome, claimed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 1, '', '', $8) ON CONFLICT (id) DO NOTHING`,
			r.ID, r.KioskID, r.Fingerprint, r.Municipality, string(r.Kind), r.Copies, string(store.RequestClaimed), r.ClaimedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			// Registered already. A claim whose issuance died with its
			// process (claimed before staleBefore) is taken over.
			var taken bool
			if !staleBefore.IsZero() {
				err := scanRequest(tx.QueryRow(ctx, `UPDATE requests SET attempt = attempt + 1, claimed_at = $2
					WHERE id = $1 AND state = 'claimed' AND claimed_at < $3 RETURNING `+requestColumns,
					r.ID, r.ClaimedAt, staleBefore), &got)
				switch {
				case err == nil:
					taken = true
				case !errors.Is(err, pgx.ErrNoRows):
					return err
				}
			}
			if !taken {
				prev, ok, err := getRequest(ctx, tx, r.ID)
				if err != nil {
					return err
				}
				if ok {
					got, exists = prev, true
					return nil
				}
				// Released (deleted) between our insert and read: a
				// rare race; insert again.
				if _, err := tx.Exec(ctx, `INSERT INTO requests (id, kiosk_id, fingerprint, municipality, kind, copies, state, attempt, code, outcome, claimed_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, 1, '', '', $8)`,
					r.ID, r.KioskID, r.Fingerprint, r.Municipality, string(r.Kind), r.Copies, string(store.RequestClaimed), r.ClaimedAt); err != nil {
					return err
				}
			}
		}
		b.appendEvents(slices.Clone(evs))
		return nil
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
	err = s.write(ctx, "finish request", func(ctx context.Context, tx pgx.Tx, b *batch) error {
		got, refusal = store.Request{}, nil
		var err error
		if f.State == store.RequestReleased {
			err = scanRequest(tx.QueryRow(ctx, `DELETE FROM requests WHERE id = $1 AND state = 'claimed' AND attempt = $2
				RETURNING `+requestColumns, id, attempt), &got)
		} else {
			err = scanRequest(tx.QueryRow(ctx, `UPDATE requests SET state = $3, code = $4, finished_at = $5, certificate_ids = $6, replay = $7
				WHERE id = $1 AND state = 'claimed' AND attempt = $2 RETURNING `+requestColumns,
				id, attempt, string(f.State), f.Code, at, nullStrings(f.CertificateIDs), nullBytes(f.Replay)), &got)
			got.Replay = f.Replay
		}
		if errors.Is(err, pgx.ErrNoRows) {
			prev, ok, err := getRequest(ctx, tx, id)
			switch {
			case err != nil:
				return err
			case !ok:
				got, refusal = store.Request{}, fmt.Errorf("%w: request %s is not registered", store.ErrNotFound, id)
			default:
				got = prev
				refusal = fmt.Errorf("%w: request %s is %s (attempt %d), not claimed by attempt %d", store.ErrTransition, id, prev.State, prev.Attempt, attempt)
			}
			return nil
		} else if err != nil {
			return err
		}
		b.appendEvents(slices.Clone(evs))
		return nil
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
	err = s.write(ctx, "settle request", func(ctx context.Context, tx pgx.Tx, b *batch) error {
		got, refusal = store.Request{}, nil
		err := scanRequest(tx.QueryRow(ctx, `UPDATE requests SET state = 'settled', outcome = $3, settled_at = $4, replay = NULL
			WHERE id = $1 AND kiosk_id = $2 AND state = 'issued' RETURNING `+requestColumns, id, kioskID, outcome, at), &got)
		if errors.Is(err, pgx.ErrNoRows) {
			prev, ok, err := getRequest(ctx, tx, id)
			switch {
			case err != nil:
				return err
			case !ok || prev.KioskID != kioskID:
				got, refusal = store.Request{}, fmt.Errorf("%w: no request %s from this kiosk", store.ErrNotFound, id)
			case prev.State == store.RequestSettled:
				got, refusal = prev, fmt.Errorf("%w: request %s settled as %s", store.ErrSettled, id, prev.Outcome)
			default:
				got, refusal = prev, fmt.Errorf("%w: request %s is %s, not issued", store.ErrTransition, id, prev.State)
			}
			return nil
		} else if err != nil {
			return err
		}
		b.appendEvents(slices.Clone(evs))
		return nil
	})
	if err == nil {
		err = refusal
	}
	return got, err
}

// Request implements store.RequestRegister.
func (s *Store) Request(ctx context.Context, id string) (store.Request, error) {
	if err := s.check(ctx); err != nil {
		return store.Request{}, err
	}
	r, ok, err := getRequest(ctx, s.pool, id)
	if err == nil && !ok {
		return store.Request{}, fmt.Errorf("%w: request %s is not registered", store.ErrNotFound, id)
	}
	return r, s.result(ctx, "read request", err)
}

// expireBatch bounds how many requests one expiry statement touches, so
// expiry never holds many row locks beside live issuance.
const expireBatch = 1000

// ExpireRequests implements store.RequestRegister.
func (s *Store) ExpireRequests(ctx context.Context, replayBefore, forgetBefore time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if !replayBefore.IsZero() {
		for {
			tag, err := s.pool.Exec(ctx, `UPDATE requests SET replay = NULL WHERE id IN (
				SELECT id FROM requests WHERE replay IS NOT NULL AND finished_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
				store.Time(replayBefore), expireBatch)
			if err != nil {
				return 0, s.result(ctx, "expire replays", err)
			}
			if tag.RowsAffected() < expireBatch {
				break
			}
		}
	}
	deleted := 0
	if !forgetBefore.IsZero() {
		for {
			tag, err := s.pool.Exec(ctx, `DELETE FROM requests WHERE id IN (
				SELECT id FROM requests WHERE claimed_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
				store.Time(forgetBefore), expireBatch)
			if err != nil {
				return deleted, s.result(ctx, "forget requests", err)
			}
			deleted += int(tag.RowsAffected())
			if tag.RowsAffected() < expireBatch {
				break
			}
		}
	}
	return deleted, nil
}
