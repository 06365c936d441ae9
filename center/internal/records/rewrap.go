package records

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Rewrap re-wraps every region's keys, and the master key check value,
// under a new master key, in one transaction of backend b. The region keys
// themselves, and so every record, are unchanged. Run it with the center
// stopped (a running Vault still holds the old key) and then destroy the
// old key file: copies of the old wrapped keys left in free database pages
// or backups are unreadable without it. Returns the number of regions
// re-wrapped.
func Rewrap(ctx context.Context, b Backend, oldKey, newKey *MasterKey, operator string, now time.Time) (int, error) {
	if oldKey == nil || newKey == nil {
		return 0, fmt.Errorf("%w: rewrap needs the old and the new master key", ErrMasterKeyFile)
	}
	if oldKey.ID() == newKey.ID() {
		return 0, fmt.Errorf("records: the new master key is the old one; generate a new key file first")
	}
	if err := checkOperator(operator); err != nil {
		return 0, err
	}
	check, err := seal(newKey.aead, masterCheckText, []byte(adMasterCheck))
	if err != nil {
		return 0, err
	}
	op := Operation{Kind: OpRewrap, At: now, Operator: operator, MasterKeyID: newKey.ID()}
	op.normalise()
	_, n, err := b.Rewrap(ctx, Rewrapping{
		Check: func(m Meta) error {
			if m.Format != FormatVersion {
				return fmt.Errorf("records: the database holds records format %d; this build reads format %d", m.Format, FormatVersion)
			}
			return checkMaster(m, oldKey)
		},
		Rewrap: func(code string, entry []byte) ([]byte, error) { return rewrapKeyEntry(oldKey, newKey, code, entry) },
		Meta:   Meta{Format: FormatVersion, MasterCheck: check, MasterID: newKey.ID()},
		Log:    op,
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
func RotateMasterKeyFile(ctx context.Context, b Backend, oldPath, newPath, operator string, now time.Time) (*MasterKey, int, error) {
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
	n, err := Rewrap(ctx, b, old, next, operator, now)
	if err != nil {
		if rmErr := os.Remove(newPath); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("records: removing unused new key file: %w", rmErr))
		}
		return nil, 0, err
	}
	return next, n, nil
}
