package records

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

// Region is a handle on one municipality's region, holding that region's
// unwrapped keys. It reads, counts and deletes that region only. Every use
// passes the region's identity to the backend, which checks it in the same
// read, so a handle outliving a deletion fails with ErrNoRegion rather
// than reading a re-created region. Safe for concurrent use.
type Region struct {
	v       *Vault
	keys    *regionKeys
	id      []byte
	deleted atomic.Bool
}

func newRegion(v *Vault, k *regionKeys) *Region {
	return &Region{v: v, keys: k, id: k.identity()}
}

// Municipality returns the region's municipality code.
func (r *Region) Municipality() string { return r.keys.code }

// KeyVersion returns the region's key version: 1 when first created, one
// more each time it is created again after a deletion.
func (r *Region) KeyVersion() uint32 { return r.keys.version }

func (r *Region) gone() error {
	return fmt.Errorf("%w: the region of municipality %s was deleted (or re-created) after this handle was opened", ErrNoRegion, r.keys.code)
}

// Lookup returns the record for a My Number. A My Number with a bad check
// digit is refused with ErrBadMyNumber before any lookup; ErrNoRecord when
// the region holds none for the person; ErrCorrupt when the stored value
// does not authenticate.
func (r *Region) Lookup(ctx context.Context, myNumber string) (Record, error) {
	if err := mynumber.Validate(myNumber); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrBadMyNumber, err)
	}
	rec, _, _, err := r.read(ctx, myNumber)
	return rec, err
}

// read returns a record with its key and stored value.
func (r *Region) read(ctx context.Context, myNumber string) (Record, []byte, []byte, error) {
	if r.deleted.Load() {
		return Record{}, nil, nil, r.gone()
	}
	if err := ctx.Err(); err != nil {
		return Record{}, nil, nil, err
	}
	rk := r.keys.recordKey(myNumber)
	value, err := r.v.b.Get(ctx, r.keys.code, r.id, rk)
	if errors.Is(err, ErrNoRecord) {
		return Record{}, nil, nil, fmt.Errorf("%w in municipality %s", ErrNoRecord, r.keys.code)
	}
	if err != nil {
		return Record{}, nil, nil, err
	}
	rec, err := r.keys.openRecord(rk, value)
	return rec, rk, value, err
}

// Count returns the number of records in the region.
func (r *Region) Count(ctx context.Context) (int, error) {
	if r.deleted.Load() {
		return 0, r.gone()
	}
	st, err := r.v.b.Region(ctx, r.keys.code)
	if err != nil {
		return 0, err
	}
	if string(st.ID) != string(r.id) {
		return 0, r.gone()
	}
	return int(st.Records), nil
}

// Delete destroys the region: its wrapped keys go in one transaction
// (crypto-shredding: its records, and any copy of them in free pages or
// backups, are unreadable without them once the master key has also been
// rotated — see docs/RECORDS.md), with a deletion entry (municipality,
// time, record count, operator) in the operations log, which it returns.
// The records' space is then freed in batches. operator is the individual
// ID of the person deleting.
func (r *Region) Delete(ctx context.Context, operator string) (Operation, error) {
	if err := checkOperator(operator); err != nil {
		return Operation{}, err
	}
	if r.deleted.Load() {
		return Operation{}, r.gone()
	}
	v := r.v
	v.mu.Lock()
	busy := v.importing[r.keys.code]
	v.mu.Unlock()
	if busy {
		return Operation{}, fmt.Errorf("%w: municipality %s; delete the region after the import", ErrImportRunning, r.keys.code)
	}
	op := Operation{Kind: OpDelete, Municipality: r.keys.code, At: v.now(), Operator: operator, KeyVersion: r.keys.version}
	op.normalise()
	op, err := v.b.DeleteRegion(ctx, r.keys.code, r.id, op)
	if err != nil {
		return Operation{}, err
	}
	// The handle's keys stay in memory until it is garbage collected;
	// clearing them here would race with lookups already under way, which
	// fail anyway because the backend no longer knows the region.
	r.deleted.Store(true)
	v.evict(r)
	v.cleanup(ctx, "delete", r.keys.code)
	return op, nil
}

// SetFlag sets one flag on the record of one person (found by municipality
// and My Number), as operator: counter only with its reason, deceased or
// moved out with the date. The flag counts as set by an operator, so later
// imports of the person keep it until an operator clears it. It is logged
// (flag-set, operator, a pseudonymous record reference; no personal data).
func (v *Vault) SetFlag(ctx context.Context, code, myNumber, operator string, c FlagChange) (Operation, error) {
	return v.changeFlags(ctx, code, myNumber, operator, OpFlagSet, c.Kind, func(f *Flags) error { return c.apply(f) })
}

// ClearFlag removes one flag from the record of one person, whether the
// ledger or an operator set it (a flag the ledger still carries returns
// with the person's next import). ErrFlagNotSet if the record does not
// carry it. Logged as flag-clear.
func (v *Vault) ClearFlag(ctx context.Context, code, myNumber, operator string, k FlagKind) (Operation, error) {
	if k < FlagCounterOnly || k > FlagMovedOut {
		return Operation{}, fmt.Errorf("%w: unknown flag", ErrInvalidRecord)
	}
	return v.changeFlags(ctx, code, myNumber, operator, OpFlagClear, k, func(f *Flags) error {
		if !f.Has(k) {
			return fmt.Errorf("%w: the record does not carry %s", ErrFlagNotSet, k)
		}
		f.clear(k)
		return nil
	})
}

func (v *Vault) changeFlags(ctx context.Context, code, myNumber, operator string, kind OperationKind, flag FlagKind, change func(*Flags) error) (Operation, error) {
	if err := checkOperator(operator); err != nil {
		return Operation{}, err
	}
	if err := mynumber.Validate(myNumber); err != nil {
		return Operation{}, fmt.Errorf("%w: %w", ErrBadMyNumber, err)
	}
	// A conflict means another process changed the region between our read
	// and write; read again.
	for attempt := 0; ; attempt++ {
		r, err := v.Region(ctx, code)
		if err != nil {
			return Operation{}, err
		}
		v.mu.Lock()
		busy := v.importing[code]
		v.mu.Unlock()
		if busy {
			// The import read the records it replaces already; a flag set
			// now would be lost when it commits.
			return Operation{}, fmt.Errorf("%w: municipality %s; change the flag after the import", ErrImportRunning, code)
		}
		rec, rk, old, err := r.read(ctx, myNumber)
		if err != nil {
			return Operation{}, err
		}
		if err := change(&rec.Flags); err != nil {
			return Operation{}, err
		}
		if err := rec.Validate(); err != nil {
			return Operation{}, err
		}
		sealed, err := r.keys.sealRecord(rk, appendRecord(nil, &rec))
		if err != nil {
			return Operation{}, err
		}
		op := Operation{Kind: kind, Municipality: code, At: v.now(), Records: 1, Operator: operator,
			KeyVersion: r.keys.version, Flag: flag, RecordRef: r.keys.logRef(myNumber)}
		op.normalise()
		op, err = v.b.Update(ctx, RecordUpdate{Code: code, ID: r.id, Key: rk, Old: old, New: sealed, Log: op})
		if errors.Is(err, ErrConflict) && attempt < 3 {
			continue
		}
		return op, err
	}
}

func isNoRegion(err error) bool { return errors.Is(err, ErrNoRegion) }
