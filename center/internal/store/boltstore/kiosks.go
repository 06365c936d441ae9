package boltstore

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// EnrollKiosk implements store.KioskStore.
func (s *Store) EnrollKiosk(ctx context.Context, k store.Kiosk) error {
	if err := k.Validate(); err != nil {
		return err
	}
	k.EnrolledAt = store.Time(k.EnrolledAt)
	k.Status, k.StatusReason, k.StatusAt = store.KioskActive, "", k.EnrolledAt
	k.LastSeen = time.Time{}
	return s.update(ctx, func(tx *bolt.Tx) error {
		kiosks, certs := tx.Bucket(bucketKiosks), tx.Bucket(bucketKioskCerts)
		if kiosks.Get([]byte(k.ID)) != nil {
			return fmt.Errorf("%w: kiosk %s is already enrolled", store.ErrExists, k.ID)
		}
		if certs.Get([]byte(k.CertSHA256)) != nil {
			return fmt.Errorf("%w: the client certificate of kiosk %s is already enrolled for another kiosk", store.ErrExists, k.ID)
		}
		if err := certs.Put([]byte(k.CertSHA256), []byte(k.ID)); err != nil {
			return err
		}
		if err := putKioskSummary(tx, &k); err != nil {
			return err
		}
		return putJSON(kiosks, []byte(k.ID), &k)
	})
}

// Kiosk implements store.KioskStore.
func (s *Store) Kiosk(ctx context.Context, id string) (store.Kiosk, error) {
	var k store.Kiosk
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return getKiosk(tx, id, &k)
	})
	return k, err
}

func getKiosk(tx *bolt.Tx, id string, k *store.Kiosk) error {
	ok, err := getJSON(tx.Bucket(bucketKiosks), []byte(id), k)
	if err == nil && !ok {
		err = fmt.Errorf("%w: kiosk %q", store.ErrNotFound, id)
	}
	return err
}

// KioskByCertificate implements store.KioskStore.
func (s *Store) KioskByCertificate(ctx context.Context, sha256Hex string) (store.Kiosk, error) {
	var k store.Kiosk
	err := s.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketKioskCerts).Get([]byte(sha256Hex))
		if id == nil {
			return fmt.Errorf("%w: no kiosk has this client certificate", store.ErrNotFound)
		}
		return getKiosk(tx, string(id), &k)
	})
	return k, err
}

// ListKiosks implements store.KioskStore.
func (s *Store) ListKiosks(ctx context.Context) ([]store.Kiosk, error) {
	var out []store.Kiosk
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = listJSON[store.Kiosk](ctx, tx.Bucket(bucketKiosks), nil)
		return err
	})
	return out, err
}

// SetKioskStatus implements store.KioskStore.
func (s *Store) SetKioskStatus(ctx context.Context, id string, status store.KioskStatus, reason string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("%w: kiosk status time is required", store.ErrInvalid)
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		var k store.Kiosk
		if err := getKiosk(tx, id, &k); err != nil {
			return err
		}
		if err := store.CheckKioskStatusChange(k.Status, status, reason); err != nil {
			return fmt.Errorf("kiosk %s: %s → %s: %w", id, k.Status, status, err)
		}
		k.Status, k.StatusReason, k.StatusAt = status, reason, store.Time(at)
		if err := putKioskSummary(tx, &k); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketKiosks), []byte(id), &k)
	})
}

// TouchKiosk implements store.KioskStore.
func (s *Store) TouchKiosk(ctx context.Context, id string, at time.Time) error {
	at = store.Time(at)
	if at.IsZero() {
		return fmt.Errorf("%w: last-seen time is required", store.ErrInvalid)
	}
	// Every connected kiosk is touched about once a minute: group commit.
	var notFound error
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		var k store.Kiosk
		notFound = getKiosk(tx, id, &k)
		if notFound != nil || !at.After(k.LastSeen) {
			return nil
		}
		k.LastSeen = at
		return putJSON(tx.Bucket(bucketKiosks), []byte(id), &k)
	})
	if err != nil {
		return err
	}
	return notFound
}
