package console

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// Scale of the page benchmark (docs/BENCHMARKS.md): the kiosks of every
// store location, a year of settlement for every municipality.
const (
	benchKiosks         = 60000
	benchMunicipalities = 1700
	benchDays           = 365
	// benchPerDay printed issuances per municipality and day: 1,700 × 365
	// ≈ 620,000 events in the year.
	benchPerDay = 1
)

type noLive struct{}

func (noLive) Live() []server.KioskLive                  { return nil }
func (noLive) KioskLive(string) (server.KioskLive, bool) { return server.KioskLive{}, false }
func (noLive) InFlight() int                             { return 0 }

// seedCenter makes a center whose store holds benchKiosks kiosks,
// benchMunicipalities municipalities and a year of printed issuances,
// written through the store's interface (its indexes and counters
// included). It takes a few minutes.
func seedCenter(b *testing.B) (*admin.Service, func() error, time.Time) {
	ctx := context.Background()
	start := time.Date(2024, 4, 1, 9, 0, 0, 0, jst)
	lastDay := start.AddDate(0, 0, benchDays-1)
	// The seeded center is kept in out/bench/console (minutes to make);
	// delete it to seed again.
	dir := filepath.Join(moduleRoot(b), "out", "bench", "console")
	if _, err := os.Stat(filepath.Join(dir, "seeded")); err == nil {
		cfg, err := config.Load(filepath.Join(dir, "center", "center.json"))
		if err != nil {
			b.Fatal(err)
		}
		svc, closeFn, err := admin.OpenLocal(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		return svc, closeFn, lastDay
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	a := carddata.Authority{Signer: k}
	ik, _ := a.IssuerKey()
	trust, _ := carddata.MarshalIssuerKey(ik)
	os.WriteFile(filepath.Join(dir, "trust.pem"), trust, 0o644)
	cfg, err := admin.Init(ctx, admin.InitOptions{Dir: filepath.Join(dir, "center"), CardTrustFile: filepath.Join(dir, "trust.pem")}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	svc, closeFn, err := admin.OpenLocal(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	st := svc.Store()
	if bs, ok := st.(*boltstore.Store); ok {
		bs.SetNoSync(true) // seeding only; the pages read
	}
	chains := []string{"SEVEN", "FAMIMA", "LAWSON", "MINISTOP", "SEICOMART"}
	work := func(n int, f func(i int) error) {
		var wg sync.WaitGroup
		ch := make(chan int, 1024)
		for range 128 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range ch {
					if err := f(i); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for i := range n {
			ch <- i
		}
		close(ch)
		wg.Wait()
	}
	enrolled := time.Date(2024, 3, 1, 0, 0, 0, 0, jst)
	work(benchKiosks, func(i int) error {
		return st.EnrollKiosk(ctx, store.Kiosk{ID: fmt.Sprintf("K-%06d", i), StoreName: "店舗", StoreCode: fmt.Sprintf("S%06d", i),
			Chain: chains[i%len(chains)], Prefecture: fmt.Sprintf("%02d", i%47+1), Region: "r", CertSerial: fmt.Sprintf("%x", i+1),
			CertSHA256: fmt.Sprintf("%064x", i+1), EnrolledAt: enrolled})
	})
	for i := 0; i < benchKiosks; i += 97 {
		st.SetKioskStatus(ctx, fmt.Sprintf("K-%06d", i), store.KioskSuspended, "inspection", enrolled.Add(time.Hour))
	}
	codes := make([]string, benchMunicipalities)
	for i := range codes {
		first5 := fmt.Sprintf("%02d%03d", i%47+1, i/47+1)
		d, _ := lgcode.CheckDigit(first5)
		codes[i] = first5 + string(d)
		if err := st.UpsertMunicipality(ctx, store.Municipality{Code: codes[i], NameJa: "市" + codes[i], NameEn: "City " + codes[i],
			AuthorityJa: "市長", AuthorityEn: "Mayor", Participating: true}); err != nil {
			b.Fatal(err)
		}
	}
	work(benchMunicipalities*benchDays*benchPerDay, func(i int) error {
		m := i % benchMunicipalities
		day := i / (benchMunicipalities * benchPerDay)
		kind := certificate.Domestic
		if i%7 == 0 {
			kind = certificate.Overseas
		}
		_, err := st.AppendEvent(ctx, store.Event{Time: start.AddDate(0, 0, day).Add(time.Duration(i%600) * time.Minute),
			Type: store.EventPrinted, KioskID: fmt.Sprintf("K-%06d", (i*7919)%benchKiosks), StoreCode: "S", Municipality: codes[m],
			Kind: kind, Copies: i%3 + 1, CertificateID: fmt.Sprintf("C%011d", i), RequestID: fmt.Sprintf("r%d", i), Result: "ok"})
		return err
	})
	if err := os.WriteFile(filepath.Join(dir, "seeded"), nil, 0o600); err != nil {
		b.Fatal(err)
	}
	return svc, closeFn, lastDay
}

func moduleRoot(b *testing.B) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		b.Fatalf("cannot find the module root: %v", err)
	}
	return filepath.Dir(mod)
}

// BenchmarkPages times each console page on the seeded center, as
// the operator's browser asks for it (handler, session check, store
// queries, template), and reports ms per page.
func BenchmarkPages(b *testing.B) {
	if testing.Short() {
		b.Skip("seeds a year of settlement; not in -short")
	}
	svc, closeFn, lastDay := seedCenter(b)
	defer closeFn()
	st := svc.Store()
	c, err := New(Config{Store: st, Admin: svc, Auth: &opauth.Authenticator{Store: st}, Live: noLive{},
		FeePerCopyYen: 120, Kinds: []string{"domestic", "overseas"}, Now: func() time.Time { return lastDay.Add(10 * time.Hour) },
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := st.Operator(ctx, "op-bench"); !errors.Is(err, store.ErrNotFound) {
		// Made by an earlier run on the kept center.
	} else if err := st.CreateOperator(ctx, store.Operator{ID: "op-bench", Role: store.RoleAdministrator, PasswordHash: "$argon2id$v=19$m=1,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		TOTPSecret: []byte{1}, Created: lastDay}); err != nil {
		b.Fatal(err)
	}
	cookie := "bench-session"
	now := lastDay.Add(10 * time.Hour)
	c.sessions.m[sessionKey(cookie)] = &session{operator: "op-bench", csrf: "x", created: now, lastSeen: now}
	month := lastDay.Format("2006-01")
	pages := []struct{ name, path string }{
		{"kiosks", "/kiosks"},
		{"kiosks_by_chain", "/kiosks?chain=LAWSON&after=K-030000"},
		{"kiosks_suspended", "/kiosks?status=suspended"},
		{"kiosk", "/kiosks/K-012345"},
		{"municipalities", "/municipalities"},
		{"audit_latest", "/audit"},
		{"audit_by_municipality", "/audit?municipality=" + "011002"},
		{"audit_by_certificate", "/audit?certificate=C00000123456"},
		{"settlement_month", "/settlement?month=" + month},
		{"settlement_day", "/settlement?day=" + lastDay.Format(time.DateOnly)},
		{"settlement_report_chain", "/settlement/report?month=" + month + "&chain=SEVEN"},
		{"settlement_csv_month", "/settlement.csv?month=" + month},
		{"keys", "/keys"},
	}
	h := c.Handler()
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, p.path, nil)
				req.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", p.path, rec.Code, rec.Body.String())
				}
				io.Copy(io.Discard, rec.Body)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/page")
		})
	}
}
