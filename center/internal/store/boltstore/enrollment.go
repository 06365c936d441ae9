package boltstore

import (
	"context"
	"crypto/subtle"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// PutEnrollmentCode implements store.EnrollmentStore.
func (s *Store) PutEnrollmentCode(ctx context.Context, c store.EnrollmentCode) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c.Created, c.Expires = store.Time(c.Created), store.Time(c.Expires)
	c.UsedAt, c.Attempts = time.Time{}, 0
	c.Kiosk = store.Kiosk{ID: c.Kiosk.ID, StoreName: c.Kiosk.StoreName, StoreCode: c.Kiosk.StoreCode,
		Chain: c.Kiosk.Chain, Prefecture: c.Kiosk.Prefecture, Region: c.Kiosk.Region}
	return s.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKiosks).Get([]byte(c.Kiosk.ID)) != nil {
			return fmt.Errorf("%w: kiosk %s is already enrolled", store.ErrExists, c.Kiosk.ID)
		}
		return putJSON(tx.Bucket(bucketEnrollCodes), []byte(c.Kiosk.ID), &c)
	})
}

// RedeemEnrollmentCode implements store.EnrollmentStore.
func (s *Store) RedeemEnrollmentCode(ctx context.Context, kioskID, codeHash string, cert store.KioskCertificate, at time.Time) (store.Kiosk, error) {
	if err := cert.Validate(); err != nil {
		return store.Kiosk{}, err
	}
	at = store.Time(at)
	if at.IsZero() {
		return store.Kiosk{}, fmt.Errorf("%w: enrollment time is required", store.ErrInvalid)
	}
	var k store.Kiosk
	// A wrong code must count even though the call fails, so the refusal
	// is reported after the transaction commits.
	var refusal error
	err := s.update(ctx, func(tx *bolt.Tx) error {
		refusal = nil
		codes := tx.Bucket(bucketEnrollCodes)
		var c store.EnrollmentCode
		ok, err := getJSON(codes, []byte(kioskID), &c)
		switch {
		case err != nil:
			return err
		case !ok:
			refusal = fmt.Errorf("%w: no enrollment code for kiosk %q", store.ErrNotFound, kioskID)
			return nil
		case !c.UsedAt.IsZero() || c.Attempts >= store.MaxEnrollmentAttempts:
			refusal = fmt.Errorf("%w: the enrollment code of kiosk %q was used or voided", store.ErrUsed, kioskID)
			return nil
		case subtle.ConstantTimeCompare([]byte(c.CodeHash), []byte(codeHash)) != 1:
			c.Attempts++
			refusal = fmt.Errorf("%w: wrong enrollment code for kiosk %q", store.ErrNotFound, kioskID)
			return putJSON(codes, []byte(kioskID), &c)
		case !at.Before(c.Expires):
			refusal = fmt.Errorf("%w: the enrollment code of kiosk %q expired at %s", store.ErrExpired, kioskID, c.Expires.Format(time.RFC3339))
			return nil
		}
		kiosks, certs := tx.Bucket(bucketKiosks), tx.Bucket(bucketKioskCerts)
		if kiosks.Get([]byte(kioskID)) != nil {
			refusal = fmt.Errorf("%w: kiosk %s is already enrolled", store.ErrExists, kioskID)
			return nil
		}
		if certs.Get([]byte(cert.SHA256)) != nil {
			refusal = fmt.Errorf("%w: the client certificate is already enrolled", store.ErrExists)
			return nil
		}
		k = c.Kiosk
		k.CertSerial, k.CertSHA256, k.EnrolledAt = cert.Serial, cert.SHA256, at
		k.Status, k.StatusReason, k.StatusAt, k.LastSeen = store.KioskActive, "", at, time.Time{}
		if err := k.Validate(); err != nil {
			return err
		}
		c.UsedAt = at
		if err := putJSON(codes, []byte(kioskID), &c); err != nil {
			return err
		}
		if err := certs.Put([]byte(k.CertSHA256), []byte(k.ID)); err != nil {
			return err
		}
		return putJSON(kiosks, []byte(k.ID), &k)
	})
	if err == nil {
		err = refusal
	}
	if err != nil {
		return store.Kiosk{}, err
	}
	return k, nil
}

// RenewKioskCertificate implements store.KioskStore.
func (s *Store) RenewKioskCertificate(ctx context.Context, id string, cert store.KioskCertificate, at time.Time) error {
	if err := cert.Validate(); err != nil {
		return err
	}
	if at.IsZero() {
		return fmt.Errorf("%w: renewal time is required", store.ErrInvalid)
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		var k store.Kiosk
		if err := getKiosk(tx, id, &k); err != nil {
			return err
		}
		if k.Status != store.KioskActive {
			return fmt.Errorf("store: kiosk %s is %s: %w", id, k.Status, store.ErrTransition)
		}
		certs := tx.Bucket(bucketKioskCerts)
		if owner := certs.Get([]byte(cert.SHA256)); owner != nil && string(owner) != id {
			return fmt.Errorf("%w: the client certificate is enrolled for another kiosk", store.ErrExists)
		}
		if err := certs.Put([]byte(cert.SHA256), []byte(id)); err != nil {
			return err
		}
		k.CertSerial, k.CertSHA256 = cert.Serial, cert.SHA256
		return putJSON(tx.Bucket(bucketKiosks), []byte(id), &k)
	})
}
