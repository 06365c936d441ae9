package boltstore

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// UpsertMunicipalities writes ms in one transaction, all or none: the
// national list (1,741 municipalities) is imported in one commit instead of
// one fsync each (0.1 s instead of about 7 s). Each is validated first.
func (s *Store) UpsertMunicipalities(ctx context.Context, ms []store.Municipality) error {
	for i := range ms {
		if err := ms[i].Validate(); err != nil {
			return err
		}
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMunicipality)
		for i := range ms {
			if err := putJSON(b, []byte(ms[i].Code), &ms[i]); err != nil {
				return err
			}
		}
		return nil
	})
}
