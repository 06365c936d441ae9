package boltstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// BenchmarkIssuanceCommits runs the store's three writes of one domestic
// issuance (claim with "requested", finish with "issued" and a 3 KB
// replay, settle with "printed") from 64 concurrent callers spread over
// 3,000 kiosks, after 20,000 issuances already in the file, and reports
// the bbolt pages written per issuance: the commit loop's cost is per
// dirty page (docs/BENCHMARKS.md). Without fsync, so the figure is the
// CPU and page traffic, not the disk.
func BenchmarkIssuanceCommits(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	replay := make([]byte, 3000)
	rand.Read(replay)
	var seq atomic.Uint64
	run := func(n int) {
		var wg sync.WaitGroup
		for g := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < n; i += 64 {
					if err := benchIssue(ctx, s, fmt.Sprintf("K-%05d", i%3000), seq.Add(1), replay); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	run(20000)
	before := s.db.Stats()
	b.ResetTimer()
	run(b.N)
	b.StopTimer()
	after := s.db.Stats()
	d := after.Sub(&before)
	b.ReportMetric(float64(d.TxStats.GetWrite())/float64(b.N), "pages/op")
	b.ReportMetric(float64(d.TxStats.GetSpill())/float64(b.N), "spills/op")
}

// benchIssue stores one issuance with random request and certificate IDs,
// as kiosks and the issuer draw them.
func benchIssue(ctx context.Context, s *Store, kiosk string, n uint64, replay []byte) error {
	var r [16]byte
	rand.Read(r[:8])
	binary.BigEndian.PutUint64(r[8:], n)
	id := fmt.Sprintf("%x", r)
	cert := fmt.Sprintf("C%011X", binary.BigEndian.Uint64(r[:8])>>20)
	now := time.Now()
	ev := store.Event{Time: now, Type: store.EventRequested, KioskID: kiosk, StoreCode: "S1", RequestID: id,
		Municipality: "131016", Kind: certificate.Domestic, Copies: 1, Result: "ok"}
	got, err := s.ClaimRequest(ctx, store.Request{ID: id, KioskID: kiosk, Fingerprint: fmt.Sprintf("%064x", n),
		Municipality: "131016", Kind: certificate.Domestic, Copies: 1, ClaimedAt: now}, now.Add(-time.Minute), ev)
	if err != nil {
		return err
	}
	ev.Type, ev.CertificateID = store.EventIssued, cert
	if _, err := s.FinishRequest(ctx, id, got.Attempt, store.RequestFinish{State: store.RequestIssued,
		CertificateIDs: []string{cert}, Replay: replay, At: now}, ev); err != nil {
		return err
	}
	ev.Type, ev.Result = store.EventPrinted, "printed"
	_, err = s.SettleRequest(ctx, id, kiosk, "printed", now, ev)
	return err
}
