package boltstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/storetest"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// A database written before the console's indexes existed gets them built
// when it is first opened for writing.
func TestConsoleIndexesBuiltForOldDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "center.db")
	s, err := Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	k := storetest.NewKiosk("old")
	if err := s.EnrollKiosk(ctx, k); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 5, 1, 3, 0, 0, 0, time.UTC)
	if _, err := s.AppendEvent(ctx, store.Event{Time: at, Type: store.EventPrinted, KioskID: k.ID, Municipality: "012041",
		Kind: certificate.Domestic, Copies: 2, CertificateID: "OLDCERT00001", Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	// Make it an old database: drop the console's buckets.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range consoleBuckets {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs, err := s.Events(ctx, store.EventQuery{CertificateID: "OLDCERT00001"})
	if err != nil || len(evs) != 1 {
		t.Errorf("Events by certificate after the upgrade = %v, %v; want the old event", evs, err)
	}
	counts, err := s.SettlementCounts(ctx, store.SettlementQuery{FirstDay: "2024-05-01", LastDay: "2024-05-31", Monthly: true})
	if err != nil || len(counts) != 1 || counts[0].Chain != k.Chain || counts[0].Issuances != 1 || counts[0].Copies != 2 {
		t.Errorf("SettlementCounts after the upgrade = %+v, %v", counts, err)
	}
	page, err := s.QueryKiosks(ctx, store.KioskQuery{Chain: k.Chain})
	if err != nil || page.Total != 1 {
		t.Errorf("QueryKiosks after the upgrade = %+v, %v", page, err)
	}
}
