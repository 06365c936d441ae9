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

func session(t *testing.T, cfg *config.Config) *Session {
	t.Helper()
	s, err := OpenSession(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestInit(t *testing.T) {
	cfg := initCenter(t)
	private := []string{cfg.MasterKeyFile, cfg.KioskCAKeyFile, cfg.ServerKeyFile, cfg.OpsTokenFile, cfg.StoreFile,
		"keys/shc-rid.secret", "keys/vdsnc/signer.key", "keys/vdsnc/csca.key", ConfigFile}
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
	s := session(t, cfg)
	if _, kid, err := s.Keyring().ActiveSHC(context.Background()); err != nil || kid == "" {
		t.Errorf("active SHC key: %v", err)
	}
	if _, err := s.Keyring().VDSSigner(); err != nil {
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
	s := session(t, cfg)
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "K-1")
	e := KioskEnrollment{ID: "K-1", StoreName: "テスト店", StoreCode: "S1", Chain: "TEST", Prefecture: "01", OutDir: out}
	k, err := s.EnrollKiosk(ctx, e, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kioskpki.LoadCert(filepath.Join(out, KioskCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if k.Status != store.KioskActive || k.CertSHA256 != kioskpki.Fingerprint(cert) || cert.Subject.CommonName != "K-1" {
		t.Fatalf("enrolled %+v for certificate %s", k, cert.Subject.CommonName)
	}
	if fi, err := os.Stat(filepath.Join(out, KioskKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kiosk key file: %v", err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(out, KioskCertFile), filepath.Join(out, KioskKeyFile)); err != nil {
		t.Fatalf("kiosk credentials do not pair: %v", err)
	}
	if _, err := s.EnrollKiosk(ctx, e, now); err == nil {
		t.Fatal("enrolled the same kiosk ID twice")
	}

	for _, st := range []struct {
		status store.KioskStatus
		reason string
	}{{store.KioskSuspended, "maintenance"}, {store.KioskActive, ""}, {store.KioskRevoked, "stolen"}} {
		if err := s.SetKioskStatus(ctx, "K-1", st.status, st.reason, now); err != nil {
			t.Fatalf("%s: %v", st.status, err)
		}
	}
	if err := s.SetKioskStatus(ctx, "K-1", store.KioskActive, "", now); !errors.Is(err, store.ErrTransition) {
		t.Fatalf("reactivating a revoked kiosk: %v", err)
	}
	evs, err := s.Store.Events(ctx, store.EventQuery{KioskID: "K-1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Type == store.EventKioskStatus {
			got = append(got, ev.Result)
		}
	}
	if strings.Join(got, ",") != "suspended,active,revoked" {
		t.Fatalf("status changes audited as %v", got)
	}
}

func TestDemoDataAndRevoke(t *testing.T) {
	cfg := initCenter(t)
	s := session(t, cfg)
	ctx := context.Background()
	if n, err := s.LoadDemoMunicipalities(ctx); err != nil || n != 3 {
		t.Fatalf("municipalities: %d, %v", n, err)
	}
	if n, err := s.LoadDemoRecords(ctx, "op-test"); err != nil || n == 0 {
		t.Fatalf("records: %d, %v", n, err)
	}
	res, err := s.ImportCSV(ctx, "012041", "op-test", filepath.Join("..", "records", "ledgercsv", "testdata", "ledger-012041.csv"))
	if err != nil || res.Persons == 0 {
		t.Fatalf("CSV import: %+v, %v", res, err)
	}
	_, kid, err := s.Keyring().ActiveSHC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, "4M41JFDVR4JS", kid, "misprint", now); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, "4M41JFDVR4JS", kid, "misprint", now); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Fatalf("second revocation: %v", err)
	}
	if err := s.Revoke(ctx, "6N6H917FGG04", "no-such-kid", "misprint", now); err == nil {
		t.Fatal("revoked under an unknown key")
	}
}
