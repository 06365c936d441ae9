package pgstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgtest"
	"github.com/kioskcert/kioskcert/center/internal/store/storetest"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

var (
	durableOnce sync.Once
	durable     *pgtest.Server
	durableErr  error
)

// durableServer is a private server with fsync on: commit behaviour is
// what these benchmarks measure. It stops when the test binary exits
// (parent-death signal); its directory goes with the next Start.
func durableServer(b *testing.B) *pgtest.Server {
	durableOnce.Do(func() { durable, durableErr = pgtest.Start(pgtest.Options{Durable: true}) })
	if durableErr != nil {
		b.Fatal(durableErr)
	}
	return durable
}

// BenchmarkWrites compares group commit with one transaction per call for
// the issuance path's writes, from 64 concurrent callers (a center with
// many kiosks) on a durable server:
//
//	go test -run '^$' -bench Writes -benchtime 3s ./center/internal/store/pgstore/
func BenchmarkWrites(b *testing.B) {
	for _, mode := range []struct {
		name  string
		group bool
	}{{"group", true}, {"per-call", false}} {
		b.Run("AppendEvent/"+mode.name, func(b *testing.B) {
			s := openDurable(b, mode.group)
			ev := store.Event{Time: time.Now(), Type: store.EventPrinted, KioskID: "kiosk-a", Municipality: "012041", Kind: certificate.Domestic, Copies: 1, Result: "ok"}
			b.SetParallelism(64)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.AppendEvent(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run("ClaimFinishSettle/"+mode.name, func(b *testing.B) {
			s := openDurable(b, mode.group)
			var n atomic.Int64
			at := time.Now()
			b.SetParallelism(64)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					r := storetest.NewRequest(fmt.Sprintf("req-%d", n.Add(1)), "kiosk-a", at)
					ev := store.Event{Time: at, Type: store.EventRequested, KioskID: r.KioskID, RequestID: r.ID, Municipality: r.Municipality}
					if _, err := s.ClaimRequest(ctx, r, time.Time{}, ev); err != nil {
						b.Error(err)
						return
					}
					ev.Type = store.EventIssued
					fin := store.RequestFinish{State: store.RequestIssued, CertificateIDs: []string{"AB12CD34EF56"}, Replay: make([]byte, 8<<10), At: at}
					if _, err := s.FinishRequest(ctx, r.ID, 1, fin, ev); err != nil {
						b.Error(err)
						return
					}
					ev.Type, ev.Copies = store.EventPrinted, 2
					if _, err := s.SettleRequest(ctx, r.ID, r.KioskID, "printed", at, ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func openDurable(b *testing.B, group bool) *Store {
	srv := durableServer(b)
	url := srv.NewDatabase(b)
	s, err := Open(context.Background(), url, Options{GroupCommit: &group})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
