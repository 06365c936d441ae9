package records

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/pkg/lgcode"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

// ImportMode says what an import file is.
type ImportMode string

// Import modes.
const (
	// ModeFull: the entries are the municipality's whole ledger. After
	// the import the region holds exactly these persons: the others are
	// removed. Removals (ImportJob.Remove) are refused.
	ModeFull ImportMode = "full"
	// ModeChanges: the entries are the persons added or changed since the
	// last import, and ImportJob.Remove names the persons removed; everyone
	// else is left as is. The region must exist (import the full ledger
	// first).
	ModeChanges ImportMode = "changes"
)

// ParseImportMode reads "full" or "changes".
func ParseImportMode(s string) (ImportMode, error) {
	switch m := ImportMode(s); m {
	case ModeFull, ModeChanges:
		return m, nil
	}
	return "", fmt.Errorf("records: import mode must be %q or %q", ModeFull, ModeChanges)
}

// Defaults of ImportOptions.
const (
	// DefaultRunBytes bounds the sealed records an import holds in memory
	// before handing them, sorted, to the backend.
	DefaultRunBytes = 16 << 20
	// DefaultProgressInterval is how often OnProgress is called at most.
	DefaultProgressInterval = time.Second
	// lookupBatch is how many persons an import looks up at once (their
	// current records: counts and the flags operators set).
	lookupBatch = 512
)

// ImportOptions tunes an import.
type ImportOptions struct {
	// Operator is the individual ID of the person importing, recorded in
	// the operations log. Required.
	Operator string
	// Mode is ModeFull or ModeChanges. Required: a changes file imported
	// as a full ledger would remove everyone not in it.
	Mode ImportMode
	// OnProgress, if set, is called from the importing goroutine with the
	// job's progress, at most every ProgressInterval and at each phase
	// change. It must return quickly. Progress can also be polled with
	// ImportJob.Progress from any goroutine.
	OnProgress       func(Progress)
	ProgressInterval time.Duration
	// RunBytes overrides DefaultRunBytes (mostly for tests, which use
	// small runs to exercise the merge).
	RunBytes int
}

// ImportResult says what an import did; it carries counts only.
type ImportResult struct {
	Municipality string
	Mode         ImportMode
	// Persons is the number of records written: Added new ones plus
	// Replaced existing ones.
	Persons, Added, Replaced int
	// Removed is the number of records removed: by a full import, the
	// persons no longer in the ledger; by a changes import, the removals
	// that named a record. Absent counts the removals that named none.
	Removed, Absent int
	// Doses is the number of doses across the written records.
	Doses int
	// RegionCreated is true when this import created the region.
	RegionCreated bool
	KeyVersion    uint32
	// Seq is the import's entry in the operations log.
	Seq uint64
}

// ProblemKind classifies an EntryProblem.
type ProblemKind uint8

// Problem kinds.
const (
	// ProblemInvalid: the entry, combined with what is on record (an
	// operator's flag), is not a valid record; Problem says which field.
	ProblemInvalid ProblemKind = 1 + iota
	// ProblemSamePerson: the entry's person was already staged by entry
	// FirstRef (or removed by it).
	ProblemSamePerson
	// ProblemSameResidentNumber: the entry's resident number belongs to
	// another person, staged by entry FirstRef.
	ProblemSameResidentNumber
)

// EntryProblem is one reason an import was rejected, naming entries by the
// reference the caller gave (Add's ref: the ledger row).
type EntryProblem struct {
	Kind          ProblemKind
	Ref, FirstRef uint64
	Problem       Problem
}

func (p EntryProblem) String() string {
	switch p.Kind {
	case ProblemSamePerson:
		return fmt.Sprintf("entry %d: the same person as entry %d", p.Ref, p.FirstRef)
	case ProblemSameResidentNumber:
		return fmt.Sprintf("entry %d: the resident number of another person (entry %d)", p.Ref, p.FirstRef)
	}
	return fmt.Sprintf("entry %d: %s", p.Ref, p.Problem.Error())
}

// RejectedError lists why an import was rejected. Nothing became visible.
type RejectedError struct {
	Problems []EntryProblem
	// Omitted counts problems not listed.
	Omitted int
}

func (e *RejectedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "records: import rejected (%d problems); nothing was imported", len(e.Problems)+e.Omitted)
	for i, p := range e.Problems {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)+e.Omitted-5)
			break
		}
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrImportRejected) true.
func (e *RejectedError) Unwrap() error { return ErrImportRejected }

// ImportJob is one import into one region, staged in bounded memory beside
// live lookups and published all at once. Add (and Remove, for changes)
// each person, then Commit; or Abort. Until Commit publishes it nothing of
// the import is visible, and a failed or aborted import leaves the
// region's records as they were. Add, Remove, Check, Commit and Abort are
// called from one goroutine; Progress from any.
type ImportJob struct {
	v    *Vault
	code string
	opts ImportOptions
	mode ImportMode

	keys     *regionKeys
	region   *RegionState // the region the import started from; nil: creating it
	keyEntry []byte       // creating: the new region's wrapped keys
	gen      Generation

	mac      hash.Hash
	pending  []pendingEntry
	records  run
	unique   run
	plain    []byte // scratch: a record's encoding
	ad       []byte // scratch: associated data
	problems []EntryProblem
	omitted  int
	failed   error // the first error of Add or Remove; the job can only abort
	closed   bool

	res      ImportResult
	removals int

	mu        sync.Mutex
	progress  Progress
	lastEmit  time.Time
	interval  time.Duration
	runBytes  int
	maxErrors int
}

type pendingEntry struct {
	key    []byte
	rec    Record
	remove bool
	ref    uint64
}

// run is a run of staged items being collected: their bytes in one arena.
type run struct {
	arena []byte
	items []Staged
}

func (r *run) add(key, value []byte, remove bool, ref uint64) {
	start := len(r.arena)
	r.arena = append(r.arena, key...)
	k := r.arena[start:len(r.arena):len(r.arena)]
	var val []byte
	if !remove {
		vs := len(r.arena)
		r.arena = append(r.arena, value...)
		val = r.arena[vs:len(r.arena):len(r.arena)]
	}
	r.items = append(r.items, Staged{Key: k, Value: val, Ref: ref})
}

// BeginImport starts an import into a municipality's region. It first
// finishes what earlier operations left (an unmerged changes file, space
// to free). Only one import per municipality runs at a time in a Vault
// (ErrImportRunning); another process's import is caught at Commit
// (ErrConflict).
func (v *Vault) BeginImport(ctx context.Context, code string, opts ImportOptions) (*ImportJob, error) {
	if err := lgcode.Validate(code); err != nil {
		return nil, fmt.Errorf("records: municipality code: %w", err)
	}
	if err := checkOperator(opts.Operator); err != nil {
		return nil, err
	}
	if opts.Mode != ModeFull && opts.Mode != ModeChanges {
		return nil, fmt.Errorf("records: name the import mode: %q (the whole ledger) or %q (added, changed and removed persons)", ModeFull, ModeChanges)
	}
	v.mu.Lock()
	if v.importing[code] {
		v.mu.Unlock()
		return nil, fmt.Errorf("%w: municipality %s", ErrImportRunning, code)
	}
	v.importing[code] = true
	v.mu.Unlock()
	j := &ImportJob{v: v, code: code, opts: opts, mode: opts.Mode, interval: opts.ProgressInterval, runBytes: opts.RunBytes, maxErrors: 100}
	if j.interval <= 0 {
		j.interval = DefaultProgressInterval
	}
	if j.runBytes <= 0 {
		j.runBytes = DefaultRunBytes
	}
	now := v.now()
	j.progress = Progress{Municipality: code, Mode: opts.Mode, Phase: PhasePreparing, Started: now, PhaseStarted: now}
	j.res = ImportResult{Municipality: code, Mode: opts.Mode}
	if err := j.begin(ctx); err != nil {
		j.release()
		return nil, err
	}
	j.setPhase(PhaseStaging)
	return j, nil
}

func (j *ImportJob) begin(ctx context.Context) error {
	v := j.v
	if err := v.Maintain(ctx); err != nil {
		// Leftovers only cost space; the import can go on.
		v.log.Warn("records: maintenance before an import failed; it is retried later", "municipality", j.code, "err", err)
	}
	st, err := v.b.Region(ctx, j.code)
	switch {
	case err == nil:
		r, err := v.Region(ctx, j.code)
		if err != nil {
			return err
		}
		if !bytes.Equal(r.id, st.ID) {
			r.deleted.Store(true)
			v.evict(r)
			if r, err = v.Region(ctx, j.code); err != nil {
				return err
			}
		}
		if st.Overlay != 0 {
			// Maintain skipped it or failed: the changes are committed, so
			// fold them in before layering anything new.
			if _, err := v.b.Merge(ctx, j.code, st.ID); err != nil {
				return fmt.Errorf("records: merging the previous changes of municipality %s: %w", j.code, err)
			}
			if st, err = v.b.Region(ctx, j.code); err != nil {
				return err
			}
		}
		j.keys, j.region = r.keys, &st
		j.res.KeyVersion = r.keys.version
	case isNoRegion(err):
		if j.mode == ModeChanges {
			return fmt.Errorf("%w: municipality %s; a changes file applies to imported records: import the full ledger first", ErrNoRegion, j.code)
		}
		last, err := v.b.LastKeyVersion(ctx, j.code)
		if err != nil {
			return err
		}
		// The keys are made now but stored only by Promote: a failed
		// import leaves no region behind.
		keys, entry, err := newRegionKeys(v.master, j.code, last+1, v.now())
		if err != nil {
			return err
		}
		j.keys, j.keyEntry = keys, entry
		j.res.RegionCreated, j.res.KeyVersion = true, keys.version
	default:
		return err
	}
	j.gen, err = v.b.BeginStaging(ctx, j.code, v.now())
	if err != nil {
		return err
	}
	j.mac = j.keys.newMAC()
	// The buffers of the runs, allocated once: about 50,000 persons of
	// three doses fill the default 16 MiB.
	j.records = run{arena: make([]byte, 0, j.runBytes), items: make([]Staged, 0, j.runBytes/128)}
	j.unique = run{arena: make([]byte, 0, j.runBytes/8), items: make([]Staged, 0, j.runBytes/128)}
	return nil
}

func (j *ImportJob) usable() error {
	switch {
	case j.closed:
		return ErrImportClosed
	case j.failed != nil:
		return fmt.Errorf("records: the import failed earlier and can only be aborted: %w", j.failed)
	}
	return nil
}

func (j *ImportJob) fail(err error) error {
	if j.failed == nil {
		j.failed = err
	}
	return err
}

// Add stages one person's record. ref names the entry in problems (the
// ledger row of the person's first dose). The record is validated here;
// whether the person or their resident number appears twice is known at
// Commit. An error stops the job: it can only be aborted.
func (j *ImportJob) Add(ctx context.Context, e Entry, ref uint64) error {
	if err := j.usable(); err != nil {
		return err
	}
	if err := mynumber.Validate(e.MyNumber); err != nil {
		return j.fail(fmt.Errorf("%w: entry %d: %w", ErrBadMyNumber, ref, err))
	}
	rec := e.Record
	if rec.Municipality == "" {
		rec.Municipality = j.code
	}
	if rec.Municipality != j.code {
		return j.fail(fmt.Errorf("%w: entry %d: municipality differs from the region imported into", ErrInvalidRecord, ref))
	}
	if err := rec.Validate(); err != nil {
		return j.fail(fmt.Errorf("entry %d: %w", ref, err))
	}
	return j.queue(ctx, pendingEntry{rec: rec, ref: ref}, e.MyNumber)
}

// Remove stages the removal of a person's record (ModeChanges only). A
// removal naming nobody on record is counted as Absent, not an error.
func (j *ImportJob) Remove(ctx context.Context, myNumber string, ref uint64) error {
	if err := j.usable(); err != nil {
		return err
	}
	if j.mode != ModeChanges {
		return j.fail(fmt.Errorf("records: entry %d: a full import cannot remove persons (persons not in the ledger are removed); use mode %q", ref, ModeChanges))
	}
	if err := mynumber.Validate(myNumber); err != nil {
		return j.fail(fmt.Errorf("%w: entry %d: %w", ErrBadMyNumber, ref, err))
	}
	return j.queue(ctx, pendingEntry{remove: true, ref: ref}, myNumber)
}

func (j *ImportJob) queue(ctx context.Context, p pendingEntry, myNumber string) error {
	j.mac.Reset()
	j.mac.Write([]byte(myNumber))
	p.key = j.mac.Sum(nil)
	j.pending = append(j.pending, p)
	if len(j.pending) >= lookupBatch {
		if err := j.flushPending(ctx); err != nil {
			return j.fail(err)
		}
	}
	return nil
}

// SetInput reports the position in the input for Progress: rows read,
// bytes read and the input's size (0 if unknown).
func (j *ImportJob) SetInput(rows, bytes, totalBytes int64) {
	j.mu.Lock()
	j.progress.Rows, j.progress.Bytes, j.progress.TotalBytes = rows, bytes, totalBytes
	j.mu.Unlock()
	j.emit(false)
}

// flushPending seals the pending persons' records and adds them to the
// runs. Whether each person is new, replaced or removed, and the flags an
// operator set on the record replaced, are settled at Commit, when the
// staged records meet the region's in key order (see carry).
func (j *ImportJob) flushPending(ctx context.Context) error {
	if len(j.pending) == 0 {
		return nil
	}
	doses, persons := 0, 0
	for i := range j.pending {
		p := &j.pending[i]
		if p.remove {
			j.removals++
			if err := j.room(ctx, len(p.key)); err != nil {
				return err
			}
			j.records.add(p.key, nil, true, p.ref)
			continue
		}
		j.plain = appendRecord(j.plain[:0], &p.rec)
		if err := j.room(ctx, len(p.key)+len(j.plain)+64); err != nil {
			return err
		}
		start := len(j.records.arena)
		j.records.arena = append(j.records.arena, p.key...)
		var err error
		j.records.arena, j.ad, err = j.keys.appendSealed(j.records.arena, p.key, j.plain, j.ad)
		if err != nil {
			return err
		}
		a := j.records.arena
		j.records.items = append(j.records.items, Staged{Key: a[start : start+32 : start+32], Value: a[start+32 : len(a) : len(a)], Ref: p.ref})
		// The unique run's value tags the person, so a person staged
		// twice is reported once (as the same person), not also as a
		// resident number reused.
		us := len(j.unique.arena)
		j.unique.arena = residentKey(j.mac, j.unique.arena, p.rec.ResidentNumber)
		j.unique.arena = append(j.unique.arena, p.key[:8]...)
		u := j.unique.arena
		j.unique.items = append(j.unique.items, Staged{Key: u[us : us+16 : us+16], Value: u[us+16 : len(u) : len(u)], Ref: p.ref})
		doses += len(p.rec.Doses)
		persons++
		clear(j.plain)
	}
	j.res.Doses += doses
	clear(j.pending)
	j.pending = j.pending[:0]
	j.mu.Lock()
	j.progress.Persons += int64(persons)
	j.progress.Doses += int64(doses)
	j.mu.Unlock()
	j.emit(false)
	return nil
}

// carry is called by the build for each staged record that replaces one
// on record: an import replaces the ledger's flags but keeps the flags an
// operator set (Vault.SetFlag), so those are copied into the new record.
// Only the flags of the old record are decoded; most records have none
// set by an operator and are stored as staged.
func (j *ImportJob) carry(it Staged, base []byte) ([]byte, error) {
	old, err := j.keys.openFlags(it.Key, base)
	if err != nil {
		return nil, err
	}
	if old.ByOperator == 0 {
		return it.Value, nil
	}
	rec, err := j.keys.openRecord(it.Key, it.Value)
	if err != nil {
		return nil, err
	}
	rec.Flags.keepOperatorFlags(old)
	if ps := rec.Problems(); len(ps) > 0 {
		// The ledger's record is valid on its own (Add checked it), so the
		// operator's flag is what disagrees with it. The build goes on so
		// that every such record is reported; nothing is published.
		j.problem(EntryProblem{Kind: ProblemInvalid, Ref: it.Ref, Problem: Problem{ps[0].Field, ps[0].Why + " (with the flag an operator set on this record; clear it, or correct the ledger)"}})
		return it.Value, nil
	}
	j.plain = appendRecord(j.plain[:0], &rec)
	defer clear(j.plain)
	return j.keys.sealRecord(it.Key, j.plain)
}

// room hands the runs to the backend if the next item (need bytes) would
// not fit: the items point into the arenas, so letting an arena grow would
// keep both copies alive, and the runs' memory would double.
func (j *ImportJob) room(ctx context.Context, need int) error {
	if len(j.records.arena)+need <= cap(j.records.arena) && len(j.unique.arena)+64 <= cap(j.unique.arena) &&
		len(j.records.items) < cap(j.records.items) && len(j.unique.items) < cap(j.unique.items) {
		return nil
	}
	return j.flushRuns(ctx)
}

// flushRuns sorts the collected runs and hands them to the backend.
func (j *ImportJob) flushRuns(ctx context.Context) error {
	now := j.v.now()
	for _, r := range []struct {
		kind RunKind
		run  *run
	}{{RunRecords, &j.records}, {RunUnique, &j.unique}} {
		if len(r.run.items) == 0 {
			continue
		}
		slices.SortFunc(r.run.items, func(a, b Staged) int {
			if c := bytes.Compare(a.Key, b.Key); c != 0 {
				return c
			}
			return cmp.Compare(a.Ref, b.Ref)
		})
		if err := j.v.b.StageRun(ctx, j.gen, r.kind, r.run.items, now); err != nil {
			return err
		}
		// The arena held sealed records only, but clear it anyway.
		clear(r.run.arena)
		r.run.arena = r.run.arena[:0]
		clear(r.run.items)
		r.run.items = r.run.items[:0]
	}
	return nil
}

func (j *ImportJob) problem(p EntryProblem) {
	if len(j.problems) < j.maxErrors {
		j.problems = append(j.problems, p)
	} else {
		j.omitted++
	}
}

// finish stages what is left and orders the staging area, building the
// generation if build is set. It returns the problems found.
func (j *ImportJob) finish(ctx context.Context, build bool) (StagingResult, error) {
	if err := j.flushPending(ctx); err != nil {
		return StagingResult{}, err
	}
	if err := j.flushRuns(ctx); err != nil {
		return StagingResult{}, err
	}
	j.records, j.unique = run{}, run{} // free the buffers while ordering
	j.setPhase(PhaseOrdering)
	f := Finish{
		Build:        build && len(j.problems) == 0,
		MaxConflicts: j.maxErrors,
		Now:          j.v.now,
		Progress: func(done, total int64) {
			j.mu.Lock()
			j.progress.Ordered, j.progress.ToOrder = done, total
			j.mu.Unlock()
			j.emit(false)
		},
	}
	if j.region != nil {
		f.Base, f.Carry = j.region.Active, j.carry
	}
	sr, err := j.v.b.FinishStaging(ctx, j.gen, f)
	if err != nil {
		return sr, err
	}
	for _, c := range sr.Conflicts {
		switch c.Kind {
		case RunRecords:
			j.problem(EntryProblem{Kind: ProblemSamePerson, Ref: c.Ref, FirstRef: c.FirstRef})
		case RunUnique:
			if !bytes.Equal(c.FirstValue, c.Value) {
				j.problem(EntryProblem{Kind: ProblemSameResidentNumber, Ref: c.Ref, FirstRef: c.FirstRef})
			}
		}
	}
	j.omitted += sr.MoreConflicts
	slices.SortStableFunc(j.problems, func(a, b EntryProblem) int {
		switch {
		case a.Ref < b.Ref:
			return -1
		case a.Ref > b.Ref:
			return 1
		}
		return 0
	})
	return sr, nil
}

// Check finishes staging without publishing and returns the problems
// found among the entries staged (a person or resident number twice), so
// a caller that already knows the import must fail (bad rows) can report
// everything at once. The job can only be aborted afterwards.
func (j *ImportJob) Check(ctx context.Context) ([]EntryProblem, int, error) {
	if err := j.usable(); err != nil {
		return nil, 0, err
	}
	_, err := j.finish(ctx, false)
	j.fail(errors.New("records: checked only"))
	return j.problems, j.omitted, err
}

// Commit finishes staging, checks the entries against each other, and
// publishes the import in one small transaction: a full import replaces
// the region's records, a changes import is layered over them and then
// merged in batches. On any problem it returns a *RejectedError (or the
// failure) and aborts: the region is unchanged. Space taken by replaced
// records is freed afterwards.
func (j *ImportJob) Commit(ctx context.Context) (ImportResult, error) {
	if err := j.usable(); err != nil {
		return ImportResult{Municipality: j.code}, err
	}
	res, err := j.commit(ctx)
	if err != nil {
		j.Abort(ctx)
		j.setFailed(err)
		return ImportResult{Municipality: j.code, Mode: j.mode}, err
	}
	return res, nil
}

func (j *ImportJob) commit(ctx context.Context) (ImportResult, error) {
	sr, err := j.finish(ctx, true)
	if err != nil {
		return ImportResult{}, err
	}
	if len(j.problems) > 0 || j.omitted > 0 {
		return ImportResult{}, &RejectedError{Problems: j.problems, Omitted: j.omitted}
	}
	if sr.Records+sr.Removals == 0 {
		return ImportResult{}, fmt.Errorf("%w: nothing to import", ErrInvalidRecord)
	}
	if err := ctx.Err(); err != nil {
		return ImportResult{}, err
	}
	res := j.res
	res.Added, res.Replaced, res.Absent = int(sr.Added), int(sr.Replaced), int(sr.Absent)
	if j.region == nil {
		res.Added = int(sr.Records)
	}
	res.Persons = res.Added + res.Replaced
	var visible int64
	switch {
	case j.mode == ModeFull && j.region != nil:
		res.Removed = int(j.region.Records) - res.Replaced
		visible = sr.Records
	case j.mode == ModeFull:
		visible = sr.Records
	default:
		res.Removed = int(sr.Removed)
		visible = j.region.Records + int64(res.Added) - int64(res.Removed)
	}
	j.setPhase(PhasePublishing)
	op := Operation{Kind: OpImport, Mode: j.mode, Municipality: j.code, At: j.v.now(), Records: res.Persons, Doses: res.Doses,
		Added: res.Added, Replaced: res.Replaced, Removed: res.Removed, Operator: j.opts.Operator, KeyVersion: j.keys.version}
	op.normalise()
	p := Promotion{Code: j.code, Gen: j.gen, Overlay: j.mode == ModeChanges, Records: visible, Log: op}
	if j.region != nil {
		p.ExpectID, p.ExpectSerial = j.region.ID, j.region.Serial
	} else {
		p.Create = &RegionState{Code: j.code, ID: j.keys.identity(), KeyVersion: j.keys.version, KeyEntry: j.keyEntry}
	}
	op, err = j.v.b.Promote(ctx, p)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			err = fmt.Errorf("%w: municipality %s was imported into, or a record changed, while this import ran; nothing was imported: run it again (%w)", ErrConflict, j.code, err)
		}
		return ImportResult{}, err
	}
	res.Seq = op.Seq
	j.closed = true
	if j.region == nil {
		// Cache the new region's handle: the keys are already unwrapped.
		r := newRegion(j.v, j.keys)
		j.v.mu.Lock()
		if c := j.v.regions[j.code]; c == nil || c.deleted.Load() {
			j.v.regions[j.code] = r
		}
		j.v.mu.Unlock()
	}
	j.release()
	if j.mode == ModeChanges {
		// Published already; folding the overlay in only makes lookups
		// read one generation again. A failure is retried by Maintain.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Hour)
		_, err := j.v.b.Merge(mctx, j.code, j.keys.identity())
		cancel()
		if err != nil {
			j.v.log.Warn("records: merging a committed changes import failed; lookups see it, the merge is retried", "municipality", j.code, "err", err)
		}
	}
	j.v.cleanup(ctx, "import", j.code)
	j.mu.Lock()
	j.progress.Result = &res
	j.mu.Unlock()
	j.setPhase(PhaseDone)
	return res, nil
}

// Abort drops what the job staged and ends it; the region is unchanged.
// Aborting a committed or aborted job does nothing. It works with an
// already cancelled ctx (the usual reason to abort).
func (j *ImportJob) Abort(ctx context.Context) {
	if j.closed {
		return
	}
	j.closed = true
	j.release()
	j.pending, j.records, j.unique = nil, run{}, run{}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	if err := j.v.b.Drop(dctx, j.gen); err != nil {
		// Left as staging, it is collected once its heartbeat is stale.
		j.v.log.Warn("records: dropping an aborted import's staging failed; it is collected later", "municipality", j.code, "err", err)
	}
	j.mu.Lock()
	if j.progress.Phase != PhaseFailed {
		j.progress.Phase = PhaseAborted
	}
	j.mu.Unlock()
	j.emit(true)
}

func (j *ImportJob) release() {
	j.v.mu.Lock()
	delete(j.v.importing, j.code)
	j.v.mu.Unlock()
}

// Import stages entries and commits them: BeginImport, Add each entry
// (numbered from 1 in problems), Commit. Either all are imported or none.
func (v *Vault) Import(ctx context.Context, code string, entries []Entry, opts ImportOptions) (ImportResult, error) {
	if len(entries) == 0 {
		return ImportResult{Municipality: code, Mode: opts.Mode}, fmt.Errorf("%w: nothing to import", ErrInvalidRecord)
	}
	j, err := v.BeginImport(ctx, code, opts)
	if err != nil {
		return ImportResult{Municipality: code, Mode: opts.Mode}, err
	}
	for i, e := range entries {
		if err := j.Add(ctx, e, uint64(i+1)); err != nil {
			j.Abort(ctx)
			return ImportResult{Municipality: code, Mode: opts.Mode}, err
		}
	}
	return j.Commit(ctx)
}
