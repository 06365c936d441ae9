package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/backend"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
	"github.com/kioskcert/kioskcert/center/internal/records/progress"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// Import jobs: a ledger import as the running center carries it out. An
// operator starts a job for a municipality (StartImport), sends the file
// (UploadImport, which streams it into the import and returns when the
// import has ended), and anyone may watch its progress (ImportJobs,
// ImportJobStatus) or cancel it (CancelImport) meanwhile. One job per
// municipality runs at a time. The jobs live in this instance's memory:
// the last MaxFinishedImports finished ones are kept for the views; an
// instance that restarts forgets them (the audit log keeps every start and
// end).

// ImportState is where an import job stands.
type ImportState string

// Import job states.
const (
	// ImportWaiting: started, waiting for its file.
	ImportWaiting ImportState = "waiting"
	// ImportRunning: reading, staging, ordering or publishing (Progress
	// says which).
	ImportRunning   ImportState = "running"
	ImportDone      ImportState = "done"
	ImportFailed    ImportState = "failed"
	ImportCancelled ImportState = "cancelled"
)

// Finished reports whether the job has ended.
func (s ImportState) Finished() bool {
	return s == ImportDone || s == ImportFailed || s == ImportCancelled
}

// Limits of the job registry.
const (
	// MaxFinishedImports is how many finished jobs are kept for the views.
	MaxFinishedImports = 50
	// ImportFileWait is how long a started job waits for its file before
	// it is cancelled (it holds its municipality's import slot meanwhile).
	ImportFileWait = 15 * time.Minute
)

// Import job errors.
var (
	// ErrImportRunning: the municipality has an import job waiting or
	// running already; wait for it or cancel it.
	ErrImportRunning = fmt.Errorf("admin: %w", records.ErrImportRunning)
	// ErrImportCancelled: the job was cancelled; nothing was imported.
	ErrImportCancelled = errors.New("admin: the import was cancelled")
	// ErrImportState: the job is not in a state that allows this (a file
	// for a job already running or ended, cancelling an ended job).
	ErrImportState = errors.New("admin: the import job is not in a state that allows this")
	// ErrImportElsewhere: the job is another instance's; jobs live on the
	// instance that started them.
	ErrImportElsewhere = errors.New("admin: the import job runs on another center instance")
)

// ImportStart is what StartImport needs.
type ImportStart struct {
	Municipality string `json:"municipality"`
	ImportOptions
	// Size is the file's size in bytes, for the estimate of the time left
	// (0: unknown).
	Size int64 `json:"size,omitempty"`
}

// ImportJob is a snapshot of an import job: counts, times and codes only,
// never a row's content.
type ImportJob struct {
	ID           string             `json:"id"`
	Municipality string             `json:"municipality"`
	Mode         records.ImportMode `json:"mode"`
	Encoding     string             `json:"encoding"`
	// Operator started the job.
	Operator string      `json:"operator"`
	State    ImportState `json:"state"`
	Created  time.Time   `json:"created"`
	Ended    time.Time   `json:"ended,omitzero"`
	// Progress is the import's own, once the file arrives: phase, rows
	// read, bytes of TotalBytes, persons and doses staged, elapsed time.
	Progress *records.Progress `json:"progress,omitempty"`
	// RowsPerSecond and SecondsLeft repeat Progress's rate and estimate of
	// the current phase's time left for clients that do not compute them
	// (SecondsLeft is -1 when there is no basis for an estimate yet).
	RowsPerSecond float64 `json:"rowsPerSecond"`
	SecondsLeft   float64 `json:"secondsLeft"`
	// Result is set when State is done.
	Result *records.ImportResult `json:"result,omitempty"`
	// Error is why a failed job imported nothing; Problems lists a
	// rejected file's problems by row and column (never values).
	Error    string               `json:"error,omitempty"`
	Problems []ledgercsv.RowError `json:"problems,omitempty"`
	Omitted  int                  `json:"omitted,omitempty"`
}

// Status is the job in the form the progress renderer draws.
func (j ImportJob) Status() progress.Status {
	if j.Progress == nil || j.Progress.Phase == "" {
		return progress.Status{Label: j.Municipality + " " + string(j.State), Finished: j.State.Finished(),
			Elapsed: time.Since(j.Created).Round(time.Second)}
	}
	s := j.Progress.Status()
	if j.State.Finished() {
		s.Finished = true
		if j.State != ImportDone {
			s.Label = j.Municipality + " " + string(j.State)
		}
	}
	return s
}

// importJob is a job and its running import.
type importJob struct {
	ImportJob
	run       backend.RunningImport
	cancel    context.CancelFunc
	cancelled bool          // CancelImport asked
	failure   error         // why a failed job failed
	source    string        // where the starter called from
	ended     chan struct{} // closed when the job has ended
}

func (j *importJob) snapshot() ImportJob {
	out := j.ImportJob
	out.SecondsLeft = -1
	if j.run != nil {
		p := j.run.Progress()
		out.Progress = &p
		out.RowsPerSecond = p.Rate()
		if d, ok := p.Remaining(); ok {
			out.SecondsLeft = d.Seconds()
		}
	}
	return out
}

// importJobs is a Service's registry of jobs.
type importJobs struct {
	mu   sync.Mutex
	jobs []*importJob // in creation order
}

// newImportID names a job and the instance that runs it ("imp-" and 16
// hex digits, then "." and the instance ID), so that another instance
// behind the same load balancer can say where the job is.
func newImportID(instance string) string {
	var b [8]byte
	rand.Read(b[:])
	id := "imp-" + hex.EncodeToString(b[:])
	if instance != "" {
		id += "." + instance
	}
	return id
}

// sweep cancels jobs that waited too long for their file and forgets the
// oldest finished ones. s.imports.mu is held.
func (s *Service) sweepLocked(now time.Time) []*importJob {
	var expired []*importJob
	finished := 0
	for _, j := range s.imports.jobs {
		if j.State == ImportWaiting && now.Sub(j.Created) > ImportFileWait {
			j.State, j.Ended, j.Error = ImportCancelled, now, "no file arrived within "+ImportFileWait.String()
			close(j.ended)
			expired = append(expired, j)
		}
		if j.State.Finished() {
			finished++
		}
	}
	for i := 0; finished > MaxFinishedImports && i < len(s.imports.jobs); {
		if s.imports.jobs[i].State.Finished() {
			s.imports.jobs = slices.Delete(s.imports.jobs, i, i+1)
			finished--
			continue
		}
		i++
	}
	return expired
}

// StartImport starts an import job for a municipality; its file follows
// with UploadImport. A municipality with a job waiting or running answers
// ErrImportRunning.
func (s *Service) StartImport(ctx context.Context, a Actor, in ImportStart) (ImportJob, error) {
	if err := checkActor(a); err != nil {
		return ImportJob{}, err
	}
	if err := lgcode.Validate(in.Municipality); err != nil {
		return ImportJob{}, fmt.Errorf("%w: municipality: %w", store.ErrInvalid, err)
	}
	if in.Mode == "" {
		in.Mode = records.ModeFull
	}
	if _, err := records.ParseImportMode(string(in.Mode)); err != nil {
		return ImportJob{}, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	if in.Encoding == "" {
		in.Encoding = "auto"
	}
	if _, err := ledgercsv.ParseEncoding(in.Encoding); err != nil {
		return ImportJob{}, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	if in.Size < 0 {
		return ImportJob{}, fmt.Errorf("%w: size must not be negative", store.ErrInvalid)
	}
	now := s.cfg.Now()
	s.imports.mu.Lock()
	expired := s.sweepLocked(now)
	for _, j := range s.imports.jobs {
		if j.Municipality == in.Municipality && !j.State.Finished() {
			s.imports.mu.Unlock()
			s.auditEnded(expired)
			return ImportJob{}, fmt.Errorf("%w: job %s (%s) for municipality %s; wait for it to end or cancel it (records import-cancel)", ErrImportRunning, j.ID, j.State, in.Municipality)
		}
	}
	j := &importJob{ImportJob: ImportJob{ID: newImportID(s.instance()), Municipality: in.Municipality, Mode: in.Mode, Encoding: in.Encoding,
		Operator: a.Operator, State: ImportWaiting, Created: now}, source: a.Source, ended: make(chan struct{})}
	// The size travels with the job until the file arrives.
	j.Progress = &records.Progress{Municipality: in.Municipality, Mode: in.Mode, TotalBytes: in.Size}
	s.imports.jobs = append(s.imports.jobs, j)
	out := j.snapshot()
	s.imports.mu.Unlock()
	s.auditEnded(expired)
	if err := s.audit(ctx, a, store.Event{Type: store.EventRecordsImportStarted, Municipality: in.Municipality, Object: j.ID, Result: string(in.Mode)}); err != nil {
		s.imports.mu.Lock()
		j.State, j.Ended, j.Error = ImportFailed, now, "the start could not be audited"
		close(j.ended)
		s.imports.mu.Unlock()
		return ImportJob{}, err
	}
	return out, nil
}

func (s *Service) job(id string) (*importJob, error) {
	for _, j := range s.imports.jobs {
		if j.ID == id {
			return j, nil
		}
	}
	if _, other, ok := strings.Cut(id, "."); ok && other != "" && other != s.instance() {
		return nil, fmt.Errorf("%w: import job %s is on instance %s; ask that instance's operations address (the jobs of an instance are its own)", ErrImportElsewhere, id, other)
	}
	return nil, fmt.Errorf("%w: import job %s (finished jobs are kept for a while only; the audit log has every import)", store.ErrNotFound, id)
}

// instance is this center instance's ID, which import job IDs carry.
func (s *Service) instance() string {
	if s.cfg.Center == nil {
		return ""
	}
	return s.cfg.Center.Instance()
}

// UploadImport streams a started job's file into its import and returns
// when the import has ended (or ctx is done first: the import goes on if
// the file was read in full). On failure nothing was imported: a
// *ledgercsv.Error lists the file's problems.
func (s *Service) UploadImport(ctx context.Context, a Actor, id string, csv io.Reader) (ImportJob, error) {
	if err := checkActor(a); err != nil {
		return ImportJob{}, err
	}
	s.imports.mu.Lock()
	j, err := s.job(id)
	if err == nil && j.State != ImportWaiting {
		err = fmt.Errorf("%w: job %s is %s; start a new job to import again", ErrImportState, id, j.State)
	}
	if err != nil {
		s.imports.mu.Unlock()
		return ImportJob{}, err
	}
	size := j.Progress.TotalBytes
	// The import outlives the request that brings the file: it ends with
	// its file (a broken upload fails it) or by CancelImport.
	jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	j.State, j.cancel, j.Progress = ImportRunning, cancel, nil
	s.imports.mu.Unlock()

	// The import reads the file through a pipe, so that a cancellation
	// stops it at once even while the sender is silent (a read of the
	// request body cannot be interrupted): the pipe breaks, the import
	// ends, and the copy stops with the sender's next bytes or its end.
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, csv)
		pw.CloseWithError(err)
	}()
	context.AfterFunc(jctx, func() { pr.CloseWithError(ErrImportCancelled) })
	run, err := s.cfg.Records.StartImportCSV(jctx, j.Municipality, j.Operator, j.Mode, j.Encoding, size, pr)
	if err != nil {
		cancel()
		s.endJob(j, records.ImportResult{}, err)
		snap, _ := s.ImportJobStatus(ctx, id)
		return snap, err
	}
	s.imports.mu.Lock()
	j.run = run
	s.imports.mu.Unlock()
	go func() {
		res, err := run.Wait()
		cancel()
		s.endJob(j, res, err)
	}()
	select {
	case <-j.ended:
	case <-ctx.Done():
		snap, _ := s.ImportJobStatus(context.WithoutCancel(ctx), id)
		return snap, ctx.Err()
	}
	s.imports.mu.Lock()
	out, jerr := j.snapshot(), j.err()
	s.imports.mu.Unlock()
	return out, jerr
}

// err is the error a finished job ended with (nil for done).
func (j *importJob) err() error {
	switch {
	case j.State == ImportDone:
		return nil
	case j.State == ImportCancelled:
		return fmt.Errorf("%w: import job %s; the records are as they were", ErrImportCancelled, j.ID)
	case j.failure != nil:
		return j.failure
	}
	return fmt.Errorf("admin: import job %s failed: %s", j.ID, j.Error)
}

// endJob records how a job ended and audits it.
func (s *Service) endJob(j *importJob, res records.ImportResult, err error) {
	s.imports.mu.Lock()
	if j.State.Finished() {
		s.imports.mu.Unlock()
		return
	}
	j.Ended = s.cfg.Now()
	if err != nil {
		j.failure = fmt.Errorf("import job %s: %w", j.ID, err)
	}
	var fe *ledgercsv.Error
	switch {
	case err == nil:
		j.State, j.Result = ImportDone, &res
	case j.cancelled || errors.Is(err, context.Canceled):
		j.State, j.Error = ImportCancelled, "cancelled; the records are as they were"
	case errors.As(err, &fe):
		j.State, j.Error, j.Problems, j.Omitted = ImportFailed, "the file was rejected; nothing was imported", fe.Problems, fe.Omitted
	default:
		// Import errors name rows, columns and causes, never field values.
		j.State, j.Error = ImportFailed, err.Error()
	}
	if j.run != nil {
		p := j.run.Progress()
		j.Progress = &p
	}
	ended := j.ImportJob
	s.imports.mu.Unlock()
	// Audited before anyone waiting hears of the end.
	s.auditEnded([]*importJob{{ImportJob: ended, source: j.source}})
	close(j.ended)
	if err != nil && ended.State == ImportFailed && len(ended.Problems) == 0 {
		s.cfg.Log.Warn("records import failed", "job", ended.ID, "municipality", ended.Municipality, "err", err)
	}
}

// auditEnded audits jobs that ended: imported, failed or cancelled, in
// the name of the operator who started them.
func (s *Service) auditEnded(jobs []*importJob) {
	for _, j := range jobs {
		e := store.Event{Municipality: j.Municipality, Object: j.ID}
		switch j.State {
		case ImportDone:
			e.Type, e.Result = store.EventRecordsImported, "ok"
		case ImportCancelled:
			e.Type, e.Result = store.EventRecordsImportEnded, "cancelled"
		default:
			e.Type, e.Result = store.EventRecordsImportEnded, "failed"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.audit(ctx, Actor{Operator: j.Operator, Source: j.source}, e); err != nil {
			s.cfg.Log.Error("audit the end of an import job", "job", j.ID, "err", err)
		}
		cancel()
	}
}

// ImportJobs returns the jobs this center instance knows, newest first.
func (s *Service) ImportJobs(ctx context.Context) ([]ImportJob, error) {
	s.imports.mu.Lock()
	expired := s.sweepLocked(s.cfg.Now())
	out := make([]ImportJob, 0, len(s.imports.jobs))
	for i := len(s.imports.jobs) - 1; i >= 0; i-- {
		out = append(out, s.imports.jobs[i].snapshot())
	}
	s.imports.mu.Unlock()
	s.auditEnded(expired)
	return out, nil
}

// ImportJobStatus returns one job.
func (s *Service) ImportJobStatus(ctx context.Context, id string) (ImportJob, error) {
	s.imports.mu.Lock()
	defer s.imports.mu.Unlock()
	j, err := s.job(id)
	if err != nil {
		return ImportJob{}, err
	}
	return j.snapshot(), nil
}

// CancelImport cancels a waiting or running job and returns once it has
// ended (or ctx is done): the municipality's records stay as they were.
// A job that has ended answers ErrImportState.
func (s *Service) CancelImport(ctx context.Context, a Actor, id string) (ImportJob, error) {
	if err := checkActor(a); err != nil {
		return ImportJob{}, err
	}
	s.imports.mu.Lock()
	j, err := s.job(id)
	if err == nil && j.State.Finished() {
		err = fmt.Errorf("%w: job %s has ended (%s)", ErrImportState, id, j.State)
	}
	if err != nil {
		s.imports.mu.Unlock()
		return ImportJob{}, err
	}
	j.cancelled = true
	waiting := j.State == ImportWaiting
	if waiting {
		j.State, j.Ended, j.Error = ImportCancelled, s.cfg.Now(), "cancelled before its file arrived"
		close(j.ended)
	} else if j.cancel != nil {
		j.cancel()
	}
	snap := j.ImportJob
	s.imports.mu.Unlock()
	// Who cancelled is audited at once; the end, in the starter's name,
	// when the import has stopped.
	if err := s.audit(ctx, a, store.Event{Type: store.EventRecordsImportCancel, Municipality: snap.Municipality, Object: id, Result: "requested"}); err != nil {
		return ImportJob{}, err
	}
	if waiting {
		s.auditEnded([]*importJob{{ImportJob: snap, source: j.source}})
	}
	select {
	case <-j.ended:
	case <-ctx.Done():
		return s.ImportJobStatus(context.WithoutCancel(ctx), id)
	}
	return s.ImportJobStatus(ctx, id)
}
