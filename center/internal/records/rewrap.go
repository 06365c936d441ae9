package records

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Rewrap re-wraps every region's keys, and the master key check value,
// under a new master key, in one transaction. The region keys themselves,
// and so every record, are unchanged. Run it with the center stopped (a
// running Vault still holds the old key) and then destroy the old key file:
// copies of the old wrapped keys left in free database pages or backups are
// unreadable without it. Returns the number of regions re-wrapped.
func Rewrap(ctx context.Context, db *bolt.DB, oldKey, newKey *MasterKey, operator string, now time.Time) (int, error) {
	if oldKey == nil || newKey == nil {
		return 0, fmt.Errorf("%w: rewrap needs the oldKey and the newKey master key", ErrMasterKeyFile)
	}
	if oldKey.ID() == newKey.ID() {
		return 0, fmt.Errorf("records: the newKey master key is the oldKey one; generate a newKey key file first")
	}
	if err := checkOperator(operator); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := db.Update(func(tx *bolt.Tx) error {
		meta, keys := tx.Bucket(bucketMeta), tx.Bucket(bucketKeys)
		if meta == nil || keys == nil {
			return fmt.Errorf("records: database has no records buckets")
		}
		if err := checkMaster(meta, oldKey); err != nil {
			return err
		}
		// Collect first: a bucket must not be modified while ForEach walks it.
		type rewrapped struct{ code, entry []byte }
		var all []rewrapped
		err := keys.ForEach(func(code, entry []byte) error {
			e, err := rewrapKeyEntry(oldKey, newKey, string(code), entry)
			if err != nil {
				return err
			}
			all = append(all, rewrapped{append([]byte(nil), code...), e})
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range all {
			if err := keys.Put(r.code, r.entry); err != nil {
				return err
			}
		}
		n = len(all)
		if err := putMasterCheck(meta, newKey); err != nil {
			return err
		}
		return appendLog(tx, &Operation{Kind: OpRewrap, At: now, Records: n, Operator: operator, MasterKeyID: newKey.ID()})
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// RotateMasterKeyFile is the operator command's master key rotation: it
// loads the old key from oldPath, writes a new random key to newPath (which
// must not exist), and re-wraps the database under it. If the re-wrap fails
// the new file is removed and the database is unchanged. Afterwards point
// the center's configuration at newPath and destroy oldPath.
func RotateMasterKeyFile(ctx context.Context, db *bolt.DB, oldPath, newPath, operator string, now time.Time) (*MasterKey, int, error) {
	old, err := LoadMasterKey(oldPath)
	if err != nil {
		return nil, 0, err
	}
	if err := checkOperator(operator); err != nil {
		return nil, 0, err
	}
	next, err := GenerateMasterKeyFile(newPath)
	if err != nil {
		return nil, 0, err
	}
	n, err := Rewrap(ctx, db, old, next, operator, now)
	if err != nil {
		if rmErr := os.Remove(newPath); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("records: removing unused new key file: %w", rmErr))
		}
		return nil, 0, err
	}
	return next, n, nil
}
