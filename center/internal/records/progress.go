package records

import (
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records/progress"
)

// Phase is the stage an import is in.
type Phase string

// Import phases, in order. Preparing and publishing are short; staging
// and ordering take the time.
const (
	PhasePreparing  Phase = "preparing"  // finishing earlier leftovers, opening the staging area
	PhaseStaging    Phase = "staging"    // reading, validating, sealing and staging the entries
	PhaseOrdering   Phase = "ordering"   // sorting the staged runs into the new generation, checking for duplicates
	PhasePublishing Phase = "publishing" // publishing (one transaction), merging a changes file, freeing replaced records
	PhaseDone       Phase = "done"
	PhaseFailed     Phase = "failed"
	PhaseAborted    Phase = "aborted"
)

// Progress is a snapshot of an import, safe to show an operator and to
// send over the operations API: counts and times, never personal data.
type Progress struct {
	Municipality string
	Mode         ImportMode
	Phase        Phase
	// Rows, Bytes and TotalBytes are the input position reported by the
	// reader (ImportJob.SetInput): ledger rows read, bytes read, the
	// input's size (0 if unknown).
	Rows, Bytes, TotalBytes int64
	// Persons and Doses are what was staged so far.
	Persons, Doses int64
	// Ordered and ToOrder count the staged items ordered while in
	// PhaseOrdering.
	Ordered, ToOrder int64
	// Started is when the import began, PhaseStarted when the current
	// phase did; Elapsed is the time since Started at the snapshot.
	Started, PhaseStarted time.Time
	Elapsed               time.Duration
	// Err is the failure, when Phase is PhaseFailed (safe to show: errors
	// never carry field values).
	Err string
	// Result is set when Phase is PhaseDone.
	Result *ImportResult
}

// Rate is the rows read per second since the import began (doses staged,
// when the reader reports no rows).
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	n := p.Rows
	if n == 0 {
		n = p.Doses
	}
	return float64(n) / p.Elapsed.Seconds()
}

// Remaining estimates the time left in the current phase from its own
// rate so far: staging from the bytes read of TotalBytes, ordering from
// the items ordered. ok is false when there is no basis for an estimate.
func (p Progress) Remaining() (d time.Duration, ok bool) {
	done, total := p.phaseWork()
	if total <= 0 || done <= 0 {
		return 0, false
	}
	in := p.Started.Add(p.Elapsed).Sub(p.PhaseStarted)
	if in <= 0 {
		return 0, false
	}
	left := float64(total-done) / float64(done) * float64(in)
	return time.Duration(left).Round(time.Second), true
}

func (p Progress) phaseWork() (done, total int64) {
	switch p.Phase {
	case PhaseStaging:
		return p.Bytes, p.TotalBytes
	case PhaseOrdering:
		return p.Ordered, p.ToOrder
	}
	return 0, 0
}

// Status is the snapshot in the form the progress renderer shows.
func (p Progress) Status() progress.Status {
	s := progress.Status{
		Label:    p.Municipality + " " + string(p.Phase),
		Count:    p.Rows,
		CountOf:  "rows",
		Elapsed:  p.Elapsed,
		Rate:     p.Rate(),
		Finished: p.Phase == PhaseDone || p.Phase == PhaseFailed || p.Phase == PhaseAborted,
	}
	if s.Count == 0 {
		s.Count, s.CountOf = p.Doses, "doses"
	}
	s.Done, s.Total = p.phaseWork()
	if p.Phase == PhaseStaging {
		s.Unit = progress.Bytes
	}
	if d, ok := p.Remaining(); ok {
		s.Remaining, s.RemainingKnown = d, true
	}
	return s
}

// Progress returns the job's progress now. Safe from any goroutine.
func (j *ImportJob) Progress() Progress {
	j.mu.Lock()
	defer j.mu.Unlock()
	p := j.progress
	if p.Phase != PhaseDone && p.Phase != PhaseFailed && p.Phase != PhaseAborted {
		p.Elapsed = j.v.now().Sub(p.Started)
	}
	return p
}

func (j *ImportJob) setPhase(ph Phase) {
	j.mu.Lock()
	now := j.v.now()
	j.progress.Phase, j.progress.PhaseStarted = ph, now
	j.progress.Elapsed = now.Sub(j.progress.Started)
	j.mu.Unlock()
	j.emit(true)
}

func (j *ImportJob) setFailed(err error) {
	j.mu.Lock()
	j.progress.Phase, j.progress.Err = PhaseFailed, err.Error()
	j.progress.Elapsed = j.v.now().Sub(j.progress.Started)
	j.mu.Unlock()
	j.emit(true)
}

// emit calls OnProgress if due (always when force is set).
func (j *ImportJob) emit(force bool) {
	if j.opts.OnProgress == nil {
		return
	}
	now := j.v.now()
	if !force && now.Sub(j.lastEmit) < j.interval {
		return
	}
	j.lastEmit = now
	j.opts.OnProgress(j.Progress())
}
