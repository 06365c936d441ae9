package issuance

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/boltrecords"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv/demoledger"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// benchService is the issuance path as the center runs it, without the
// network: the real card verifier, a records vault on a bbolt file, the
// real SMART Health Card and VDS-NC signers, and the audit log, kiosk and
// municipality registries in a boltstore on another bbolt file. With sync
// both files are opened as the center opens them (fsync on every commit),
// so the figures include the synced audit writes; without, they show the
// CPU cost alone.
func benchService(b *testing.B, sync bool) (*Service, *fixture) {
	b.Helper()
	f := newFixture(b) // keys, demo data and card helpers
	dir := b.TempDir()
	ctx := context.Background()

	opts := boltfile.Options{NoSync: !sync}
	st, err := boltstore.Open(filepath.Join(dir, "center.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.EnrollKiosk(ctx, store.Kiosk{
		ID: goodKiosk, StoreName: "ベンチ店", StoreCode: "S-" + goodKiosk, Chain: "BENCH", Prefecture: "01",
		CertSerial: "1", CertSHA256: fmt.Sprintf("%064x", 1), EnrolledAt: time.Now(),
	}); err != nil {
		b.Fatal(err)
	}
	for _, m := range f.munis.munis {
		if err := st.UpsertMunicipality(ctx, m); err != nil {
			b.Fatal(err)
		}
	}

	db, err := boltfile.Open(filepath.Join(dir, "records.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	mk := make([]byte, records.MasterKeySize)
	rand.Read(mk)
	master, err := records.NewMasterKey(mk)
	if err != nil {
		b.Fatal(err)
	}
	backend, err := boltrecords.New(db)
	if err != nil {
		b.Fatal(err)
	}
	vault, err := records.Open(ctx, backend, master, records.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, code := range []string{asahikawa, sapporo} {
		entries, err := demoledger.FromDemo(f.demo, code)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := vault.Import(ctx, code, entries, records.ImportOptions{Operator: "bench-operator", Mode: records.ModeFull}); err != nil {
			b.Fatal(err)
		}
	}

	ik, _ := f.keys.auth.IssuerKey()
	verifier, err := carddata.NewVerifier(ik)
	if err != nil {
		b.Fatal(err)
	}
	shcIssuer, err := shc.NewIssuer(testIssuerURL, f.keys.shcKey, f.keys.ridSecret)
	if err != nil {
		b.Fatal(err)
	}
	vds, err := vdsnc.NewSigner(f.keys.vdsKey, f.keys.vdsCert)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := New(Config{
		Kiosks: st, Municipalities: st, Records: vault, Register: st,
		Cards: verifier, SHC: shcIssuer, VDS: vds, FeePerCopyYen: 120,
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	return svc, f
}

func benchIssue(b *testing.B, kind certificate.Kind, want int) {
	for _, sync := range []bool{true, false} {
		name := "fsync"
		if !sync {
			name = "nosync"
		}
		b.Run(name, func(b *testing.B) {
			svc, f := benchService(b, sync)
			card := f.card(b, "hanako", nil)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, perr := svc.Issue(ctx, request(protocol.NewRequestID(), asahikawa, kind, card))
				if perr != nil {
					b.Fatal(perr)
				}
				if len(resp.Certificates) != want {
					b.Fatalf("%d certificates", len(resp.Certificates))
				}
			}
		})
	}
}

// BenchmarkIssueDomestic measures one domestic issuance: card verification
// (two RSA-2048 verifications), record lookup (HMAC, bbolt read, AES-GCM),
// build, lint, one ES256 SMART Health Card, and two register commits (claim
// with its "requested" event; finish with the "issued" event and the sealed replay).
func BenchmarkIssueDomestic(b *testing.B) { benchIssue(b, certificate.Domestic, 1) }

// BenchmarkIssueOverseas adds the overseas certificate: two SMART Health
// Cards and one VDS-NC (JCS and ES256); still two register commits.
func BenchmarkIssueOverseas(b *testing.B) { benchIssue(b, certificate.Overseas, 2) }

// BenchmarkIssueDomesticParallel runs domestic issuances from GOMAXPROCS
// goroutines, as many kiosks do: concurrent register commits share one
// synced bbolt transaction (group commit).
func BenchmarkIssueDomesticParallel(b *testing.B) {
	svc, f := benchService(b, true)
	card := f.card(b, "hanako", nil)
	ctx := context.Background()
	// Many kiosks at once, as at the center: 32 goroutines per CPU.
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, perr := svc.Issue(ctx, request(protocol.NewRequestID(), asahikawa, certificate.Domestic, card)); perr != nil {
				b.Error(perr)
				return
			}
		}
	})
}
