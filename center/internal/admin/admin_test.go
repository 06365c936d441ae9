package admin

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

var now = time.Date(2024, 4, 1, 9, 0, 0, 0, time.UTC)

var (
	trustOnce sync.Once
	trustPEM  []byte
)

// trustFile writes the trust file of a test card authority.
func trustFile(t *testing.T) string {
	t.Helper()
	trustOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		a := carddata.Authority{Signer: k}
		copy(a.KeyID[:], "ADMIN-TEST-JLIS0")
		ik, _ := a.IssuerKey()
		if trustPEM, err = carddata.MarshalIssuerKey(ik); err != nil {
			panic(err)
		}
	})
	path := filepath.Join(t.TempDir(), "trust.pem")
	if err := os.WriteFile(path, trustPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func initCenter(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := Init(context.Background(), InitOptions{Dir: filepath.Join(t.TempDir(), "center"), CardTrustFile: trustFile(t)}, now)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// local opens a stopped center's files as the CLI's -offline does.
func local(t *testing.T, cfg *config.Config) *Service {
	t.Helper()
	s, closeLocal, err := OpenLocal(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeLocal() })
	return s
}

var op = Actor{Operator: "op-tanaka", Source: "local"}

// fakeCloser records the kiosks whose connections were closed.
type fakeCloser struct {
	mu     sync.Mutex
	closed []string
}

func (f *fakeCloser) CloseKiosk(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, id)
	return 1
}

func TestInit(t *testing.T) {
	cfg := initCenter(t)
	// A demo center: its authorities' keys are files under authorities/.
	private := []string{cfg.MasterKeyFile, cfg.ServerKeyFile, cfg.OpsTokenFile, cfg.StoreFile,
		"keys/shc-rid.secret", "authorities/csca/authority.key", "authorities/kiosk-ca/authority.key", ConfigFile}
	if !cfg.Demo {
		t.Error("init without offline certificates did not make a demo center")
	}
	for _, glob := range []string{"keys/shc/*.key", "keys/vdsnc/vdsnc-*.key", "keys/kioskca/kioskca-*.key"} {
		m, _ := filepath.Glob(cfg.Path(glob))
		if len(m) != 1 {
			t.Errorf("%s: %d files, want 1", glob, len(m))
		}
		private = append(private, m...)
	}
	for _, p := range private {
		fi, err := os.Stat(cfg.Path(p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %04o", p, fi.Mode().Perm())
		}
	}
	// The written config loads and names the same files.
	loaded, err := config.Load(cfg.Path(ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Path(loaded.StoreFile) != cfg.Path(cfg.StoreFile) {
		t.Errorf("store at %s, want %s", loaded.Path(loaded.StoreFile), cfg.Path(cfg.StoreFile))
	}
	// The center certificate chains to the kiosk CA for localhost.
	cert, err := tls.LoadX509KeyPair(cfg.Path(cfg.ServerCertFile), cfg.Path(cfg.ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := kioskpki.LoadCertPool(cfg.Path(cfg.KioskCAFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost", CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("center certificate: %v", err)
	}
	// One active SMART Health Card key, one VDS-NC signer.
	s := local(t, cfg)
	if _, kid, err := s.cfg.Keys.ActiveSHC(context.Background()); err != nil || kid == "" {
		t.Errorf("active SHC key: %v", err)
	}
	if _, err := s.cfg.Keys.VDSSigner(context.Background()); err != nil {
		t.Errorf("VDS-NC signer: %v", err)
	}
}

func TestInitRefuses(t *testing.T) {
	cfg := initCenter(t)
	dir := filepath.Dir(cfg.Path(ConfigFile))
	if _, err := Init(context.Background(), InitOptions{Dir: dir, CardTrustFile: trustFile(t)}, now); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("Init over an existing center: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a key"), 0o644)
	tests := []struct {
		name string
		opts InitOptions
	}{
		{"trust file not PEM", InitOptions{CardTrustFile: bad}},
		{"trust file missing", InitOptions{CardTrustFile: filepath.Join(t.TempDir(), "missing.pem")}},
		{"issuer URL over http", InitOptions{CardTrustFile: trustFile(t), IssuerURL: "http://issuer.example"}},
		{"listener without port", InitOptions{CardTrustFile: trustFile(t), KioskListen: "localhost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Dir = filepath.Join(t.TempDir(), "center")
			if _, err := Init(context.Background(), tt.opts, now); err == nil {
				t.Fatal("Init succeeded")
			}
			if _, err := os.Stat(filepath.Join(tt.opts.Dir, ConfigFile)); err == nil {
				t.Fatal("a failed Init wrote a config")
			}
		})
	}
}

func TestKiosks(t *testing.T) {
	cfg := initCenter(t)
	s := local(t, cfg)
	closer := &fakeCloser{}
	s.cfg.Kiosks = closer
	ctx := context.Background()
	e := KioskEnrollment{ID: "K-1", StoreName: "テスト店", StoreCode: "S1", Chain: "TEST", Prefecture: "01"}
	if _, err := s.EnrollKiosk(ctx, Actor{}, e); !errors.Is(err, ErrNoOperator) {
		t.Fatalf("enroll without an operator: %v", err)
	}
	en, err := s.EnrollKiosk(ctx, op, e)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "K-1")
	if err := WriteEnrollment(out, en); err != nil {
		t.Fatal(err)
	}
	cert, err := kioskpki.LoadCert(filepath.Join(out, KioskCertFile))
	if err != nil {
		t.Fatal(err)
	}
	k := en.Kiosk
	if k.Status != store.KioskActive || k.CertSHA256 != kioskpki.Fingerprint(cert) || cert.Subject.CommonName != "K-1" {
		t.Fatalf("enrolled %+v for certificate %s", k, cert.Subject.CommonName)
	}
	if fi, err := os.Stat(filepath.Join(out, KioskKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kiosk key file: %v", err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(out, KioskCertFile), filepath.Join(out, KioskKeyFile)); err != nil {
		t.Fatalf("kiosk credentials do not pair: %v", err)
	}
	if _, err := s.EnrollKiosk(ctx, op, e); !errors.Is(err, store.ErrExists) {
		t.Fatalf("enrolled the same kiosk ID twice: %v", err)
	}
	bad := e
	bad.ID, bad.Prefecture = "K-2", "48"
	if _, err := s.EnrollKiosk(ctx, op, bad); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("enrolled with prefecture 48: %v", err)
	}

	for _, st := range []struct {
		status store.KioskStatus
		reason string
	}{{store.KioskSuspended, "maintenance"}, {store.KioskActive, ""}, {store.KioskRevoked, "stolen"}} {
		if _, err := s.SetKioskStatus(ctx, op, "K-1", st.status, st.reason); err != nil {
			t.Fatalf("%s: %v", st.status, err)
		}
	}
	if _, err := s.SetKioskStatus(ctx, op, "K-1", store.KioskActive, ""); !errors.Is(err, store.ErrTransition) {
		t.Fatalf("reactivating a revoked kiosk: %v", err)
	}
	if got := strings.Join(closer.closed, ","); got != "K-1,K-1" {
		t.Errorf("connections closed for %q, want K-1 on suspension and on revocation", got)
	}
	evs, err := s.cfg.Store.Events(ctx, store.EventQuery{KioskID: "K-1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		got = append(got, string(ev.Type)+":"+ev.Result)
		if ev.Operator != "op-tanaka" || ev.Source != "local" {
			t.Errorf("event %+v does not name the operator and source", ev)
		}
	}
	if strings.Join(got, ",") != "kiosk_enrolled:active,kiosk_status:suspended,kiosk_status:active,kiosk_status:revoked" {
		t.Fatalf("operator actions audited as %v", got)
	}
}

func TestMunicipalitiesRecordsKeysAndRevoke(t *testing.T) {
	cfg := initCenter(t)
	s := local(t, cfg)
	ctx := context.Background()
	m := store.Municipality{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City", AuthorityJa: "旭川市長", AuthorityEn: "Mayor of Asahikawa City"}
	if err := s.PutMunicipality(ctx, op, m); err != nil {
		t.Fatal(err)
	}
	if err := s.SetParticipation(ctx, op, "012041", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetParticipation(ctx, op, "011002", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("enable an unknown municipality: %v", err)
	}
	f, err := os.Open(filepath.Join("..", "records", "ledgercsv", "testdata", "ledger-012041.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := s.ImportRecords(ctx, op, "012041", ImportOptions{}, f)
	if err != nil || res.Persons == 0 {
		t.Fatalf("CSV import: %+v, %v", res, err)
	}
	counts, err := s.RecordCounts(ctx)
	if err != nil || len(counts) != 1 || counts[0].Records != res.Persons {
		t.Fatalf("counts %+v, %v", counts, err)
	}
	kid, err := s.RotateSHCKey(ctx, op)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeCertificate(ctx, op, "4M41JFDVR4JS", kid, "misprint"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeCertificate(ctx, op, "4M41JFDVR4JS", kid, "misprint"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second revocation: %v", err)
	}
	if err := s.RevokeCertificate(ctx, op, "6N6H917FGG04", "no-such-kid", "misprint"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked under an unknown key: %v", err)
	}
	n, err := s.DeleteRecords(ctx, op, "012041")
	if err != nil || n != res.Persons {
		t.Fatalf("DeleteRecords = %d, %v", n, err)
	}
	// Init's own events (the first operator and its token) are not this
	// operator's.
	evs, err := s.cfg.Store.Events(ctx, store.EventQuery{Operator: "op-tanaka", Limit: store.MaxEventLimit})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Operator != "op-tanaka" || ev.Source != "local" {
			t.Errorf("event %+v without the operator", ev)
		}
		got = append(got, string(ev.Type))
	}
	want := "municipality_set municipality_participation records_import_started records_imported key_rotated certificate_revoked records_deleted"
	if strings.Join(got, " ") != want {
		t.Fatalf("audited %q, want %q", strings.Join(got, " "), want)
	}
}

// TestOpenLocalRefusesARunningCenter: maintenance on the files of a center
// that is running is refused with a pointer to the operations API.
func TestOpenLocalRefusesARunningCenter(t *testing.T) {
	cfg := initCenter(t)
	cfg.LockTimeout.Duration = 100 * time.Millisecond
	local(t, cfg) // holds the files, as a running center does
	if _, _, err := OpenLocal(context.Background(), cfg); !errors.Is(err, ErrCenterRunning) {
		t.Fatalf("OpenLocal on a held center: %v", err)
	}
}
