// Package printer sends certificate PDFs to the kiosk's printer and tells
// whether the printer can print.
//
// Every printer implements Printer:
//
//	st, err := p.Status(ctx)          // before taking the resident's money
//	if err == nil { err = st.Err() }  // ErrPaperOut, ErrPaperJam, ...
//	...
//	err = p.Print(ctx, printer.Job{Name: requestID, PDF: pdf, Copies: 1})
//
// Implementations:
//
//   - NewIPP: a network printer over IPP (IPP Everywhere, any driverless
//     printer that accepts application/pdf). Print checks the printer state
//     first and refuses to send a job to a printer that reports paper out,
//     a jam or an open cover; it then submits the job with Print-Job and
//     follows it with Get-Job-Attributes until it completes, is aborted or
//     is canceled. If the context's deadline passes first, the job is
//     canceled on the printer, so that a certificate never comes out after
//     the kiosk has given up on it (and on the resident).
//   - NewSpool: a directory that stands in for the paper, for integrators
//     and the demo: each job becomes <name>.pdf, written atomically.
//   - printertest.Fake: a fault-injecting double for other packages' tests.
//
// Failures are sentinel errors (ErrPaperOut, ErrPaperJam, ErrCoverOpen,
// ErrSupplyEmpty, ErrPrinterOffline, ErrPrinterStopped, ErrJobAborted,
// ErrJobCanceled, ErrJobRejected, ErrPrintTimeout) whose messages tell the
// operator what to do; test them with errors.Is.
//
// A job carries no personal data in its metadata: its name is an opaque
// request or session ID (ValidateJob enforces the form), because printers
// log job names and show them on their panels. The PDF itself is personal
// data; no implementation logs it, and only the spool printer (whose
// directory is the paper) writes it to disk.
package printer

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Printer prints certificate PDFs.
type Printer interface {
	// Print prints job and returns when the printer has finished it, or
	// with an error saying why it did not. It does not print when the
	// printer is not ready.
	Print(ctx context.Context, job Job) error
	// Status reports whether the printer can print now.
	Status(ctx context.Context) (Status, error)
}

// Job is one print job.
type Job struct {
	// Name identifies the job on the printer and in its logs: a request or
	// session ID, never personal data. See ValidateJob.
	Name string
	// PDF is the document, application/pdf.
	PDF []byte
	// Copies is the number of copies, 1 to MaxCopies.
	Copies int
}

// MaxCopies is the most copies one job may ask for.
const MaxCopies = 10

// MaxNameLen is the longest job name accepted.
const MaxNameLen = 64

// ErrInvalidJob is returned for a job that is malformed: a name that is not
// an opaque ID, no document, or copies out of range.
var ErrInvalidJob = errors.New("printer: invalid job")

// ValidateJob checks a job before it goes anywhere. The name must be 1 to
// 64 characters of A-Z, a-z, 0-9, '-', '_' and '.', not starting with '.':
// an ID cannot carry a resident's name, and is safe as a file name.
func ValidateJob(job Job) error {
	switch {
	case job.Name == "" || len(job.Name) > MaxNameLen || job.Name[0] == '.':
		return fmt.Errorf("%w: name must be 1-%d characters and not start with '.'", ErrInvalidJob, MaxNameLen)
	case strings.IndexFunc(job.Name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0:
		return fmt.Errorf("%w: name must be an ID of letters, digits, '-', '_' and '.' (no personal data)", ErrInvalidJob)
	case len(job.PDF) < 5 || string(job.PDF[:5]) != "%PDF-":
		return fmt.Errorf("%w: document is not a PDF", ErrInvalidJob)
	case job.Copies < 1 || job.Copies > MaxCopies:
		return fmt.Errorf("%w: copies must be 1-%d", ErrInvalidJob, MaxCopies)
	}
	return nil
}

// Errors, with the action they ask of the operator (store staff clear jams
// and load paper; they do not operate the kiosk for the resident).
var (
	ErrPaperOut       = errors.New("printer: out of paper: load A4 paper into the printer's tray")
	ErrPaperJam       = errors.New("printer: paper jam: open the printer, remove the jammed sheet and close it")
	ErrCoverOpen      = errors.New("printer: a cover or door is open: close it")
	ErrSupplyEmpty    = errors.New("printer: toner or ink is empty: replace the cartridge")
	ErrPrinterOffline = errors.New("printer: printer offline or unreachable: check its power, cable or network, and that it is online")
	ErrPrinterStopped = errors.New("printer: printer stopped: check its panel for the fault, then resume it")
	ErrJobAborted     = errors.New("printer: the printer aborted the job: check the printer, then print again")
	ErrJobCanceled    = errors.New("printer: the job was canceled at the printer: print again if the resident still needs it")
	ErrJobRejected    = errors.New("printer: the printer refused the job: check that it accepts PDF documents (IPP Everywhere)")
	ErrPrintTimeout   = errors.New("printer: printing did not finish in time: the job was canceled; check the printer before printing again")
)

// State is a printer's readiness.
type State int

// Printer states, from Status.
const (
	StateReady       State = iota // can print
	StateBusy                     // printing another job; can accept this one
	StatePaperOut                 // ErrPaperOut
	StateJammed                   // ErrPaperJam
	StateCoverOpen                // ErrCoverOpen
	StateSupplyEmpty              // ErrSupplyEmpty
	StateStopped                  // ErrPrinterStopped
	StateOffline                  // ErrPrinterOffline
)

var stateNames = [...]string{"ready", "busy", "paper-out", "jammed", "cover-open", "supply-empty", "stopped", "offline"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status is what a printer reports about itself.
type Status struct {
	State State
	// Reasons are the printer's state reasons as reported (IPP
	// printer-state-reasons keywords such as "media-empty-error"), for the
	// operator's log. They never contain personal data.
	Reasons []string
	// Message is the printer's own human-readable state message.
	Message string
}

// Err returns the sentinel error for the state, or nil when the printer
// can print (ready or busy).
func (s Status) Err() error {
	switch s.State {
	case StateReady, StateBusy:
		return nil
	case StatePaperOut:
		return ErrPaperOut
	case StateJammed:
		return ErrPaperJam
	case StateCoverOpen:
		return ErrCoverOpen
	case StateSupplyEmpty:
		return ErrSupplyEmpty
	case StateOffline:
		return ErrPrinterOffline
	default:
		return ErrPrinterStopped
	}
}

// Ready reports whether the printer can take a job now.
func (s Status) Ready() bool { return s.Err() == nil }

// reasonState maps IPP printer-state-reasons keywords (RFC 8011 §5.4.12,
// PWG 5100.9) to the condition that stops printing, in order of
// precedence: a jam must be cleared before paper can be loaded, and so on.
// Each keyword matches with any severity suffix (-error, -warning,
// -report): an empty tray stops an A4-only kiosk printer whatever severity
// the printer gives it (CUPS's ippeveprinter reports an empty tray as
// "media-empty-report" while still idle).
var reasonState = []struct {
	keywords []string
	state    State
}{
	{[]string{"media-jam"}, StateJammed},
	{[]string{"media-empty", "media-needed"}, StatePaperOut},
	{[]string{"cover-open", "door-open", "interlock-open"}, StateCoverOpen},
	{[]string{"toner-empty", "marker-supply-empty", "developer-empty"}, StateSupplyEmpty},
	{[]string{"offline", "shutdown", "timed-out", "connecting-to-device"}, StateOffline},
}

// classify derives the state from the IPP printer-state (3 idle,
// 4 processing, 5 stopped), printer-is-accepting-jobs and the
// printer-state-reasons keywords.
func classify(printerState int, accepting bool, reasons []string) State {
	for _, rs := range reasonState {
		for _, r := range reasons {
			if hasKeyword(r, rs.keywords) {
				return rs.state
			}
		}
	}
	switch {
	case printerState == 5 || !accepting:
		return StateStopped
	case printerState == 4:
		return StateBusy
	default:
		return StateReady
	}
}

// hasKeyword reports whether reason is one of keywords, bare or with a
// severity suffix.
func hasKeyword(reason string, keywords []string) bool {
	base := reason
	for _, sev := range []string{"-error", "-warning", "-report"} {
		if b, ok := strings.CutSuffix(reason, sev); ok {
			base = b
			break
		}
	}
	for _, k := range keywords {
		if base == k {
			return true
		}
	}
	return false
}

// checkContext returns ctx's error, if any, as a print timeout.
func checkContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w (%w)", ErrPrintTimeout, err)
	}
	return nil
}
