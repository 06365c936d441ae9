package boltstore

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// UpsertMunicipality implements store.MunicipalityStore.
func (s *Store) UpsertMunicipality(ctx context.Context, m store.Municipality) error {
	if err := m.Validate(); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketMunicipality), []byte(m.Code), &m)
	})
}

// Municipality implements store.MunicipalityStore.
func (s *Store) Municipality(ctx context.Context, code string) (store.Municipality, error) {
	var m store.Municipality
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return getMunicipality(tx, code, &m)
	})
	return m, err
}

func getMunicipality(tx *bolt.Tx, code string, m *store.Municipality) error {
	ok, err := getJSON(tx.Bucket(bucketMunicipality), []byte(code), m)
	if err == nil && !ok {
		err = fmt.Errorf("%w: municipality %q", store.ErrNotFound, code)
	}
	return err
}

// ListMunicipalities implements store.MunicipalityStore.
func (s *Store) ListMunicipalities(ctx context.Context) ([]store.Municipality, error) {
	return s.listMunicipalities(ctx, nil)
}

// ListParticipating implements store.MunicipalityStore.
func (s *Store) ListParticipating(ctx context.Context) ([]store.Municipality, error) {
	return s.listMunicipalities(ctx, func(m *store.Municipality) bool { return m.Participating })
}

func (s *Store) listMunicipalities(ctx context.Context, keep func(*store.Municipality) bool) ([]store.Municipality, error) {
	var out []store.Municipality
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = listJSON(ctx, tx.Bucket(bucketMunicipality), keep)
		return err
	})
	return out, err
}

// SetParticipation implements store.MunicipalityStore.
func (s *Store) SetParticipation(ctx context.Context, code string, participating bool) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		var m store.Municipality
		if err := getMunicipality(tx, code, &m); err != nil {
			return err
		}
		m.Participating = participating
		return putJSON(tx.Bucket(bucketMunicipality), []byte(code), &m)
	})
}
