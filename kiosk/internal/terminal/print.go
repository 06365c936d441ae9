package terminal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
)

// JobState is where one print job stands.
type JobState string

// Print job states.
//
//	waiting ──FetchPDF──→ fetched ──printed──→ printed
//	   │                     └─────failed───→ failed
//	   ├──failed (e.g. paper out before fetching)──→ failed
//	   └──deadline (either state)──→ cancelled
const (
	JobWaiting   JobState = "waiting" // announced; PDF not fetched yet
	JobFetched   JobState = "fetched" // PDF handed over; awaiting the result
	JobPrinted   JobState = "printed"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled" // the kiosk stopped waiting: do not print
)

// Print results (ResultPrinted or ResultFailed) and failure reasons, as
// the terminal reports them.
const (
	ResultPrinted   = "printed"
	ReasonPaperOut  = "paper_out"
	ReasonJam       = "jam"
	ReasonOther     = "other"
	ReasonTimeout   = "timeout"   // print.cancel: the flow's deadline passed
	ReasonCancelled = "cancelled" // print.cancel: the kiosk is stopping
)

// PrintReasons are the reasons a terminal may give for a failed job. They
// map to the flow's error codes: paper_out → printer_paper_out, jam →
// printer_jam, other → printer_failed.
var PrintReasons = []string{ReasonPaperOut, ReasonJam, ReasonOther}

// PrintJob is one job as the terminal sees it.
type PrintJob struct {
	// ID names this job: <name>-<attempt>. Its PDF is at
	// /api/v1/integrator/print-jobs/<ID>.pdf.
	ID string `json:"jobId"`
	// Name is the flow's job name (kioskcert-<requestId>): an opaque ID,
	// never personal data. Attempt counts jobs of that name.
	Name      string `json:"name"`
	Attempt   int    `json:"attempt"`
	Copies    int    `json:"copies"`
	SizeBytes int    `json:"sizeBytes"`
	// SHA256 is the PDF's digest (hex), to check the fetched bytes.
	SHA256 string   `json:"sha256"`
	State  JobState `json:"state"`
	// Deadline is when the kiosk stops waiting for the result.
	Deadline time.Time `json:"deadline,omitzero"`
	// Reason is the failure reason (failed) or why the kiosk stopped
	// waiting (cancelled).
	Reason string `json:"reason,omitempty"`
}

type job struct {
	view     PrintJob
	order    uint64
	pdf      []byte        // the terminal's copy until fetched, reported or cancelled
	done     chan struct{} // closed on a result or cancellation
	finished time.Time
}

var _ printer.Printer = (*Terminal)(nil)

// Status implements printer.Printer: the state the terminal last reported
// (ready until it reports otherwise), or offline while no terminal is
// connected.
func (t *Terminal) Status(ctx context.Context) (printer.Status, error) {
	if err := ctx.Err(); err != nil {
		return printer.Status{State: printer.StateOffline}, fmt.Errorf("%w (%w)", printer.ErrPrinterOffline, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.statusLocked(), nil
}

func (t *Terminal) statusLocked() printer.Status {
	if !t.presentLocked() {
		return printer.Status{State: printer.StateOffline, Message: "no store terminal connected"}
	}
	return printer.Status{State: t.state, Message: "as reported by the store terminal"}
}

// SetPrinterState records the terminal's printer state. Print refuses jobs
// while it is not ready or busy, as an IPP printer does.
func (t *Terminal) SetPrinterState(s printer.State) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastSeen = t.cfg.Now()
	if t.state != s {
		t.cfg.Log.Info("store terminal reported its printer state", "state", s.String())
	}
	t.state = s
}

// ParsePrinterState reads a printer state name (printer.State.String:
// ready, busy, paper-out, jammed, cover-open, supply-empty, stopped,
// offline).
func ParsePrinterState(s string) (printer.State, error) {
	for st := printer.StateReady; st <= printer.StateOffline; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("%w: printer state %q", ErrInvalid, s)
}

// Print implements printer.Printer: it announces the job to the terminal
// and waits for the result until ctx ends. The PDF is copied (the flow
// keeps its own for a retry) and the copy is cleared when fetched,
// reported or cancelled.
func (t *Terminal) Print(ctx context.Context, pj printer.Job) error {
	if err := printer.ValidateJob(pj); err != nil {
		return err
	}
	t.mu.Lock()
	if st := t.statusLocked(); !st.Ready() {
		t.mu.Unlock()
		return fmt.Errorf("%w (%s)", st.Err(), st.Message)
	}
	t.pruneLocked()
	t.attempts["j:"+pj.Name]++
	n := t.attempts["j:"+pj.Name]
	t.created++
	sum := sha256.Sum256(pj.PDF)
	j := &job{
		order: t.created,
		pdf:   bytes.Clone(pj.PDF),
		done:  make(chan struct{}),
		view: PrintJob{ID: fmt.Sprintf("%s-%d", pj.Name, n), Name: pj.Name, Attempt: n, Copies: pj.Copies,
			SizeBytes: len(pj.PDF), SHA256: hex.EncodeToString(sum[:]), State: JobWaiting},
	}
	if d, ok := ctx.Deadline(); ok {
		j.view.Deadline = d.UTC()
	}
	id := j.view.ID
	t.jobs[id] = j
	v := j.view
	t.publishLocked(EventPrintJob, nil, &v)
	t.mu.Unlock()
	t.cfg.Log.Info("print job sent to the store terminal", "job", id, "copies", pj.Copies, "bytes", len(pj.PDF))

	select {
	case <-j.done:
	case <-ctx.Done():
		t.mu.Lock()
		if j.view.State == JobWaiting || j.view.State == JobFetched {
			j.view.State, j.view.Reason = JobCancelled, ReasonTimeout
			if errors.Is(ctx.Err(), context.Canceled) {
				j.view.Reason = ReasonCancelled
			}
			t.endJobLocked(j)
			v := j.view
			t.publishLocked(EventPrintCancel, nil, &v)
			t.mu.Unlock()
			t.cfg.Log.Warn("store terminal did not report the print job in time; cancelled it", "job", id)
			return fmt.Errorf("%w (%w)", printer.ErrPrintTimeout, ctx.Err())
		}
		t.mu.Unlock()
	}
	t.mu.Lock()
	state, reason := j.view.State, j.view.Reason
	t.mu.Unlock()
	switch {
	case state == JobPrinted:
		return nil
	case reason == ReasonPaperOut:
		return fmt.Errorf("%w (reported by the store terminal)", printer.ErrPaperOut)
	case reason == ReasonJam:
		return fmt.Errorf("%w (reported by the store terminal)", printer.ErrPaperJam)
	default:
		return fmt.Errorf("%w (the store terminal reported a print failure)", printer.ErrJobAborted)
	}
}

// endJobLocked finishes a job: its PDF copy is overwritten and dropped,
// and Print's wait ends.
func (t *Terminal) endJobLocked(j *job) {
	clear(j.pdf)
	j.pdf = nil
	j.finished = t.cfg.Now()
	close(j.done)
}

// FetchPDF hands over a job's PDF, once: the caller owns the returned
// bytes and should clear them once written. A second fetch, or a fetch
// after the job ended, is ErrPDFGone.
func (t *Terminal) FetchPDF(id string) ([]byte, PrintJob, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j, ok := t.jobs[id]
	if !ok {
		return nil, PrintJob{}, fmt.Errorf("%w: print job %q", ErrUnknown, id)
	}
	if j.view.State != JobWaiting || j.pdf == nil {
		return nil, j.view, fmt.Errorf("%w (job %s is %s)", ErrPDFGone, id, j.view.State)
	}
	b := j.pdf
	j.pdf = nil
	j.view.State = JobFetched
	t.cfg.Log.Info("store terminal fetched a print job's PDF", "job", id)
	return b, j.view, nil
}

// ReportPrint records a job's result: printed, or failed with a reason from
// PrintReasons. Repeating the report is harmless; a different one is
// ErrConflict; a report after the kiosk cancelled the job is ErrExpired;
// "printed" for a job whose PDF was never fetched is ErrNotFetched.
func (t *Terminal) ReportPrint(id string, printed bool, reason string) (PrintJob, error) {
	state := JobFailed
	if printed {
		state = JobPrinted
		if reason != "" {
			return PrintJob{}, fmt.Errorf("%w: a printed report has no reason", ErrInvalid)
		}
	} else {
		if reason == "" {
			reason = ReasonOther
		}
		if !oneOf(reason, PrintReasons) {
			return PrintJob{}, fmt.Errorf("%w: reason must be one of %v", ErrInvalid, PrintReasons)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	j, ok := t.jobs[id]
	if !ok {
		return PrintJob{}, fmt.Errorf("%w: print job %q", ErrUnknown, id)
	}
	switch j.view.State {
	case JobWaiting, JobFetched:
		if printed && j.view.State == JobWaiting {
			return j.view, fmt.Errorf("%w (job %s)", ErrNotFetched, id)
		}
		j.view.State, j.view.Reason = state, reason
		t.endJobLocked(j)
		t.cfg.Log.Info("store terminal reported a print job", "job", id, "state", state, "reason", reason)
	case JobCancelled:
		return j.view, fmt.Errorf("%w: job %s was cancelled (%s); do not print it", ErrExpired, id, j.view.Reason)
	default:
		if j.view.State != state || j.view.Reason != reason {
			return j.view, fmt.Errorf("%w: job %s was reported %s before", ErrConflict, id, j.view.State)
		}
	}
	return j.view, nil
}

// PrintJob returns a job by ID.
func (t *Terminal) PrintJob(id string) (PrintJob, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j, ok := t.jobs[id]
	if !ok {
		return PrintJob{}, false
	}
	return j.view, true
}
