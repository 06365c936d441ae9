package printertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
)

func TestFake(t *testing.T) {
	ctx := context.Background()
	job := printer.Job{Name: "req-1", PDF: []byte("%PDF-1.7\n"), Copies: 1}
	f := New()
	f.PaperOutNext(2)
	for i := 0; i < 2; i++ {
		if st, _ := f.Status(ctx); st.State != printer.StatePaperOut {
			t.Errorf("attempt %d: status %v, want paper-out", i, st.State)
		}
		if err := f.Print(ctx, job); !errors.Is(err, printer.ErrPaperOut) {
			t.Fatalf("attempt %d: %v, want ErrPaperOut", i, err)
		}
	}
	if err := f.Print(ctx, job); err != nil {
		t.Fatalf("after the paper-out faults: %v", err)
	}
	f.Jam()
	if err := f.Print(ctx, job); !errors.Is(err, printer.ErrPaperJam) {
		t.Fatalf("jammed: %v", err)
	}
	f.ClearJam()
	f.SetOffline(true)
	if _, err := f.Status(ctx); !errors.Is(err, printer.ErrPrinterOffline) {
		t.Fatalf("offline status: %v", err)
	}
	if err := f.Print(ctx, job); !errors.Is(err, printer.ErrPrinterOffline) {
		t.Fatalf("offline: %v", err)
	}
	f.SetOffline(false)
	f.SetDelay(time.Second)
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := f.Print(tctx, job); !errors.Is(err, printer.ErrPrintTimeout) {
		t.Fatalf("slow: %v", err)
	}
	f.SetDelay(0)
	if err := f.Print(ctx, printer.Job{Name: "試験", PDF: job.PDF, Copies: 1}); !errors.Is(err, printer.ErrInvalidJob) {
		t.Fatalf("personal job name: %v", err)
	}
	jobs := f.Jobs()
	if len(jobs) != 1 || jobs[0].Name != "req-1" || f.Attempts() != 7 {
		t.Fatalf("jobs %v after %d attempts; want one printed after 7", jobs, f.Attempts())
	}
	jobs[0].PDF[0] = 'X' // callers get copies
	if f.Jobs()[0].PDF[0] != '%' {
		t.Error("Jobs exposes the fake's own buffer")
	}
}
