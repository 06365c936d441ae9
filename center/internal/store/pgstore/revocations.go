package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

func scanRevocation(row pgx.Row, r *store.Revocation) error {
	var at time.Time
	err := row.Scan(&r.CertificateID, &r.KID, &at, &r.Reason)
	r.RevokedAt = utc(&at)
	return err
}

// RevokeCertificate implements store.RevocationStore.
func (s *Store) RevokeCertificate(ctx context.Context, r store.Revocation) error {
	if err := r.Validate(); err != nil {
		return err
	}
	return s.tx(ctx, "revoke certificate", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO revocations (certificate_id, kid, revoked_at, reason) VALUES ($1, $2, $3, $4)`,
			r.CertificateID, r.KID, store.Time(r.RevokedAt), r.Reason)
		if isUniqueViolation(err, "") {
			return fmt.Errorf("%w: certificate %s is already revoked", store.ErrExists, r.CertificateID)
		}
		return err
	})
}

// Revocation implements store.RevocationStore.
func (s *Store) Revocation(ctx context.Context, certificateID string) (store.Revocation, error) {
	var r store.Revocation
	if err := s.check(ctx); err != nil {
		return r, err
	}
	err := scanRevocation(s.pool.QueryRow(ctx, `SELECT certificate_id, kid, revoked_at, reason FROM revocations WHERE certificate_id = $1`, certificateID), &r)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Revocation{}, fmt.Errorf("%w: certificate %q is not revoked", store.ErrNotFound, certificateID)
	}
	return r, s.result(ctx, "read revocation", err)
}

// Revocations implements store.RevocationStore.
func (s *Store) Revocations(ctx context.Context, kid string) ([]store.Revocation, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT certificate_id, kid, revoked_at, reason FROM revocations
		WHERE $1 = '' OR kid = $1 ORDER BY revoked_at, certificate_id`, kid)
	if err != nil {
		return nil, s.result(ctx, "list revocations", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, v *store.Revocation) error { return scanRevocation(r, v) })
	return out, s.result(ctx, "list revocations", err)
}
