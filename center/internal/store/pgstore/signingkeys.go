package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

const signingKeyColumns = `kid, purpose, format, public_key, key_label, created, not_after, status, status_at`

func scanSigningKey(row pgx.Row, k *store.SigningKey) error {
	var purpose, format, status string
	var created, notAfter, statusAt time.Time
	err := row.Scan(&k.KID, &purpose, &format, &k.PublicKey, &k.KeyLabel, &created, &notAfter, &status, &statusAt)
	k.Purpose, k.Format, k.Status = store.KeyPurpose(purpose), store.KeyFormat(format), store.KeyStatus(status)
	k.Created, k.NotAfter, k.StatusAt = utc(&created), utc(&notAfter), utc(&statusAt)
	return err
}

// PutSigningKey implements store.SigningKeyStore.
func (s *Store) PutSigningKey(ctx context.Context, k store.SigningKey) error {
	if k.Status == "" {
		k.Status = store.KeyActive
	}
	if err := k.Validate(); err != nil {
		return err
	}
	if k.Status != store.KeyActive {
		return fmt.Errorf("%w: a new signing key must be active", store.ErrInvalid)
	}
	k.Created, k.NotAfter = store.Time(k.Created), store.Time(k.NotAfter)
	if k.StatusAt.IsZero() {
		k.StatusAt = k.Created
	}
	k.StatusAt = store.Time(k.StatusAt)
	return s.tx(ctx, "put signing key", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO signing_keys (`+signingKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			k.KID, string(k.Purpose), string(k.Format), k.PublicKey, k.KeyLabel, k.Created, k.NotAfter, string(k.Status), k.StatusAt)
		if isUniqueViolation(err, "") {
			return fmt.Errorf("%w: signing key %s", store.ErrExists, k.KID)
		} else if err != nil {
			return err
		}
		return notify(ctx, tx, store.ChangeSigningKey, k.KID)
	})
}

// SigningKey implements store.SigningKeyStore.
func (s *Store) SigningKey(ctx context.Context, kid string) (store.SigningKey, error) {
	var k store.SigningKey
	if err := s.check(ctx); err != nil {
		return k, err
	}
	err := scanSigningKey(s.pool.QueryRow(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys WHERE kid = $1`, kid), &k)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.SigningKey{}, fmt.Errorf("%w: signing key %q", store.ErrNotFound, kid)
	}
	return k, s.result(ctx, "read signing key", err)
}

// ListSigningKeys implements store.SigningKeyStore.
func (s *Store) ListSigningKeys(ctx context.Context, purpose store.KeyPurpose) ([]store.SigningKey, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys
		WHERE $1 = '' OR purpose = $1 ORDER BY created, kid`, string(purpose))
	if err != nil {
		return nil, s.result(ctx, "list signing keys", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, k *store.SigningKey) error { return scanSigningKey(r, k) })
	return out, s.result(ctx, "list signing keys", err)
}

// SetSigningKeyStatus implements store.SigningKeyStore.
func (s *Store) SetSigningKeyStatus(ctx context.Context, kid string, status store.KeyStatus, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("%w: signing key status time is required", store.ErrInvalid)
	}
	return s.tx(ctx, "set signing key status", func(tx pgx.Tx) error {
		var from string
		err := tx.QueryRow(ctx, `SELECT status FROM signing_keys WHERE kid = $1 FOR UPDATE`, kid).Scan(&from)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: signing key %q", store.ErrNotFound, kid)
		} else if err != nil {
			return err
		}
		if err := store.CheckKeyStatusChange(store.KeyStatus(from), status); err != nil {
			return fmt.Errorf("signing key %s: %s → %s: %w", kid, from, status, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE signing_keys SET status = $2, status_at = $3 WHERE kid = $1`, kid, string(status), store.Time(at)); err != nil {
			return err
		}
		return notify(ctx, tx, store.ChangeSigningKey, kid)
	})
}
