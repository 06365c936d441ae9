package boltstore

import (
	"context"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

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
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSigningKeys)
		if b.Get([]byte(k.KID)) != nil {
			return fmt.Errorf("%w: signing key %s", store.ErrExists, k.KID)
		}
		return putJSON(b, []byte(k.KID), &k)
	})
}

// SigningKey implements store.SigningKeyStore.
func (s *Store) SigningKey(ctx context.Context, kid string) (store.SigningKey, error) {
	var k store.SigningKey
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return getSigningKey(tx, kid, &k)
	})
	return k, err
}

func getSigningKey(tx *bolt.Tx, kid string, k *store.SigningKey) error {
	ok, err := getJSON(tx.Bucket(bucketSigningKeys), []byte(kid), k)
	if err == nil && !ok {
		err = fmt.Errorf("%w: signing key %q", store.ErrNotFound, kid)
	}
	return err
}

// ListSigningKeys implements store.SigningKeyStore.
func (s *Store) ListSigningKeys(ctx context.Context, purpose store.KeyPurpose) ([]store.SigningKey, error) {
	var out []store.SigningKey
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = listJSON(ctx, tx.Bucket(bucketSigningKeys), func(k *store.SigningKey) bool {
			return purpose == "" || k.Purpose == purpose
		})
		return err
	})
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].KID < out[j].KID
	})
	return out, err
}

// SetSigningKeyStatus implements store.SigningKeyStore.
func (s *Store) SetSigningKeyStatus(ctx context.Context, kid string, status store.KeyStatus, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("%w: signing key status time is required", store.ErrInvalid)
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		var k store.SigningKey
		if err := getSigningKey(tx, kid, &k); err != nil {
			return err
		}
		if err := store.CheckKeyStatusChange(k.Status, status); err != nil {
			return fmt.Errorf("signing key %s: %s → %s: %w", kid, k.Status, status, err)
		}
		k.Status, k.StatusAt = status, store.Time(at)
		return putJSON(tx.Bucket(bucketSigningKeys), []byte(kid), &k)
	})
}
