package boltrecords

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/recordstest"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
)

func openDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := boltfile.Open(filepath.Join(t.TempDir(), "records.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	recordstest.Run(t, func(t *testing.T) records.Backend {
		b, err := New(openDB(t))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// With tiny batches every build, merge and drop crosses transaction
// boundaries many times.
func TestConformanceSmallBatches(t *testing.T) {
	recordstest.Run(t, func(t *testing.T) records.Backend {
		b, err := New(openDB(t))
		if err != nil {
			t.Fatal(err)
		}
		b.SetBatch(2)
		return b
	})
}

// A file of the first records format is refused with what to do, not
// misread.
func TestRefusesFormat1(t *testing.T) {
	db := openDB(t)
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucketKeysV1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_, err := New(db)
	if err == nil || !strings.Contains(err.Error(), "re-import") {
		t.Fatalf("New on a format-1 file: %v", err)
	}
}

// Run blocks are well-formed or refused: a damaged block fails the
// finish instead of building a wrong generation.
func TestDamagedRunBlock(t *testing.T) {
	db := openDB(t)
	b, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g, err := b.BeginStaging(ctx, "012041", testBase)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.StageRun(ctx, g, records.RunRecords, []records.Staged{{Key: []byte{1, 2}, Value: []byte("v"), Ref: 1}}, testBase); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRuns).Bucket(genKey(g))
		k, _ := rb.Cursor().First()
		return rb.Bucket(k).Put(blockKey(0), []byte{0x7f, 1})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FinishStaging(ctx, g, records.Finish{Build: true}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("FinishStaging over a damaged block: %v", err)
	}
	if err := b.Drop(ctx, g); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FinishStaging(ctx, g, records.Finish{}); !errors.Is(err, records.ErrStaging) {
		t.Fatalf("FinishStaging after Drop: %v", err)
	}
}

var testBase = time.Date(2024, 4, 1, 9, 30, 0, 0, time.UTC)
