package pgstore

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// PutEnrollmentCode implements store.EnrollmentStore.
func (s *Store) PutEnrollmentCode(ctx context.Context, c store.EnrollmentCode) error {
	if err := c.Validate(); err != nil {
		return err
	}
	k := c.Kiosk
	return s.tx(ctx, "put enrollment code", func(tx pgx.Tx) error {
		var enrolled bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kiosks WHERE id = $1)`, k.ID).Scan(&enrolled); err != nil {
			return err
		}
		if enrolled {
			return fmt.Errorf("%w: kiosk %s is already enrolled", store.ErrExists, k.ID)
		}
		// A new code replaces (voids) an earlier one for the same kiosk ID.
		_, err := tx.Exec(ctx, `INSERT INTO enrollment_codes (kiosk_id, store_name, store_code, chain, prefecture, region,
				code_hash, created, expires, used_at, attempts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, 0)
			ON CONFLICT (kiosk_id) DO UPDATE SET store_name = excluded.store_name, store_code = excluded.store_code,
				chain = excluded.chain, prefecture = excluded.prefecture, region = excluded.region,
				code_hash = excluded.code_hash, created = excluded.created, expires = excluded.expires,
				used_at = NULL, attempts = 0`,
			k.ID, k.StoreName, k.StoreCode, k.Chain, k.Prefecture, k.Region, c.CodeHash, store.Time(c.Created), store.Time(c.Expires))
		return err
	})
}

// RedeemEnrollmentCode implements store.EnrollmentStore. The code's row is
// locked for the transaction, so of concurrent redemptions one enrolls the
// kiosk and the others find the code used.
func (s *Store) RedeemEnrollmentCode(ctx context.Context, kioskID, codeHash string, cert store.KioskCertificate, at time.Time) (store.Kiosk, error) {
	if err := cert.Validate(); err != nil {
		return store.Kiosk{}, err
	}
	at = store.Time(at)
	if at.IsZero() {
		return store.Kiosk{}, fmt.Errorf("%w: enrollment time is required", store.ErrInvalid)
	}
	var k store.Kiosk
	// A wrong code must count even though the call fails: the refusal is
	// reported after the transaction commits.
	var refusal error
	err := s.tx(ctx, "redeem enrollment code", func(tx pgx.Tx) error {
		refusal, k = nil, store.Kiosk{}
		var hash string
		var expires time.Time
		var used *time.Time
		var attempts int
		err := tx.QueryRow(ctx, `SELECT store_name, store_code, chain, prefecture, region, code_hash, expires, used_at, attempts
			FROM enrollment_codes WHERE kiosk_id = $1 FOR UPDATE`, kioskID).
			Scan(&k.StoreName, &k.StoreCode, &k.Chain, &k.Prefecture, &k.Region, &hash, &expires, &used, &attempts)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			refusal = fmt.Errorf("%w: no enrollment code for kiosk %q", store.ErrNotFound, kioskID)
			return nil
		case err != nil:
			return err
		case used != nil || attempts >= store.MaxEnrollmentAttempts:
			refusal = fmt.Errorf("%w: the enrollment code of kiosk %q was used or voided", store.ErrUsed, kioskID)
			return nil
		case subtle.ConstantTimeCompare([]byte(hash), []byte(codeHash)) != 1:
			refusal = fmt.Errorf("%w: wrong enrollment code for kiosk %q", store.ErrNotFound, kioskID)
			_, err := tx.Exec(ctx, `UPDATE enrollment_codes SET attempts = attempts + 1 WHERE kiosk_id = $1`, kioskID)
			return err
		case !at.Before(expires.UTC()):
			refusal = fmt.Errorf("%w: the enrollment code of kiosk %q expired at %s", store.ErrExpired, kioskID, expires.UTC().Format(time.RFC3339))
			return nil
		}
		k.ID, k.CertSerial, k.CertSHA256, k.EnrolledAt = kioskID, cert.Serial, cert.SHA256, at
		k.Status, k.StatusAt = store.KioskActive, at
		if err := k.Validate(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE enrollment_codes SET used_at = $2 WHERE kiosk_id = $1`, kioskID, at); err != nil {
			return err
		}
		// Savepoint: a kiosk or certificate already enrolled is a refusal,
		// and the code stays unused.
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		if err := insertKiosk(ctx, sp, k); errors.Is(err, store.ErrExists) {
			refusal = err
			return errUndo
		} else if err != nil {
			return err
		}
		return sp.Commit(ctx)
	})
	if errors.Is(err, errUndo) {
		err = nil
	}
	if err == nil {
		err = refusal
	}
	if err != nil {
		return store.Kiosk{}, err
	}
	return k, nil
}

// errUndo rolls a transaction back to report a refusal found inside it.
var errUndo = errors.New("pgstore: refusal")
