package terminal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
)

const jobName = "kioskcert-" + req

var testPDF = []byte("%PDF-1.7\n% a stand-in document for the terminal tests\n%%EOF\n")

// print starts a job and returns its event and Print's result.
func print(t *testing.T, term *Terminal, ch <-chan Event, ctx context.Context, pdf []byte) (PrintJob, <-chan error) {
	t.Helper()
	res := async(func() error { return term.Print(ctx, printer.Job{Name: jobName, PDF: pdf, Copies: 2}) })
	ev := next(t, ch)
	if ev.Type != EventPrintJob || ev.PrintJob == nil {
		t.Fatalf("event %+v, want print.job", ev)
	}
	return *ev.PrintJob, res
}

// heldPDF is the terminal's copy of a job's PDF (nil once forgotten).
func heldPDF(term *Terminal, id string) []byte {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.jobs[id].pdf
}

func TestPrintFetchedOnceThenPrinted(t *testing.T) {
	term, ch := newTerm(t, Config{})
	pdf := bytes.Clone(testPDF)
	j, res := print(t, term, ch, context.Background(), pdf)
	sum := sha256.Sum256(testPDF)
	if j.ID != jobName+"-1" || j.Name != jobName || j.Copies != 2 || j.SizeBytes != len(testPDF) ||
		j.SHA256 != hex.EncodeToString(sum[:]) || j.State != JobWaiting || j.Attempt != 1 {
		t.Fatalf("job event %+v", j)
	}
	if _, err := term.ReportPrint(j.ID, true, ""); !errors.Is(err, ErrNotFetched) {
		t.Fatalf("printed before fetching: %v, want ErrNotFetched", err)
	}
	got, view, err := term.FetchPDF(j.ID)
	if err != nil || !bytes.Equal(got, testPDF) || view.State != JobFetched {
		t.Fatalf("fetch: %q %+v %v", got, view, err)
	}
	if heldPDF(term, j.ID) != nil {
		t.Error("the terminal still holds the PDF after handing it over")
	}
	clear(got)
	if !bytes.Equal(pdf, testPDF) {
		t.Error("clearing the fetched bytes changed the flow's PDF (needed for a retry)")
	}
	if _, _, err := term.FetchPDF(j.ID); !errors.Is(err, ErrPDFGone) {
		t.Fatalf("second fetch: %v, want ErrPDFGone", err)
	}
	if c := term.Counts(); c.PrintJobsPending != 1 {
		t.Errorf("counts %+v", c)
	}
	for range 2 {
		if v, err := term.ReportPrint(j.ID, true, ""); err != nil || v.State != JobPrinted {
			t.Fatalf("report: %+v %v", v, err)
		}
	}
	if err := wait(t, res); err != nil {
		t.Fatalf("Print = %v", err)
	}
	if _, err := term.ReportPrint(j.ID, false, ReasonJam); !errors.Is(err, ErrConflict) {
		t.Errorf("contradicting report: %v, want ErrConflict", err)
	}
	if _, _, err := term.FetchPDF(j.ID); !errors.Is(err, ErrPDFGone) {
		t.Errorf("fetch after the result: %v", err)
	}
	if c := term.Counts(); c.PrintJobsPending != 0 {
		t.Errorf("counts %+v", c)
	}
}

func TestPrintFailureReasons(t *testing.T) {
	for _, tc := range []struct {
		reason  string
		fetch   bool
		want    error
		again   string
		againOK bool
	}{
		{ReasonPaperOut, false, printer.ErrPaperOut, ReasonPaperOut, true},
		{ReasonJam, true, printer.ErrPaperJam, ReasonOther, false},
		{ReasonOther, true, printer.ErrJobAborted, ReasonOther, true},
		{"", true, printer.ErrJobAborted, ReasonOther, true}, // no reason reads as other
	} {
		t.Run(tc.reason, func(t *testing.T) {
			term, ch := newTerm(t, Config{})
			j, res := print(t, term, ch, context.Background(), testPDF)
			if tc.fetch {
				if _, _, err := term.FetchPDF(j.ID); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := term.ReportPrint(j.ID, false, tc.reason); err != nil {
				t.Fatal(err)
			}
			if err := wait(t, res); !errors.Is(err, tc.want) {
				t.Fatalf("Print = %v, want %v", err, tc.want)
			}
			if heldPDF(term, j.ID) != nil {
				t.Error("PDF kept after the result")
			}
			if _, err := term.ReportPrint(j.ID, false, tc.again); (err == nil) != tc.againOK {
				t.Errorf("repeat with %q: %v", tc.again, err)
			}
		})
	}
}

func TestPrintInvalidReports(t *testing.T) {
	term, ch := newTerm(t, Config{})
	j, res := print(t, term, ch, context.Background(), testPDF)
	for _, tc := range []struct {
		name    string
		id      string
		printed bool
		reason  string
		want    error
	}{
		{"unknown job", jobName + "-7", false, "", ErrUnknown},
		{"reason with printed", j.ID, true, ReasonJam, ErrInvalid},
		{"unknown reason", j.ID, false, "on fire", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := term.ReportPrint(tc.id, tc.printed, tc.reason); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, _, err := term.FetchPDF(jobName + "-7"); !errors.Is(err, ErrUnknown) {
		t.Errorf("fetch unknown: %v", err)
	}
	term.ReportPrint(j.ID, false, ReasonOther)
	wait(t, res)
}

func TestPrintTimeoutForgetsPDF(t *testing.T) {
	for _, fetched := range []bool{false, true} {
		t.Run(map[bool]string{false: "waiting", true: "fetched"}[fetched], func(t *testing.T) {
			term, ch := newTerm(t, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			j, res := print(t, term, ch, ctx, testPDF)
			if !j.Deadline.After(time.Now()) {
				t.Errorf("deadline %v not in the future", j.Deadline)
			}
			if fetched {
				term.FetchPDF(j.ID)
			}
			if err := wait(t, res); !errors.Is(err, printer.ErrPrintTimeout) {
				t.Fatalf("Print = %v, want ErrPrintTimeout", err)
			}
			ev := next(t, ch)
			if ev.Type != EventPrintCancel || ev.PrintJob.ID != j.ID || ev.PrintJob.State != JobCancelled || ev.PrintJob.Reason != ReasonTimeout {
				t.Fatalf("event %+v, want print.cancel", ev)
			}
			if heldPDF(term, j.ID) != nil {
				t.Error("PDF kept after the time-out")
			}
			if _, _, err := term.FetchPDF(j.ID); !errors.Is(err, ErrPDFGone) {
				t.Errorf("fetch after the time-out: %v", err)
			}
			if _, err := term.ReportPrint(j.ID, true, ""); !errors.Is(err, ErrExpired) {
				t.Errorf("late report: %v, want ErrExpired", err)
			}
		})
	}
}

func TestPrintRefusedWhenPrinterNotReady(t *testing.T) {
	term := New(Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	job := printer.Job{Name: jobName, PDF: testPDF, Copies: 1}
	if err := term.Print(context.Background(), job); !errors.Is(err, printer.ErrPrinterOffline) {
		t.Fatalf("no terminal: %v, want ErrPrinterOffline", err)
	}
	if st, _ := term.Status(context.Background()); st.State != printer.StateOffline {
		t.Errorf("status without a terminal: %v", st.State)
	}
	_, cancel := term.Subscribe()
	defer cancel()
	for _, tc := range []struct {
		state printer.State
		want  error
	}{
		{printer.StatePaperOut, printer.ErrPaperOut},
		{printer.StateJammed, printer.ErrPaperJam},
		{printer.StateOffline, printer.ErrPrinterOffline},
	} {
		t.Run(tc.state.String(), func(t *testing.T) {
			term.SetPrinterState(tc.state)
			if st, _ := term.Status(context.Background()); st.State != tc.state {
				t.Errorf("status %v", st.State)
			}
			if err := term.Print(context.Background(), job); !errors.Is(err, tc.want) {
				t.Errorf("Print = %v, want %v", err, tc.want)
			}
		})
	}
	if c := term.Counts(); c.PrintJobsPending != 0 {
		t.Errorf("refused jobs were announced: %+v", c)
	}
	bad := job
	bad.Name = "山田太郎"
	if err := term.Print(context.Background(), bad); !errors.Is(err, printer.ErrInvalidJob) {
		t.Errorf("job named after a person: %v", err)
	}
}

func TestRetriedJobGetsNewID(t *testing.T) {
	term, ch := newTerm(t, Config{})
	j1, res := print(t, term, ch, context.Background(), testPDF)
	term.ReportPrint(j1.ID, false, ReasonPaperOut)
	wait(t, res)
	j2, res := print(t, term, ch, context.Background(), testPDF)
	if j2.ID != jobName+"-2" || j2.Attempt != 2 {
		t.Fatalf("retry job %+v", j2)
	}
	// The repeated report for the first attempt does not touch the second.
	if _, err := term.ReportPrint(j1.ID, false, ReasonPaperOut); err != nil {
		t.Fatal(err)
	}
	if got, _ := term.PrintJob(j2.ID); got.State != JobWaiting {
		t.Fatalf("retry is %s", got.State)
	}
	// A new stream starts with the open job.
	ch2, cancel := term.Subscribe()
	defer cancel()
	if ev := next(t, ch2); ev.Type != EventPrintJob || ev.PrintJob.ID != j2.ID {
		t.Fatalf("replay %+v", ev)
	}
	term.FetchPDF(j2.ID)
	term.ReportPrint(j2.ID, true, "")
	if err := wait(t, res); err != nil {
		t.Fatal(err)
	}
}

func TestParsePrinterState(t *testing.T) {
	for st := printer.StateReady; st <= printer.StateOffline; st++ {
		t.Run(st.String(), func(t *testing.T) {
			got, err := ParsePrinterState(st.String())
			if err != nil || got != st {
				t.Errorf("ParsePrinterState(%q) = %v, %v", st.String(), got, err)
			}
		})
	}
	for _, bad := range []string{"", "Ready", "paper_out", "State(9)"} {
		if _, err := ParsePrinterState(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParsePrinterState(%q) = %v", bad, err)
		}
	}
}
