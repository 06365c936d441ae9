package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

const kioskColumns = `id, store_name, store_code, chain, prefecture, region, cert_serial, cert_sha256,
	enrolled_at, status, status_reason, status_at, last_seen`

func scanKiosk(row pgx.Row, k *store.Kiosk) error {
	var enrolled, statusAt time.Time
	var lastSeen *time.Time
	var status string
	err := row.Scan(&k.ID, &k.StoreName, &k.StoreCode, &k.Chain, &k.Prefecture, &k.Region, &k.CertSerial, &k.CertSHA256,
		&enrolled, &status, &k.StatusReason, &statusAt, &lastSeen)
	k.EnrolledAt, k.StatusAt, k.LastSeen, k.Status = utc(&enrolled), utc(&statusAt), utc(lastSeen), store.KioskStatus(status)
	return err
}

// EnrollKiosk implements store.KioskStore.
func (s *Store) EnrollKiosk(ctx context.Context, k store.Kiosk) error {
	if err := k.Validate(); err != nil {
		return err
	}
	k.EnrolledAt = store.Time(k.EnrolledAt)
	return s.tx(ctx, "enroll kiosk", func(tx pgx.Tx) error { return insertKiosk(ctx, tx, k) })
}

// insertKiosk adds an active kiosk and its certificate.
func insertKiosk(ctx context.Context, tx pgx.Tx, k store.Kiosk) error {
	_, err := tx.Exec(ctx, `INSERT INTO kiosks (`+kioskColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '', $9, NULL)`,
		k.ID, k.StoreName, k.StoreCode, k.Chain, k.Prefecture, k.Region, k.CertSerial, k.CertSHA256, k.EnrolledAt, string(store.KioskActive))
	if isUniqueViolation(err, "kiosks_pkey") {
		return fmt.Errorf("%w: kiosk %s is already enrolled", store.ErrExists, k.ID)
	} else if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO kiosk_certs (cert_sha256, kiosk_id) VALUES ($1, $2)`, k.CertSHA256, k.ID)
	if isUniqueViolation(err, "") {
		return fmt.Errorf("%w: the client certificate of kiosk %s is already enrolled for another kiosk", store.ErrExists, k.ID)
	}
	return err
}

// Kiosk implements store.KioskStore.
func (s *Store) Kiosk(ctx context.Context, id string) (store.Kiosk, error) {
	return s.kioskWhere(ctx, "id = $1", id, fmt.Sprintf("kiosk %q", id))
}

// KioskByCertificate implements store.KioskStore: the kiosk's current
// certificate or one it was renewed from.
func (s *Store) KioskByCertificate(ctx context.Context, sha256Hex string) (store.Kiosk, error) {
	return s.kioskWhere(ctx, "id = (SELECT kiosk_id FROM kiosk_certs WHERE cert_sha256 = $1)", sha256Hex, "no kiosk has this client certificate")
}

func (s *Store) kioskWhere(ctx context.Context, where, v, notFound string) (store.Kiosk, error) {
	var k store.Kiosk
	if err := s.check(ctx); err != nil {
		return k, err
	}
	err := scanKiosk(s.pool.QueryRow(ctx, `SELECT `+kioskColumns+` FROM kiosks WHERE `+where, v), &k)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Kiosk{}, fmt.Errorf("%w: %s", store.ErrNotFound, notFound)
	}
	return k, s.result(ctx, "read kiosk", err)
}

// ListKiosks implements store.KioskStore.
func (s *Store) ListKiosks(ctx context.Context) ([]store.Kiosk, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+kioskColumns+` FROM kiosks ORDER BY id`)
	if err != nil {
		return nil, s.result(ctx, "list kiosks", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, k *store.Kiosk) error { return scanKiosk(r, k) })
	return out, s.result(ctx, "list kiosks", err)
}

// SetKioskStatus implements store.KioskStore. Every instance hears of the
// change through WatchChanges.
func (s *Store) SetKioskStatus(ctx context.Context, id string, status store.KioskStatus, reason string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("%w: kiosk status time is required", store.ErrInvalid)
	}
	return s.tx(ctx, "set kiosk status", func(tx pgx.Tx) error {
		var from string
		err := tx.QueryRow(ctx, `SELECT status FROM kiosks WHERE id = $1 FOR UPDATE`, id).Scan(&from)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: kiosk %q", store.ErrNotFound, id)
		} else if err != nil {
			return err
		}
		if err := store.CheckKioskStatusChange(store.KioskStatus(from), status, reason); err != nil {
			return fmt.Errorf("kiosk %s: %s → %s: %w", id, from, status, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE kiosks SET status = $2, status_reason = $3, status_at = $4 WHERE id = $1`,
			id, string(status), reason, store.Time(at)); err != nil {
			return err
		}
		return notify(ctx, tx, store.ChangeKiosk, id)
	})
}

// TouchKiosk implements store.KioskStore. Every kiosk connection touches
// its kiosk, so it goes through the group committer: a reconnection storm
// of thousands of kiosks costs a few commits, not thousands.
func (s *Store) TouchKiosk(ctx context.Context, id string, at time.Time) error {
	at = store.Time(at)
	if at.IsZero() {
		return fmt.Errorf("%w: last-seen time is required", store.ErrInvalid)
	}
	var exists bool
	err := s.write(ctx, "touch kiosk", func(ctx context.Context, tx pgx.Tx, b *batch) error {
		// One statement: moves last_seen forward only, and says whether
		// the kiosk exists.
		return tx.QueryRow(ctx, `WITH u AS (
				UPDATE kiosks SET last_seen = $2 WHERE id = $1 AND (last_seen IS NULL OR last_seen < $2) RETURNING 1)
			SELECT EXISTS (SELECT 1 FROM u) OR EXISTS (SELECT 1 FROM kiosks WHERE id = $1)`, id, at).Scan(&exists)
	})
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: kiosk %q", store.ErrNotFound, id)
	}
	return nil
}

// RenewKioskCertificate implements store.KioskStore.
func (s *Store) RenewKioskCertificate(ctx context.Context, id string, cert store.KioskCertificate, at time.Time) error {
	if err := cert.Validate(); err != nil {
		return err
	}
	if at.IsZero() {
		return fmt.Errorf("%w: renewal time is required", store.ErrInvalid)
	}
	return s.tx(ctx, "renew kiosk certificate", func(tx pgx.Tx) error {
		var status string
		err := tx.QueryRow(ctx, `SELECT status FROM kiosks WHERE id = $1 FOR UPDATE`, id).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: kiosk %q", store.ErrNotFound, id)
		} else if err != nil {
			return err
		}
		if status != string(store.KioskActive) {
			return fmt.Errorf("store: kiosk %s is %s: %w", id, status, store.ErrTransition)
		}
		var owner string
		err = tx.QueryRow(ctx, `INSERT INTO kiosk_certs (cert_sha256, kiosk_id) VALUES ($1, $2)
			ON CONFLICT (cert_sha256) DO UPDATE SET kiosk_id = kiosk_certs.kiosk_id RETURNING kiosk_id`, cert.SHA256, id).Scan(&owner)
		if err != nil {
			return err
		}
		if owner != id {
			return fmt.Errorf("%w: the client certificate is enrolled for another kiosk", store.ErrExists)
		}
		_, err = tx.Exec(ctx, `UPDATE kiosks SET cert_serial = $2, cert_sha256 = $3 WHERE id = $1`, id, cert.Serial, cert.SHA256)
		return err
	})
}

// QueryKiosks implements store.KioskStore: one page, in ID order, with the
// number of kiosks matching in all.
func (s *Store) QueryKiosks(ctx context.Context, q store.KioskQuery) (store.KioskPage, error) {
	if err := q.Validate(); err != nil {
		return store.KioskPage{}, err
	}
	if err := s.check(ctx); err != nil {
		return store.KioskPage{}, err
	}
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if q.IDPrefix != "" {
		where = append(where, "left(id, "+strconv.Itoa(len([]rune(q.IDPrefix)))+") = "+arg(q.IDPrefix))
	}
	for _, f := range []struct{ column, v string }{
		{"chain", q.Chain}, {"prefecture", q.Prefecture}, {"region", q.Region}, {"status", string(q.Status)},
	} {
		if f.v != "" {
			where = append(where, f.column+" = "+arg(f.v))
		}
	}
	if len(q.IDs) > 0 {
		where = append(where, "id = ANY("+arg(q.IDs)+"::text[])")
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var page store.KioskPage
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM kiosks`+cond, args...).Scan(&page.Total); err != nil {
		return store.KioskPage{}, s.result(ctx, "count kiosks", err)
	}
	if q.After != "" {
		if cond == "" {
			cond = " WHERE "
		} else {
			cond += " AND "
		}
		cond += "id > " + arg(q.After)
	}
	limit := q.EffectiveLimit()
	rows, err := s.pool.Query(ctx, `SELECT `+kioskColumns+` FROM kiosks`+cond+` ORDER BY id LIMIT `+arg(limit+1), args...)
	if err != nil {
		return store.KioskPage{}, s.result(ctx, "query kiosks", err)
	}
	ks, err := collect(ctx, rows, func(r pgx.Rows, k *store.Kiosk) error { return scanKiosk(r, k) })
	if err != nil {
		return store.KioskPage{}, s.result(ctx, "query kiosks", err)
	}
	if len(ks) > limit {
		ks, page.More = ks[:limit], true
	}
	page.Kiosks = ks
	return page, nil
}
