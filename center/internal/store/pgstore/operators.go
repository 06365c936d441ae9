package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// CreateOperator implements store.OperatorStore.
func (s *Store) CreateOperator(ctx context.Context, o store.Operator) error {
	if err := o.Validate(); err != nil {
		return err
	}
	store.NormaliseOperator(&o)
	doc, err := json.Marshal(&o)
	if err != nil {
		return fmt.Errorf("pgstore: encoding operator: %w", err)
	}
	return s.tx(ctx, "create operator", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO operators (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, o.ID, doc)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("%w: operator %s", store.ErrExists, o.ID)
		}
		return err
	})
}

func scanOperator(row pgx.Row, o *store.Operator) error {
	var doc []byte
	if err := row.Scan(&doc); err != nil {
		return err
	}
	if err := json.Unmarshal(doc, o); err != nil {
		return fmt.Errorf("pgstore: decoding operator: %w", err)
	}
	return nil
}

// Operator implements store.OperatorStore.
func (s *Store) Operator(ctx context.Context, id string) (store.Operator, error) {
	var o store.Operator
	if err := s.check(ctx); err != nil {
		return o, err
	}
	err := scanOperator(s.pool.QueryRow(ctx, `SELECT doc FROM operators WHERE id = $1`, id), &o)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Operator{}, fmt.Errorf("%w: operator %q", store.ErrNotFound, id)
	}
	return o, s.result(ctx, "read operator", err)
}

// ListOperators implements store.OperatorStore.
func (s *Store) ListOperators(ctx context.Context) ([]store.Operator, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT doc FROM operators ORDER BY id`)
	if err != nil {
		return nil, s.result(ctx, "list operators", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, o *store.Operator) error { return scanOperator(r, o) })
	return out, s.result(ctx, "list operators", err)
}

// UpdateOperator implements store.OperatorStore: the row is locked from
// the read to the write, so concurrent changes apply one after another.
func (s *Store) UpdateOperator(ctx context.Context, id string, change func(*store.Operator) error) (store.Operator, error) {
	var out store.Operator
	err := s.tx(ctx, "update operator", func(tx pgx.Tx) error {
		var o store.Operator
		err := scanOperator(tx.QueryRow(ctx, `SELECT doc FROM operators WHERE id = $1 FOR UPDATE`, id), &o)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: operator %q", store.ErrNotFound, id)
		} else if err != nil {
			return err
		}
		before := o
		if err := change(&o); err != nil {
			return errChange{err}
		}
		if o.ID != before.ID || !store.Time(o.Created).Equal(before.Created) {
			return fmt.Errorf("%w: an operator's ID and creation time do not change", store.ErrInvalid)
		}
		if err := o.Validate(); err != nil {
			return err
		}
		store.NormaliseOperator(&o)
		doc, err := json.Marshal(&o)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE operators SET doc = $2 WHERE id = $1`, id, doc); err != nil {
			return err
		}
		out = o
		return nil
	})
	var ce errChange
	if errors.As(err, &ce) {
		return store.Operator{}, ce.err
	}
	if err != nil {
		return store.Operator{}, err
	}
	return out, nil
}

// errChange carries the caller's change function's error out of the
// transaction untouched.
type errChange struct{ err error }

func (e errChange) Error() string { return e.err.Error() }
func (e errChange) Unwrap() error { return e.err }

const tokenColumns = `id, operator, sha256, label, created, expires, revoked`

func scanToken(row pgx.Row, t *store.APIToken) error {
	var created time.Time
	var expires, revoked *time.Time
	err := row.Scan(&t.ID, &t.Operator, &t.SHA256, &t.Label, &created, &expires, &revoked)
	t.Created, t.Expires, t.Revoked = utc(&created), utc(expires), utc(revoked)
	return err
}

// PutAPIToken implements store.OperatorStore.
func (s *Store) PutAPIToken(ctx context.Context, t store.APIToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	var expires any
	if !t.Expires.IsZero() {
		expires = store.Time(t.Expires)
	}
	return s.tx(ctx, "put API token", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_tokens (`+tokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, NULL)`,
			t.ID, t.Operator, t.SHA256, t.Label, store.Time(t.Created), expires)
		var pgErr *pgconn.PgError
		switch {
		case isUniqueViolation(err, ""):
			return fmt.Errorf("%w: API token %s (its ID or its hash)", store.ErrExists, t.ID)
		case errors.As(err, &pgErr) && pgErr.Code == "23503":
			return fmt.Errorf("%w: operator %q", store.ErrNotFound, t.Operator)
		}
		return err
	})
}

// APITokenByHash implements store.OperatorStore.
func (s *Store) APITokenByHash(ctx context.Context, sha256Hex string) (store.APIToken, error) {
	var t store.APIToken
	if err := s.check(ctx); err != nil {
		return t, err
	}
	err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE sha256 = $1`, sha256Hex), &t)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.APIToken{}, fmt.Errorf("%w: no API token with this hash", store.ErrNotFound)
	}
	return t, s.result(ctx, "read API token", err)
}

// ListAPITokens implements store.OperatorStore.
func (s *Store) ListAPITokens(ctx context.Context, operator string) ([]store.APIToken, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE $1 = '' OR operator = $1 ORDER BY created, id`, operator)
	if err != nil {
		return nil, s.result(ctx, "list API tokens", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, t *store.APIToken) error { return scanToken(r, t) })
	return out, s.result(ctx, "list API tokens", err)
}

// RevokeAPIToken implements store.OperatorStore.
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("%w: revocation time is required", store.ErrInvalid)
	}
	return s.tx(ctx, "revoke API token", func(tx pgx.Tx) error {
		var revoked *time.Time
		err := tx.QueryRow(ctx, `SELECT revoked FROM api_tokens WHERE id = $1 FOR UPDATE`, id).Scan(&revoked)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%w: API token %q", store.ErrNotFound, id)
		case err != nil:
			return err
		case revoked != nil:
			return fmt.Errorf("%w: API token %s is already revoked", store.ErrTransition, id)
		}
		_, err = tx.Exec(ctx, `UPDATE api_tokens SET revoked = $2 WHERE id = $1`, id, store.Time(at))
		return err
	})
}
