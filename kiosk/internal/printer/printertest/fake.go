// Package printertest provides Fake, a test double of printer.Printer with
// fault injection, for the tests of packages that print (the kiosk session
// flow, the end-to-end tests). It is not a printer: nothing it receives
// leaves memory.
//
//	f := printertest.New()
//	f.PaperOutNext(1)   // the next Print fails with printer.ErrPaperOut
//	f.Jam()             // every Print fails with printer.ErrPaperJam until ClearJam
//	f.SetDelay(5 * time.Second) // Print takes 5 s, or fails at the context deadline
//	...
//	jobs := f.Jobs()    // what was printed, in order
//
// Like a real printer it validates jobs (printer.ValidateJob), so a test
// that prints a job named after a resident fails here too.
package printertest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
)

// Fake is an in-memory printer with injectable faults. The zero value is
// not usable; call New. It is safe for concurrent use.
type Fake struct {
	mu          sync.Mutex
	jobs        []printer.Job
	attempts    int
	paperOutFor int
	jammed      bool
	offline     bool
	delay       time.Duration
}

var _ printer.Printer = (*Fake)(nil)

// New returns a ready Fake.
func New() *Fake { return &Fake{} }

// PaperOutNext makes the next n Print calls fail with printer.ErrPaperOut
// (and Status report paper out while any remain), as if the tray ran empty
// and was refilled after n attempts.
func (f *Fake) PaperOutNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paperOutFor = n
}

// Jam makes Status report a jam and Print fail with printer.ErrPaperJam
// until ClearJam.
func (f *Fake) Jam() { f.set(func() { f.jammed = true }) }

// ClearJam undoes Jam, as staff would.
func (f *Fake) ClearJam() { f.set(func() { f.jammed = false }) }

// SetOffline makes the printer unreachable (printer.ErrPrinterOffline) or
// reachable again.
func (f *Fake) SetOffline(off bool) { f.set(func() { f.offline = off }) }

// SetDelay makes each Print take d; a context deadline shorter than d makes
// Print fail with printer.ErrPrintTimeout and print nothing.
func (f *Fake) SetDelay(d time.Duration) { f.set(func() { f.delay = d }) }

func (f *Fake) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// Jobs returns copies of the jobs printed so far, in order.
func (f *Fake) Jobs() []printer.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]printer.Job, len(f.jobs))
	for i, j := range f.jobs {
		j.PDF = slices.Clone(j.PDF)
		out[i] = j
	}
	return out
}

// Attempts returns how many times Print was called, successful or not.
func (f *Fake) Attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

// Status reports the injected condition.
func (f *Fake) Status(ctx context.Context) (printer.Status, error) {
	if err := ctx.Err(); err != nil {
		return printer.Status{State: printer.StateOffline}, fmt.Errorf("%w (%w)", printer.ErrPrinterOffline, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statusLocked()
}

func (f *Fake) statusLocked() (printer.Status, error) {
	switch {
	case f.offline:
		return printer.Status{State: printer.StateOffline}, fmt.Errorf("%w (fake set offline)", printer.ErrPrinterOffline)
	case f.jammed:
		return printer.Status{State: printer.StateJammed, Reasons: []string{"media-jam-error"}}, nil
	case f.paperOutFor > 0:
		return printer.Status{State: printer.StatePaperOut, Reasons: []string{"media-empty-error"}}, nil
	}
	return printer.Status{State: printer.StateReady}, nil
}

// Print records the job unless a fault is injected.
func (f *Fake) Print(ctx context.Context, job printer.Job) error {
	f.mu.Lock()
	f.attempts++
	delay := f.delay
	f.mu.Unlock()
	if err := printer.ValidateJob(job); err != nil {
		return err
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (%w)", printer.ErrPrintTimeout, ctx.Err())
		case <-t.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w (%w)", printer.ErrPrintTimeout, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.statusLocked()
	if f.paperOutFor > 0 {
		f.paperOutFor--
	}
	if err != nil {
		return err
	}
	if err := st.Err(); err != nil {
		return err
	}
	job.PDF = slices.Clone(job.PDF)
	f.jobs = append(f.jobs, job)
	return nil
}
