package boltstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/storetest"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

// The data outlives the process: close and reopen.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "center.db")
	s, err := Open(path, boltfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnrollKiosk(ctx, storetest.NewKiosk("r")); err != nil {
		t.Fatal(err)
	}
	e, err := s.AppendEvent(ctx, store.Event{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Type: store.EventPrinted, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, boltfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Kiosk(ctx, "kiosk-r"); err != nil {
		t.Errorf("kiosk after reopen: %v", err)
	}
	e2, err := s.AppendEvent(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if e2.Seq <= e.Seq {
		t.Errorf("sequence restarted after reopen: %d after %d", e2.Seq, e.Seq)
	}
}

// A second center on the same file fails fast with a clear error.
func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "center.db")
	s, err := Open(path, boltfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path, boltfile.Options{Timeout: 20 * time.Millisecond})
	if !errors.Is(err, boltfile.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

// New on a shared database leaves it open on Close; read-only opens work
// once the buckets exist and fail clearly before.
func TestSharedAndReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	db, err := boltfile.Open(path, boltfile.Options{ReadOnly: false})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	ro, err := boltfile.Open(path, boltfile.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ro); err == nil {
		t.Error("New on a read-only database without buckets succeeded")
	}
	ro.Close()

	db, err = boltfile.Open(path, boltfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnrollKiosk(ctx, storetest.NewKiosk("s")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The shared database is still usable by its owner.
	if err := db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKiosks) == nil {
			return errors.New("kiosk bucket missing")
		}
		return nil
	}); err != nil {
		t.Fatalf("shared database after store Close: %v", err)
	}
	db.Close()

	ro, err = boltfile.Open(path, boltfile.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rs, err := New(ro)
	if err != nil {
		t.Fatalf("New read-only: %v", err)
	}
	if _, err := rs.Kiosk(ctx, "kiosk-s"); err != nil {
		t.Errorf("Kiosk via read-only store: %v", err)
	}
}
