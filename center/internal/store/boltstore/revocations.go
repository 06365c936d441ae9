package boltstore

import (
	"context"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// RevokeCertificate implements store.RevocationStore.
func (s *Store) RevokeCertificate(ctx context.Context, r store.Revocation) error {
	if err := r.Validate(); err != nil {
		return err
	}
	r.RevokedAt = store.Time(r.RevokedAt)
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRevocations)
		if b.Get([]byte(r.CertificateID)) != nil {
			return fmt.Errorf("%w: certificate %s is already revoked", store.ErrExists, r.CertificateID)
		}
		return putJSON(b, []byte(r.CertificateID), &r)
	})
}

// Revocation implements store.RevocationStore.
func (s *Store) Revocation(ctx context.Context, certificateID string) (store.Revocation, error) {
	var r store.Revocation
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketRevocations), []byte(certificateID), &r)
		if err == nil && !ok {
			err = fmt.Errorf("%w: certificate %q is not revoked", store.ErrNotFound, certificateID)
		}
		return err
	})
	return r, err
}

// Revocations implements store.RevocationStore. The list is read in full:
// revocations are rare (misprints, holder requests), so a per-key index
// would cost more in writes than it saves.
func (s *Store) Revocations(ctx context.Context, kid string) ([]store.Revocation, error) {
	var out []store.Revocation
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = listJSON(ctx, tx.Bucket(bucketRevocations), func(r *store.Revocation) bool {
			return kid == "" || r.KID == kid
		})
		return err
	})
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].RevokedAt.Equal(out[j].RevokedAt) {
			return out[i].RevokedAt.Before(out[j].RevokedAt)
		}
		return out[i].CertificateID < out[j].CertificateID
	})
	return out, err
}
