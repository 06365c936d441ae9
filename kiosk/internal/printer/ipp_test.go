package printer_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-pdf/fpdf"

	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/ipptest"
)

// testPDF is a small one-page PDF (no personal data).
func testPDF(t testing.TB) []byte {
	t.Helper()
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCreationDate(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC))
	pdf.SetModificationDate(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC))
	pdf.AddPage()
	pdf.SetFont("Helvetica", "", 14)
	pdf.Text(20, 30, "kioskcert printer test page")
	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newIPP(t testing.TB, uri string) *printer.IPP {
	t.Helper()
	p, err := printer.NewIPP(uri, printer.IPPOptions{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestIPPPrint prints through the real IPP printer and checks that what it
// received is byte for byte the PDF sent, under the job's ID.
func TestIPPPrint(t *testing.T) {
	srv := ipptest.Start(t, ipptest.Options{})
	p := newIPP(t, srv.URI)
	st, err := p.Status(ctxTimeout(t, 10*time.Second))
	if err != nil || st.State != printer.StateReady {
		t.Fatalf("Status = %+v, %v; want ready", st, err)
	}
	pdf := testPDF(t)
	for i, job := range []printer.Job{
		{Name: "req-7f3a9c21", PDF: pdf, Copies: 1},
		{Name: "req-7f3a9c22", PDF: pdf, Copies: 2},
	} {
		if err := p.Print(ctxTimeout(t, 30*time.Second), job); err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
	}
	docs := srv.Documents(t)
	if len(docs) != 2 {
		t.Fatalf("printer kept %d documents, want 2: %v", len(docs), keys(docs))
	}
	for name, b := range docs {
		if !bytes.Equal(b, pdf) {
			t.Errorf("%s: printed bytes differ from the PDF sent (%d vs %d bytes)", name, len(b), len(pdf))
		}
		if !strings.Contains(name, "req-7f3a9c2") {
			t.Errorf("%s: job name not carried to the printer", name)
		}
	}
	for id, state := range srv.JobStates(t) {
		if state != 9 {
			t.Errorf("job %d state %d, want 9 (completed)", id, state)
		}
	}
}

func keys(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

// TestIPPPaperOutBeforeJob empties the tray through the printer's own
// media settings: Status must say paper out, Print must refuse without
// sending anything, and printing works again once paper is loaded.
func TestIPPPaperOutBeforeJob(t *testing.T) {
	srv := ipptest.Start(t, ipptest.Options{})
	p := newIPP(t, srv.URI)
	srv.SetPaperLevel(t, 0)
	st, err := p.Status(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != printer.StatePaperOut || !errors.Is(st.Err(), printer.ErrPaperOut) {
		t.Fatalf("Status = %+v; want paper-out", st)
	}
	err = p.Print(ctxTimeout(t, 10*time.Second), printer.Job{Name: "req-1", PDF: testPDF(t), Copies: 1})
	if !errors.Is(err, printer.ErrPaperOut) {
		t.Fatalf("Print with an empty tray: %v, want ErrPaperOut", err)
	}
	if n := len(srv.JobStates(t)); n != 0 {
		t.Fatalf("a job was sent to a printer without paper (%d jobs)", n)
	}
	srv.SetPaperLevel(t, 250)
	if err := p.Print(ctxTimeout(t, 30*time.Second), printer.Job{Name: "req-2", PDF: testPDF(t), Copies: 1}); err != nil {
		t.Fatalf("after loading paper: %v", err)
	}
}

// TestIPPFaultsDuringJob runs jobs through a printer command that jams or
// runs out of paper: the job is aborted and Print says why.
func TestIPPFaultsDuringJob(t *testing.T) {
	tests := []struct {
		name    string
		command func(testing.TB) string
		want    error
		state   printer.State
	}{
		{"jam", ipptest.JamCommand, printer.ErrPaperJam, printer.StateJammed},
		{"paper out", ipptest.PaperOutCommand, printer.ErrPaperOut, printer.StatePaperOut},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := ipptest.Start(t, ipptest.Options{Command: tc.command(t)})
			p := newIPP(t, srv.URI)
			err := p.Print(ctxTimeout(t, 30*time.Second), printer.Job{Name: "req-fault", PDF: testPDF(t), Copies: 1})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Print: %v, want %v", err, tc.want)
			}
			st, _ := p.Status(ctxTimeout(t, 10*time.Second))
			if st.State != tc.state {
				t.Errorf("Status after the fault: %v (%v), want %v", st.State, st.Reasons, tc.state)
			}
		})
	}
}

// TestIPPTimeoutCancelsJob: when the deadline passes while the printer is
// still working, Print fails with ErrPrintTimeout and cancels the job, so
// it cannot come out after the kiosk has moved on.
func TestIPPTimeoutCancelsJob(t *testing.T) {
	srv := ipptest.Start(t, ipptest.Options{Command: ipptest.SlowCommand(t, 4*time.Second)})
	p := newIPP(t, srv.URI)
	start := time.Now()
	err := p.Print(ctxTimeout(t, 1500*time.Millisecond), printer.Job{Name: "req-slow", PDF: testPDF(t), Copies: 1})
	if !errors.Is(err, printer.ErrPrintTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Print: %v, want ErrPrintTimeout wrapping the deadline", err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("Print returned after %s: the deadline was not honoured", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		states := srv.JobStates(t)
		if len(states) == 1 && states[1] == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job states %v: want the one job canceled (7)", states)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIPPOffline: a printer that stops answering is offline, for Status and
// for Print.
func TestIPPOffline(t *testing.T) {
	srv := ipptest.Start(t, ipptest.Options{})
	p := newIPP(t, srv.URI)
	srv.Stop()
	st, err := p.Status(ctxTimeout(t, 5*time.Second))
	if st.State != printer.StateOffline || !errors.Is(err, printer.ErrPrinterOffline) {
		t.Fatalf("Status of a stopped printer: %+v, %v", st, err)
	}
	err = p.Print(ctxTimeout(t, 5*time.Second), printer.Job{Name: "req-off", PDF: testPDF(t), Copies: 1})
	if !errors.Is(err, printer.ErrPrinterOffline) {
		t.Fatalf("Print to a stopped printer: %v, want ErrPrinterOffline", err)
	}
}

// TestIPPRefusesPersonalJobName: a job named after a person never reaches
// the printer.
func TestIPPRefusesPersonalJobName(t *testing.T) {
	srv := ipptest.Start(t, ipptest.Options{})
	p := newIPP(t, srv.URI)
	for _, name := range []string{"試験花子", "SHIKEN HANAKO", "../etc/passwd", ""} {
		err := p.Print(ctxTimeout(t, 5*time.Second), printer.Job{Name: name, PDF: testPDF(t), Copies: 1})
		if !errors.Is(err, printer.ErrInvalidJob) {
			t.Errorf("job name %q: %v, want ErrInvalidJob", name, err)
		}
	}
	if n := len(srv.JobStates(t)); n != 0 {
		t.Fatalf("%d invalid jobs reached the printer", n)
	}
}

// TestIPPPrintOverTLS prints over ipps:// to a printer whose certificate
// a test CA issued: trusted through RootCAs, the job goes through; without
// it the printer is not trusted and nothing is sent.
func TestIPPPrintOverTLS(t *testing.T) {
	ca, err := ipptest.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := ipptest.Start(t, ipptest.Options{TLS: ca})
	if !strings.HasPrefix(srv.URI, "ipps://") {
		t.Fatalf("URI %q, want ipps://", srv.URI)
	}

	untrusted, err := printer.NewIPP(srv.URI, printer.IPPOptions{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pdf := testPDF(t)
	err = untrusted.Print(ctxTimeout(t, 10*time.Second), printer.Job{Name: "req-tls-untrusted", PDF: pdf, Copies: 1})
	if !errors.Is(err, printer.ErrPrinterOffline) || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("Print to an untrusted printer = %v, want offline: unknown authority", err)
	}

	p, err := printer.NewIPP(srv.URI, printer.IPPOptions{PollInterval: 50 * time.Millisecond, RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Print(ctxTimeout(t, 30*time.Second), printer.Job{Name: "req-tls-7f3a9c21", PDF: pdf, Copies: 1}); err != nil {
		t.Fatal(err)
	}
	docs := srv.Documents(t)
	if len(docs) != 1 {
		t.Fatalf("printer kept %d documents, want 1: %v", len(docs), keys(docs))
	}
	for name, b := range docs {
		if !bytes.Equal(b, pdf) || !strings.Contains(name, "req-tls-7f3a9c21") {
			t.Errorf("%s: not the job sent", name)
		}
	}
}
