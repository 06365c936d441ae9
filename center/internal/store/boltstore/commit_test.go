package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
)

// TestCommitterGroupsAndIsolatesFailures: concurrent writes share
// transactions (fewer commits than writes), every write is committed and
// answered, and one failing write fails alone.
func TestCommitterGroupsAndIsolatesFailures(t *testing.T) {
	db, err := boltfile.Open(filepath.Join(t.TempDir(), "c.db"), boltfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	c := newCommitter(db)
	const n = 200
	boom := errors.New("refused")
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.do(func(tx *bolt.Tx) error {
				if i == 17 {
					return boom
				}
				return tx.Bucket([]byte("b")).Put([]byte(fmt.Sprint(i)), []byte("v"))
			})
			switch {
			case i == 17 && errors.Is(err, boom):
				failures.Add(1)
			case err != nil:
				t.Errorf("write %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if failures.Load() != 1 {
		t.Fatal("the failing write was not answered with its own error")
	}
	var keys int
	db.View(func(tx *bolt.Tx) error { keys = tx.Bucket([]byte("b")).Stats().KeyN; return nil })
	if keys != n-1 {
		t.Fatalf("%d writes committed, want %d", keys, n-1)
	}
	commits := c.commits.Load()
	t.Logf("%d writes in %d transactions", n, commits)
	if commits >= n {
		t.Errorf("%d transactions for %d concurrent writes: nothing was grouped", commits, n)
	}
	c.close()
	if err := c.do(func(*bolt.Tx) error { return nil }); !errors.Is(err, errCommitterClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestMigratesNestedRequestIndex: a file written before the flat request
// index (one nested bucket per request) is migrated at open.
func TestMigratesNestedRequestIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	s, err := Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ev := store.Event{Time: time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC), Type: store.EventRequested, KioskID: "K1", RequestID: "req-old"}
	if _, err := s.AppendEvent(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if err := s.indexPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Rewrite the index the old way.
	err = s.db.Update(func(tx *bolt.Tx) error {
		flat := tx.Bucket(bucketAuditByReq)
		k, _ := flat.Cursor().First()
		auditKey := bytes.Clone(k[len("req-old")+1:])
		if err := flat.Delete(k); err != nil {
			return err
		}
		old, err := tx.CreateBucket(bucketAuditByReqOld)
		if err != nil {
			return err
		}
		nested, err := old.CreateBucket([]byte("req-old"))
		if err != nil {
			return err
		}
		return nested.Put(auditKey, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs, err := s.Events(context.Background(), store.EventQuery{RequestID: "req-old"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("events of the migrated request: %v, %v", evs, err)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketAuditByReqOld) != nil {
			t.Error("the nested index survived the migration")
		}
		return nil
	})
}
