package records

import (
	"context"
	"time"
)

// Backend is the storage under a Vault: what the regions' records need
// from a database, and nothing about encryption. Keys and values are
// opaque bytes to it: a record's key is an HMAC of a My Number, its value
// a sealed record, a region's key entry its keys wrapped under the master
// key. boltrecords implements it on a bbolt file, pgrecords on
// PostgreSQL; every backend passes the conformance suite in recordstest.
//
// # Generations
//
// A region's records live in a generation: a set of key → value pairs
// named by a number the backend hands out. A region has one active
// generation, and may have a second, the overlay, layered over it: a
// committed set of changes (values replace, nil values remove) that Get
// consults first while Merge folds it into the active generation.
//
// An import stages its records into a new generation that no lookup sees:
// BeginStaging, then StageRun with runs of items (each run sorted by key),
// then FinishStaging, which orders everything by key, reports entries that
// share a key, and builds the generation. Promote then makes it the
// region's active generation (a full import) or its overlay (a changes
// file) in one small transaction, checking that the region is still the
// one the import started from. The generations that fall out of use are
// retired; Garbage lists them (and staging generations whose import went
// quiet) and Drop deletes them in bounded batches.
//
// # Conventions
//
//   - Every method checks its context first; a cancelled context returns
//     the context's error and changes nothing.
//   - Methods that take a region's id fail with ErrNoRegion when the
//     region does not exist or exists with another id (it was deleted and
//     created again): a handle never reads a region it was not opened on.
//   - Methods whose expectations fail (Promote's serial, Update's old
//     value) change nothing and return ErrConflict.
//   - The backend never reads the clock: callers pass times.
//   - Every method that changes a region appends its Operation to the
//     operations log in the same transaction, setting Seq.
//   - Returned byte slices belong to the caller.
//   - All methods are safe for concurrent use.
type Backend interface {
	// Init stores m if the database holds no records metadata yet (and
	// fails if it holds regions without it), and returns the stored
	// metadata.
	Init(ctx context.Context, m Meta) (Meta, error)

	// Region returns a region's state, ErrNoRegion if it has none.
	Region(ctx context.Context, code string) (RegionState, error)
	// Regions returns every region's state, ordered by code.
	Regions(ctx context.Context) ([]RegionState, error)
	// LastKeyVersion returns the highest key version a region of this
	// municipality ever had (0 if none). It survives deletion, so a region
	// created again never reuses a version.
	LastKeyVersion(ctx context.Context, code string) (uint32, error)

	// Get returns the value under key in the region's overlay if the key
	// is there (ErrNoRecord if the overlay removes it), else in its active
	// generation; ErrNoRecord if absent.
	Get(ctx context.Context, code string, id, key []byte) ([]byte, error)
	// Update replaces one visible record: the value Get returns must equal
	// u.Old (else ErrConflict; ErrNoRecord if there is none). The new
	// value goes into the active generation and, when the key is in the
	// overlay, there too, so a merge under way cannot bring the old one
	// back. The region's Serial increases.
	Update(ctx context.Context, u RecordUpdate) (Operation, error)

	// BeginStaging opens a new staging generation for an import into
	// municipality code.
	BeginStaging(ctx context.Context, code string, now time.Time) (Generation, error)
	// StageRun adds a run of items to a staging generation. Items must be
	// sorted by key (equal keys allowed: they are reported at
	// FinishStaging); each run kind keeps its own key space. now refreshes
	// the staging generation's heartbeat. ErrStaging if the generation is
	// no longer staging.
	StageRun(ctx context.Context, gen Generation, kind RunKind, items []Staged, now time.Time) error
	// FinishStaging orders the staged runs. It reports items of one run
	// kind that share a key as Conflicts (at most f.MaxConflicts listed),
	// and, when f.Build is set and there is no conflict, builds the
	// generation from the RunRecords items (nil values kept as removals)
	// so that Promote can publish it. While building it joins the items,
	// in key order, with f.Base (the generation the import replaces or
	// layers over): it counts which keys are there, and gives f.Carry each
	// value whose key is, with the base's value, storing what Carry
	// returns. The staged runs are freed either way.
	FinishStaging(ctx context.Context, gen Generation, f Finish) (StagingResult, error)
	// Promote publishes a built generation (see Promotion) and logs it.
	Promote(ctx context.Context, p Promotion) (Operation, error)
	// Merge folds a region's overlay, if any, into its active generation
	// in bounded batches, then retires the overlay. Lookups see the same
	// records throughout. It returns the overlay generation retired (0 if
	// there was none).
	Merge(ctx context.Context, code string, id []byte) (Generation, error)

	// DeleteRegion removes a region's state and keys in one transaction
	// and retires its generations; op.Records is set to the number of
	// records the region held. The key version is remembered
	// (LastKeyVersion).
	DeleteRegion(ctx context.Context, code string, id []byte, op Operation) (Operation, error)
	// Garbage lists the generations to drop: retired ones, and staging
	// ones whose heartbeat is older than staleBefore.
	Garbage(ctx context.Context, staleBefore time.Time) ([]Generation, error)
	// Drop deletes a retired or staging generation in bounded batches. It
	// refuses a generation a region uses; dropping an unknown generation
	// is not an error (two collectors may race).
	Drop(ctx context.Context, gen Generation) error

	// Rewrap re-wraps every region's keys and replaces the metadata in
	// one transaction (see Rewrapping); it returns the log entry (its
	// Records set to the number of regions) and that number.
	Rewrap(ctx context.Context, r Rewrapping) (Operation, int, error)
	// Log returns the operations log, oldest first.
	Log(ctx context.Context) ([]Operation, error)
}

// Generation numbers a set of records in a backend; 0 is none.
type Generation uint64

// Meta is what a records database holds about itself.
type Meta struct {
	// Format is the records format (the Vault's, not the backend's
	// layout).
	Format byte
	// MasterCheck is a value sealed under the master key, so a wrong key
	// fails at Open; MasterID the key's non-secret identifier.
	MasterCheck []byte
	MasterID    string
}

// RegionState is a region as the backend keeps it.
type RegionState struct {
	Code string
	// ID identifies this instance of the region; it changes when the
	// region is deleted and created again.
	ID []byte
	// KeyVersion is the version of the region's keys (1 on first
	// creation, one more each time it is created again).
	KeyVersion uint32
	// KeyEntry is the region's keys wrapped under the master key.
	KeyEntry []byte
	// Active holds the region's records; Overlay, when not 0, committed
	// changes being merged into them.
	Active, Overlay Generation
	// Records is the number of records lookups see.
	Records int64
	// Serial increases with every change of the region's records
	// (Promote, Update), so an import can check at Promote that nothing
	// changed since it read the records it replaces.
	Serial uint64
}

// RunKind tells StageRun which key space a run belongs to.
type RunKind uint8

// Run kinds.
const (
	// RunRecords holds the records to publish: key = record key, value
	// = sealed record, or nil to remove the key (changes).
	RunRecords RunKind = 1
	// RunUnique holds keys that must be unique within the import (a
	// keyed hash of the resident number); values are small tags reported
	// in conflicts, never published.
	RunUnique RunKind = 2
)

// Staged is one item of a staging run.
type Staged struct {
	Key []byte
	// Value is the value to publish; nil (RunRecords) removes the key.
	Value []byte
	// Ref is the caller's reference for the item (the ledger row),
	// reported back in conflicts.
	Ref uint64
}

// Finish tunes FinishStaging.
type Finish struct {
	// Build builds the generation when there is no conflict; without it
	// FinishStaging only checks.
	Build bool
	// MaxConflicts caps the conflicts listed (0: 100).
	MaxConflicts int
	// Progress, if set, is called now and then with the items ordered so
	// far and the total.
	Progress func(done, total int64)
	// Now refreshes the staging heartbeat while building.
	Now func() time.Time
	// Base is the generation the build is joined with (0: none).
	Base Generation
	// Carry, if set, is called while building for each staged value whose
	// key Base holds, with the base's value; what it returns is stored
	// instead (it may return value itself). An error stops the build.
	Carry func(it Staged, base []byte) ([]byte, error)
}

// Conflict is two staged items of one run kind with the same key.
type Conflict struct {
	Kind RunKind
	// FirstRef and FirstValue are the earlier item's (the smaller Ref),
	// Ref and Value the later one's. Values of RunRecords conflicts are
	// not returned.
	FirstRef, Ref     uint64
	FirstValue, Value []byte
}

// StagingResult is what FinishStaging found.
type StagingResult struct {
	// Records counts the RunRecords items with a value, Removals those
	// without.
	Records, Removals int64
	// Against Finish.Base, when building: Added and Replaced count the
	// values whose key Base lacks and holds; Removed and Absent the
	// removals whose key it holds and lacks.
	Added, Replaced, Removed, Absent int64
	Conflicts                        []Conflict
	// MoreConflicts counts conflicts beyond Finish.MaxConflicts.
	MoreConflicts int
}

// Promotion publishes a built staging generation.
type Promotion struct {
	Code string
	Gen  Generation
	// Overlay layers Gen over the active generation (a changes file; the
	// region must have no overlay). Otherwise Gen replaces the active
	// generation and any overlay, which are retired.
	Overlay bool
	// ExpectID and ExpectSerial are the region the import started from;
	// a different one fails with ErrNoRegion (other id) or ErrConflict
	// (other serial). A nil ExpectID means the region must not exist:
	// Create is then stored, with Active = Gen, and its KeyVersion must be
	// one more than LastKeyVersion (else ErrConflict).
	ExpectID     []byte
	ExpectSerial uint64
	Create       *RegionState
	// Records is the number of records visible after the promotion.
	Records int64
	Log     Operation
}

// RecordUpdate replaces one record (see Backend.Update).
type RecordUpdate struct {
	Code     string
	ID       []byte
	Key      []byte
	Old, New []byte
	Log      Operation
}

// Rewrapping is a master key rotation (see Backend.Rewrap). In one
// transaction the backend calls Check with the stored metadata (an error
// aborts), replaces every region's key entry with Rewrap's result, stores
// Meta and appends Log.
type Rewrapping struct {
	Check  func(Meta) error
	Rewrap func(code string, keyEntry []byte) ([]byte, error)
	Meta   Meta
	Log    Operation
}
