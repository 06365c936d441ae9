package boltstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// CreateOperator implements store.OperatorStore.
func (s *Store) CreateOperator(ctx context.Context, o store.Operator) error {
	if err := o.Validate(); err != nil {
		return err
	}
	store.NormaliseOperator(&o)
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOperators)
		if b.Get([]byte(o.ID)) != nil {
			return fmt.Errorf("%w: operator %s", store.ErrExists, o.ID)
		}
		return putJSON(b, []byte(o.ID), &o)
	})
}

func getOperator(tx *bolt.Tx, id string, o *store.Operator) error {
	ok, err := getJSON(tx.Bucket(bucketOperators), []byte(id), o)
	if err == nil && !ok {
		err = fmt.Errorf("%w: operator %q", store.ErrNotFound, id)
	}
	return err
}

// Operator implements store.OperatorStore.
func (s *Store) Operator(ctx context.Context, id string) (store.Operator, error) {
	var o store.Operator
	err := s.view(ctx, func(tx *bolt.Tx) error { return getOperator(tx, id, &o) })
	return o, err
}

// ListOperators implements store.OperatorStore.
func (s *Store) ListOperators(ctx context.Context) ([]store.Operator, error) {
	var out []store.Operator
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = listJSON[store.Operator](ctx, tx.Bucket(bucketOperators), nil)
		return err
	})
	return out, err
}

// UpdateOperator implements store.OperatorStore.
func (s *Store) UpdateOperator(ctx context.Context, id string, change func(*store.Operator) error) (store.Operator, error) {
	var out store.Operator
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var o store.Operator
		if err := getOperator(tx, id, &o); err != nil {
			return err
		}
		created := o.Created
		if err := change(&o); err != nil {
			return fmt.Errorf("store: operator %s not changed: %w", id, err)
		}
		if o.ID != id || !store.Time(o.Created).Equal(created) {
			return fmt.Errorf("%w: an operator's ID and creation time cannot change", store.ErrInvalid)
		}
		if err := o.Validate(); err != nil {
			return err
		}
		store.NormaliseOperator(&o)
		out = o
		return putJSON(tx.Bucket(bucketOperators), []byte(id), &o)
	})
	if err != nil {
		return store.Operator{}, err
	}
	return out, nil
}

// PutAPIToken implements store.OperatorStore.
func (s *Store) PutAPIToken(ctx context.Context, t store.APIToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	t.Created, t.Expires = store.Time(t.Created), store.Time(t.Expires)
	return s.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketOperators).Get([]byte(t.Operator)) == nil {
			return fmt.Errorf("%w: operator %q", store.ErrNotFound, t.Operator)
		}
		tokens, byHash := tx.Bucket(bucketAPITokens), tx.Bucket(bucketAPITokenHash)
		if tokens.Get([]byte(t.ID)) != nil || byHash.Get([]byte(t.SHA256)) != nil {
			return fmt.Errorf("%w: API token %s", store.ErrExists, t.ID)
		}
		if err := byHash.Put([]byte(t.SHA256), []byte(t.ID)); err != nil {
			return err
		}
		return putJSON(tokens, []byte(t.ID), &t)
	})
}

// APITokenByHash implements store.OperatorStore.
func (s *Store) APITokenByHash(ctx context.Context, sha256Hex string) (store.APIToken, error) {
	var t store.APIToken
	err := s.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketAPITokenHash).Get([]byte(sha256Hex))
		if id == nil {
			return fmt.Errorf("%w: no such API token", store.ErrNotFound)
		}
		ok, err := getJSON(tx.Bucket(bucketAPITokens), id, &t)
		if err == nil && !ok {
			err = fmt.Errorf("boltstore: API token index names a missing token")
		}
		return err
	})
	return t, err
}

// ListAPITokens implements store.OperatorStore.
func (s *Store) ListAPITokens(ctx context.Context, operator string) ([]store.APIToken, error) {
	var out []store.APIToken
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = listJSON(ctx, tx.Bucket(bucketAPITokens), func(t *store.APIToken) bool {
			return operator == "" || t.Operator == operator
		})
		return err
	})
	slices.SortStableFunc(out, func(a, b store.APIToken) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// RevokeAPIToken implements store.OperatorStore.
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("%w: revocation time is required", store.ErrInvalid)
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAPITokens)
		var t store.APIToken
		ok, err := getJSON(b, []byte(id), &t)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: API token %q", store.ErrNotFound, id)
		}
		if !t.Revoked.IsZero() {
			return fmt.Errorf("%w: API token %s is already revoked", store.ErrTransition, id)
		}
		t.Revoked = store.Time(at)
		return putJSON(b, []byte(id), &t)
	})
}
