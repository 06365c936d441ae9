package records

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

// Region is a handle on one municipality's region, holding that region's
// unwrapped keys. It reads, counts and deletes that region only. Every use
// checks that the region still has the keys the handle was opened with, so
// a handle outliving a deletion fails with ErrNoRegion rather than reading a
// re-created region. Safe for concurrent use.
type Region struct {
	v        *Vault
	keys     *regionKeys
	identity []byte
	deleted  atomic.Bool
}

func newRegion(v *Vault, k *regionKeys) *Region {
	return &Region{v: v, keys: k, identity: k.identity()}
}

// Municipality returns the region's municipality code.
func (r *Region) Municipality() string { return r.keys.code }

// KeyVersion returns the region's key version: 1 when first created, one
// more each time it is created again after a deletion.
func (r *Region) KeyVersion() uint32 { return r.keys.version }

// checkTx confirms, inside a transaction, that the region still exists
// with this handle's keys, and returns its bucket (nil if empty).
func (r *Region) checkTx(tx *bolt.Tx) (*bolt.Bucket, error) {
	code := []byte(r.keys.code)
	e := tx.Bucket(bucketKeys).Get(code)
	if r.deleted.Load() || e == nil || len(e) < keyEntryIdentity || !bytes.Equal(e[:keyEntryIdentity], r.identity) {
		return nil, fmt.Errorf("%w: the region of municipality %s was deleted (or re-created) after this handle was opened", ErrNoRegion, r.keys.code)
	}
	return tx.Bucket(bucketRegions).Bucket(code), nil
}

// Lookup returns the record for a My Number. A My Number with a bad check
// digit is refused with ErrBadMyNumber before any lookup; ErrNoRecord when
// the region holds none for the person; ErrCorrupt when the stored value
// does not authenticate.
func (r *Region) Lookup(ctx context.Context, myNumber string) (Record, error) {
	if err := mynumber.Validate(myNumber); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrBadMyNumber, err)
	}
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	rk := r.keys.recordKey(myNumber)
	var value []byte
	err := r.v.db.View(func(tx *bolt.Tx) error {
		b, err := r.checkTx(tx)
		if err != nil {
			return err
		}
		var v []byte
		if b != nil {
			v = b.Get(rk)
		}
		if v == nil {
			return fmt.Errorf("%w in municipality %s", ErrNoRecord, r.keys.code)
		}
		value = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return Record{}, err
	}
	plain, err := r.keys.openRecord(rk, value)
	if err != nil {
		return Record{}, err
	}
	defer clear(plain)
	var rec Record
	if err := json.Unmarshal(plain, &rec); err != nil {
		return Record{}, fmt.Errorf("%w: municipality %s: undecodable record", ErrCorrupt, r.keys.code)
	}
	if rec.Municipality != r.keys.code {
		return Record{}, fmt.Errorf("%w: municipality %s: record names another municipality", ErrCorrupt, r.keys.code)
	}
	return rec, nil
}

// Count returns the number of records in the region.
func (r *Region) Count(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := r.v.db.View(func(tx *bolt.Tx) error {
		b, err := r.checkTx(tx)
		if b != nil {
			n = b.Stats().KeyN
		}
		return err
	})
	return n, err
}

// Delete destroys the region in one transaction: its records, its wrapped
// keys (crypto-shredding: any copy of the ciphertext left in free pages or
// backups is unreadable without them, once the master key has also been
// rotated — see docs/RECORDS.md) and the handle. It appends a deletion entry
// (municipality, time, record count, operator) to the operations log and
// returns it. operator is the individual ID of the person deleting.
func (r *Region) Delete(ctx context.Context, operator string) (Operation, error) {
	if err := checkOperator(operator); err != nil {
		return Operation{}, err
	}
	if err := ctx.Err(); err != nil {
		return Operation{}, err
	}
	op := Operation{Kind: OpDelete, Municipality: r.keys.code, At: r.v.now(), Operator: operator, KeyVersion: r.keys.version}
	err := r.v.db.Update(func(tx *bolt.Tx) error {
		b, err := r.checkTx(tx)
		if err != nil {
			return err
		}
		code := []byte(r.keys.code)
		if b != nil {
			op.Records = b.Stats().KeyN
			if err := tx.Bucket(bucketRegions).DeleteBucket(code); err != nil {
				return fmt.Errorf("records: deleting region %s: %w", r.keys.code, err)
			}
		}
		if err := tx.Bucket(bucketKeys).Delete(code); err != nil {
			return fmt.Errorf("records: deleting keys of region %s: %w", r.keys.code, err)
		}
		return appendLog(tx, &op)
	})
	if err != nil {
		return Operation{}, err
	}
	// The handle's keys stay in memory until it is garbage collected;
	// clearing them here would race with lookups already under way, which
	// fail anyway because checkTx sees the handle is deleted.
	r.deleted.Store(true)
	r.v.evict(r)
	return op, nil
}

func isNoRegion(err error) bool { return errors.Is(err, ErrNoRegion) }
