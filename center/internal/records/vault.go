package records

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/pkg/lgcode"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

// FormatVersion is the records format this build writes and reads: the
// key entries, sealed values and record encoding described in
// docs/RECORDS.md, on generations (format 1 kept one bucket per region
// and JSON records; its files must be re-imported).
const FormatVersion = 2

// masterCheckText is sealed under the master key into Meta.MasterCheck.
var masterCheckText = []byte("kioskcert records master key check")

// timePrecision is the precision of stored times (as in the store).
const timePrecision = time.Microsecond

// DefaultStaleStaging is how long a staging generation may go without a
// heartbeat before it counts as abandoned (its import's process died) and
// is dropped.
const DefaultStaleStaging = 15 * time.Minute

// Options tunes Open.
type Options struct {
	// Now is the clock for creation, import and deletion times; nil means
	// time.Now.
	Now func() time.Time
	// Log receives warnings about cleanup that failed after an operation
	// took effect (it is retried later); nil discards them. Nothing
	// personal is ever logged.
	Log *slog.Logger
	// StaleStaging overrides DefaultStaleStaging.
	StaleStaging time.Duration
}

// Vault is the records component on one backend. It is safe for
// concurrent use.
type Vault struct {
	b      Backend
	master *MasterKey
	now    func() time.Time
	log    *slog.Logger
	stale  time.Duration

	mu        sync.Mutex
	regions   map[string]*Region // open handles, so lookups do not unwrap keys each time
	importing map[string]bool    // municipalities with an import being staged here
}

// Open prepares the records in backend b and checks that master is the
// key the database was set up with, failing with ErrWrongMasterKey before
// any record is touched. The first Open of a database records the master
// key's check value.
func Open(ctx context.Context, b Backend, master *MasterKey, opts Options) (*Vault, error) {
	if master == nil {
		return nil, fmt.Errorf("%w: no master key", ErrMasterKeyFile)
	}
	if b == nil {
		return nil, errors.New("records: no backend")
	}
	v := &Vault{b: b, master: master, now: opts.Now, log: opts.Log, stale: opts.StaleStaging,
		regions: map[string]*Region{}, importing: map[string]bool{}}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.stale <= 0 {
		v.stale = DefaultStaleStaging
	}
	check, err := seal(master.aead, masterCheckText, []byte(adMasterCheck))
	if err != nil {
		return nil, err
	}
	m, err := b.Init(ctx, Meta{Format: FormatVersion, MasterCheck: check, MasterID: master.ID()})
	if err != nil {
		return nil, err
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("records: the database holds records format %d; this build reads format %d (re-import the ledgers into a new records file)", m.Format, FormatVersion)
	}
	if err := checkMaster(m, master); err != nil {
		return nil, err
	}
	return v, nil
}

func checkMaster(m Meta, master *MasterKey) error {
	if m.MasterCheck == nil {
		return fmt.Errorf("records: database has no master key check value")
	}
	plain, err := open(master.aead, m.MasterCheck, []byte(adMasterCheck))
	if err != nil || !bytes.Equal(plain, masterCheckText) {
		return fmt.Errorf("%w: master key %s is not the key these records are wrapped under (they expect key %s); check the master key file path, or use the key from before the last rotation",
			ErrWrongMasterKey, master.ID(), m.MasterID)
	}
	return nil
}

// Region opens the region of a municipality: it unwraps that region's keys
// and returns a handle that can read, count and delete that region only.
// ErrNoRegion when the municipality has none. Handles are cached, so calling
// Region per request is cheap.
func (v *Vault) Region(ctx context.Context, code string) (*Region, error) {
	if err := lgcode.Validate(code); err != nil {
		return nil, fmt.Errorf("records: municipality code: %w", err)
	}
	v.mu.Lock()
	r := v.regions[code]
	v.mu.Unlock()
	if r != nil && !r.deleted.Load() {
		return r, nil
	}
	st, err := v.b.Region(ctx, code)
	if err != nil {
		return nil, err
	}
	r, err = v.handle(st)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if cached := v.regions[code]; cached != nil && !cached.deleted.Load() && bytes.Equal(cached.id, r.id) {
		return cached, nil
	}
	v.regions[code] = r
	return r, nil
}

// handle unwraps a region's keys into a handle.
func (v *Vault) handle(st RegionState) (*Region, error) {
	keys, err := unwrapKeyEntry(v.master, st.Code, st.KeyEntry)
	if err != nil {
		return nil, err
	}
	// The backend keeps the identity beside the wrapped keys; they must
	// agree, or a handle could check one region and decrypt with another's
	// keys.
	if !bytes.Equal(keys.identity(), st.ID) || keys.version != st.KeyVersion {
		return nil, fmt.Errorf("%w: municipality %s: the region's identity does not match its keys", ErrCorrupt, st.Code)
	}
	return newRegion(v, keys), nil
}

func (v *Vault) evict(r *Region) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.regions[r.keys.code] == r {
		delete(v.regions, r.keys.code)
	}
}

// Lookup returns the record a municipality holds for a My Number. A My
// Number with a bad check digit is refused with ErrBadMyNumber before any
// lookup; a municipality without a region or without a record for the
// person gives ErrNoRecord (wrapping ErrNoRegion in the first case).
func (v *Vault) Lookup(ctx context.Context, code, myNumber string) (Record, error) {
	if err := mynumber.Validate(myNumber); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrBadMyNumber, err)
	}
	for attempt := 0; ; attempt++ {
		r, err := v.Region(ctx, code)
		if err != nil {
			if isNoRegion(err) {
				return Record{}, fmt.Errorf("%w: %w", ErrNoRecord, err)
			}
			return Record{}, err
		}
		rec, err := r.Lookup(ctx, myNumber)
		if isNoRegion(err) && attempt == 0 {
			// The cached handle's region was deleted, perhaps re-created,
			// by another process: open the current one once.
			r.deleted.Store(true)
			v.evict(r)
			continue
		}
		if isNoRegion(err) {
			return Record{}, fmt.Errorf("%w: %w", ErrNoRecord, err)
		}
		return rec, err
	}
}

// RegionCount is what the operator commands show about a region: counts and
// key metadata, no personal data.
type RegionCount struct {
	Municipality string
	Records      int
	KeyVersion   uint32
	Created      time.Time
	// MergePending is true while a committed changes file is being folded
	// into the region's records (lookups already see it).
	MergePending bool
}

// Counts lists every region with its number of records, ordered by code.
// It reads region metadata only; nothing is decrypted.
func (v *Vault) Counts(ctx context.Context) ([]RegionCount, error) {
	states, err := v.b.Regions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RegionCount, 0, len(states))
	for _, st := range states {
		_, _, created, _, err := parseKeyEntry(st.KeyEntry)
		if err != nil {
			return nil, fmt.Errorf("records: key entry of municipality %s: %w", st.Code, err)
		}
		out = append(out, RegionCount{Municipality: st.Code, Records: int(st.Records), KeyVersion: st.KeyVersion, Created: created, MergePending: st.Overlay != 0})
	}
	return out, nil
}

// Log returns the operations log, oldest first: imports, flag changes,
// deletions (the record of deletion the brief requires) and master key
// rotations.
func (v *Vault) Log(ctx context.Context) ([]Operation, error) {
	return v.b.Log(ctx)
}

// Maintain finishes what interrupted operations left: it merges committed
// changes files whose merge stopped (a crash) and drops retired
// generations and abandoned staging. Lookups are correct without it; it
// frees space. Imports run it first; a center may also call it at start.
func (v *Vault) Maintain(ctx context.Context) error {
	states, err := v.b.Regions(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, st := range states {
		if st.Overlay == 0 {
			continue
		}
		v.mu.Lock()
		busy := v.importing[st.Code]
		v.mu.Unlock()
		if busy {
			continue // the import merges its own overlay
		}
		if _, err := v.b.Merge(ctx, st.Code, st.ID); err != nil && !isNoRegion(err) {
			errs = append(errs, fmt.Errorf("records: merging the changes of municipality %s: %w", st.Code, err))
		}
	}
	if err := v.collect(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// collect drops retired generations and abandoned staging.
func (v *Vault) collect(ctx context.Context) error {
	gens, err := v.b.Garbage(ctx, v.now().Add(-v.stale))
	if err != nil {
		return fmt.Errorf("records: listing unused generations: %w", err)
	}
	for _, g := range gens {
		if err := v.b.Drop(ctx, g); err != nil {
			return fmt.Errorf("records: dropping generation %d: %w", g, err)
		}
	}
	return nil
}

// cleanup runs collect after an operation took effect: a failure is
// logged, not returned, because the operation itself succeeded and the
// next import or Maintain retries.
func (v *Vault) cleanup(ctx context.Context, what, code string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	if err := v.collect(ctx); err != nil {
		v.log.Warn("records: freeing the space of replaced records failed; it is retried at the next import or Maintain",
			"after", what, "municipality", code, "err", err)
	}
}

// OperationKind names an entry of the operations log.
type OperationKind string

// Operation kinds.
const (
	OpImport    OperationKind = "import"     // records written into a region
	OpDelete    OperationKind = "delete"     // a region and its keys destroyed
	OpRewrap    OperationKind = "rewrap"     // region keys re-wrapped under a new master key
	OpFlagSet   OperationKind = "flag-set"   // an operator set a flag on one record
	OpFlagClear OperationKind = "flag-clear" // an operator cleared a flag on one record
)

// Operation is one entry of the operations log: who changed which region,
// when, and how many records. It holds no personal data.
type Operation struct {
	Seq          uint64        `json:"seq"`
	Kind         OperationKind `json:"kind"`
	Municipality string        `json:"municipality,omitempty"` // empty for rewrap
	At           time.Time     `json:"at"`
	// Records: import — records written; delete — records destroyed;
	// rewrap — regions re-wrapped; flag-set/-clear — 1.
	Records int `json:"records"`
	// Doses: import — doses in the records written.
	Doses      int    `json:"doses,omitempty"`
	Operator   string `json:"operator"`
	KeyVersion uint32 `json:"keyVersion,omitempty"`
	// MasterKeyID: rewrap — the new master key's ID.
	MasterKeyID string `json:"masterKeyId,omitempty"`
	// Mode, Added, Replaced and Removed: import — the mode, and how many
	// records were new, replaced, and removed (a full import removes the
	// persons no longer in the ledger).
	Mode     ImportMode `json:"mode,omitempty"`
	Added    int        `json:"added,omitempty"`
	Replaced int        `json:"replaced,omitempty"`
	Removed  int        `json:"removed,omitempty"`
	// Flag and RecordRef: flag-set/-clear — the flag, and a pseudonymous
	// reference to the record (16 hex digits of an HMAC of the My Number
	// under the region's lookup key: the municipality can check which
	// person it was, nobody without the region's keys can; it is
	// meaningless once the region is deleted).
	Flag      FlagKind `json:"flag,omitempty"`
	RecordRef string   `json:"recordRef,omitempty"`
}

func (op *Operation) normalise() { op.At = op.At.UTC().Truncate(timePrecision) }

// checkOperator requires an individual operator ID (brief §2: access by
// individual user ID): 1-64 characters of [A-Za-z0-9._@-].
func checkOperator(op string) error {
	if len(op) == 0 || len(op) > 64 {
		return fmt.Errorf("%w: must be 1-64 characters of [A-Za-z0-9._@-]", ErrInvalidOperator)
	}
	for i := 0; i < len(op); i++ {
		c := op[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return fmt.Errorf("%w: must be 1-64 characters of [A-Za-z0-9._@-]", ErrInvalidOperator)
		}
	}
	return nil
}
