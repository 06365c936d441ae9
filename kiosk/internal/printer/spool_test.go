package printer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSpool(t *testing.T) {
	dir := t.TempDir()
	s, err := NewSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if st, err := s.Status(ctx); err != nil || st.State != StateReady {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	pdf := []byte("%PDF-1.7\nfirst\n")
	if err := s.Print(ctx, Job{Name: "req-1", PDF: pdf, Copies: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Print(ctx, Job{Name: "req-2", PDF: pdf, Copies: 3}); err != nil {
		t.Fatal(err)
	}
	// A colliding name must not replace the first certificate.
	err = s.Print(ctx, Job{Name: "req-1", PDF: []byte("%PDF-1.7\nsecond\n"), Copies: 1})
	if !errors.Is(err, ErrJobExists) {
		t.Fatalf("duplicate job: %v, want ErrJobExists", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b, pdf) {
			t.Errorf("%s: content %q, want the first PDF", e.Name(), b)
		}
	}
	want := []string{"req-1.pdf", "req-2.2.pdf", "req-2.3.pdf", "req-2.pdf"}
	if !slices.Equal(names, want) { // no temporary files left either
		t.Errorf("spool holds %v, want %v", names, want)
	}
}

func TestSpoolFailures(t *testing.T) {
	if _, err := NewSpool(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("NewSpool accepted a missing directory")
	}
	dir := t.TempDir()
	s, err := NewSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Print(context.Background(), Job{Name: "試験", PDF: []byte("%PDF-"), Copies: 1}); !errors.Is(err, ErrInvalidJob) {
		t.Errorf("personal job name: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Print(ctx, Job{Name: "req-1", PDF: []byte("%PDF-"), Copies: 1}); !errors.Is(err, ErrPrinterOffline) && !errors.Is(err, ErrPrintTimeout) {
		t.Errorf("canceled context: %v", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(context.Background())
	if err != nil || st.State != StateOffline {
		t.Errorf("missing directory: %+v, %v; want offline", st, err)
	}
	if err := s.Print(context.Background(), Job{Name: "req-2", PDF: []byte("%PDF-"), Copies: 1}); !errors.Is(err, ErrPrinterOffline) {
		t.Errorf("Print to a missing directory: %v, want ErrPrinterOffline", err)
	}
}
