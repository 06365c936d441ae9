package kioskpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var now = time.Date(2024, 4, 1, 9, 0, 0, 0, time.UTC)

func mustCA(t *testing.T, name string, at time.Time) *CA {
	t.Helper()
	ca, err := NewCA(name, at)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCertificateProfiles(t *testing.T) {
	ca := mustCA(t, "test kiosk CA", now)
	if !ca.Cert.IsCA || !ca.Cert.MaxPathLenZero || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatalf("CA certificate: IsCA=%v MaxPathLenZero=%v usage=%v", ca.Cert.IsCA, ca.Cert.MaxPathLenZero, ca.Cert.KeyUsage)
	}
	key := mustKey(t)
	kiosk, err := ca.IssueKiosk("K-0001", &key.PublicKey, now)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.IssueServer([]string{"center.example.jp", "127.0.0.1", "::1"}, &key.PublicKey, now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		cert     *x509.Certificate
		eku      x509.ExtKeyUsage
		otherEKU x509.ExtKeyUsage
		validity time.Duration
	}{
		{"kiosk", kiosk, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth, KioskValidity},
		{"center", server, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, ServerValidity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cert
			if !slices.Contains(c.ExtKeyUsage, tt.eku) {
				t.Errorf("extended key usage %v lacks %v", c.ExtKeyUsage, tt.eku)
			}
			// A kiosk certificate must not serve as the center, nor the reverse.
			if slices.Contains(c.ExtKeyUsage, tt.otherEKU) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
				t.Errorf("extended key usage %v allows %v", c.ExtKeyUsage, tt.otherEKU)
			}
			if c.IsCA || c.KeyUsage&x509.KeyUsageCertSign != 0 {
				t.Error("leaf certificate can sign certificates")
			}
			if err := c.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("not signed by the CA: %v", err)
			}
			if got := c.NotAfter.Sub(now); got != tt.validity {
				t.Errorf("valid for %v after issue, want %v", got, tt.validity)
			}
			if !c.NotBefore.Before(now) {
				t.Error("not valid at issue time (clock skew margin missing)")
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 64 {
				t.Errorf("serial %v is not a large positive random number", c.SerialNumber)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca.Cert)
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{tt.eku}}); err != nil {
				t.Errorf("does not verify for its use: %v", err)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{tt.otherEKU}}); err == nil {
				t.Error("verifies for the other use")
			}
		})
	}
	if kiosk.Subject.CommonName != "K-0001" {
		t.Errorf("kiosk CN %q", kiosk.Subject.CommonName)
	}
	if len(server.IPAddresses) != 2 || !slices.Equal(server.DNSNames, []string{"center.example.jp"}) {
		t.Errorf("server names %v %v", server.DNSNames, server.IPAddresses)
	}
	if _, err := ca.IssueKiosk("", &key.PublicKey, now); err == nil {
		t.Error("issued a kiosk certificate without an ID")
	}
	if a, b := kiosk.SerialNumber, server.SerialNumber; a.Cmp(b) == 0 {
		t.Error("two certificates share a serial number")
	}
}

func TestFingerprintAndFiles(t *testing.T) {
	ca := mustCA(t, "test kiosk CA", now)
	sum := sha256.Sum256(ca.Cert.Raw)
	if got := Fingerprint(ca.Cert); got != hex.EncodeToString(sum[:]) || strings.ToLower(got) != got {
		t.Fatalf("Fingerprint = %s", got)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, EncodeCert(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCert(path)
	if err != nil || !got.Equal(ca.Cert) {
		t.Fatalf("LoadCert round trip: %v", err)
	}
	if _, err := LoadCertPool(path); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not PEM"), 0o644)
	for _, p := range []string{bad, filepath.Join(dir, "missing.pem")} {
		if _, err := LoadCert(p); err == nil || !strings.HasPrefix(err.Error(), "kioskpki: ") {
			t.Errorf("LoadCert(%s): %v", filepath.Base(p), err)
		}
		if _, err := LoadCertPool(p); err == nil || !strings.HasPrefix(err.Error(), "kioskpki: ") {
			t.Errorf("LoadCertPool(%s): %v", filepath.Base(p), err)
		}
	}
}

// checkerCalls records what the handshake asked the kiosk registry.
type checkerCalls struct {
	mu    sync.Mutex
	calls []string
	deny  map[string]bool
}

func (c *checkerCalls) check(kioskID, fingerprint string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, kioskID+" "+fingerprint)
	if c.deny[kioskID] {
		return errors.New("kiosk suspended")
	}
	return nil
}

func (c *checkerCalls) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

type pki struct {
	ca         *CA
	serverCert tls.Certificate
	pool       *x509.CertPool
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	p := &pki{ca: mustCA(t, name, time.Now()), pool: x509.NewCertPool()}
	p.pool.AddCert(p.ca.Cert)
	key := mustKey(t)
	cert, err := p.ca.IssueServer([]string{"127.0.0.1"}, &key.PublicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.serverCert = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
	return p
}

func (p *pki) kiosk(t *testing.T, id string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key := mustKey(t)
	cert, err := p.ca.IssueKiosk(id, &key.PublicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}, cert
}

// handshake runs one TLS handshake over loopback and returns the client's
// and the server's errors.
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 client authentication completes when the server reads.
			buf := make([]byte, 1)
			_, err = tc.Read(buf)
		}
		done <- err
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, client)
	clientErr = tc.Handshake()
	if clientErr == nil {
		_, clientErr = tc.Write([]byte{1})
		if clientErr == nil {
			// A refused client certificate surfaces on the client's next read.
			buf := make([]byte, 1)
			tc.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := tc.Read(buf); err != nil && !isTimeout(err) && !errors.Is(err, io.EOF) {
				clientErr = err
			}
		}
	}
	return clientErr, <-done
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestServerTLS(t *testing.T) {
	center := newPKI(t, "kiosk CA")
	other := newPKI(t, "another CA")
	good, goodCert := center.kiosk(t, "K-GOOD")
	suspended, _ := center.kiosk(t, "K-SUSP")
	foreign, _ := other.kiosk(t, "K-GOOD") // same kiosk ID, another CA

	tests := []struct {
		name      string
		cert      *tls.Certificate
		ok        bool
		wantCheck bool // the registry is asked
	}{
		{"enrolled kiosk", &good, true, true},
		{"kiosk the registry refuses", &suspended, false, true},
		{"certificate from another CA", &foreign, false, false},
		{"no client certificate", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := &checkerCalls{deny: map[string]bool{"K-SUSP": true}}
			server := ServerTLS(center.serverCert, center.ca.Cert, calls.check)
			client := ClientTLS(tls.Certificate{}, center.pool, "127.0.0.1")
			if tt.cert != nil {
				client.Certificates = []tls.Certificate{*tt.cert}
			} else {
				client.Certificates = nil
			}
			_, serverErr := handshake(t, server, client)
			if (serverErr == nil) != tt.ok {
				t.Fatalf("server handshake: %v, want ok=%v", serverErr, tt.ok)
			}
			got := calls.all()
			if (len(got) > 0) != tt.wantCheck {
				t.Fatalf("registry calls %v, want called=%v", got, tt.wantCheck)
			}
		})
	}
	// The checker gets the certificate's subject and fingerprint.
	calls := &checkerCalls{}
	client := ClientTLS(good, center.pool, "127.0.0.1")
	if _, err := handshake(t, ServerTLS(center.serverCert, center.ca.Cert, calls.check), client); err != nil {
		t.Fatal(err)
	}
	if got := calls.all(); len(got) != 1 || got[0] != "K-GOOD "+Fingerprint(goodCert) {
		t.Fatalf("checker called with %v", got)
	}
}

func TestTLSVersionAndPinning(t *testing.T) {
	center := newPKI(t, "kiosk CA")
	impostor := newPKI(t, "impostor CA")
	good, _ := center.kiosk(t, "K-GOOD")
	allow := func(string, string) error { return nil }

	// The kiosk pins the kiosk CA: a center certificate from another CA fails.
	if clientErr, _ := handshake(t, ServerTLS(impostor.serverCert, center.ca.Cert, allow), ClientTLS(good, center.pool, "127.0.0.1")); clientErr == nil {
		t.Fatal("kiosk accepted a center certificate from another CA")
	}
	// TLS 1.2 is refused.
	old := ClientTLS(good, center.pool, "127.0.0.1")
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if _, serverErr := handshake(t, ServerTLS(center.serverCert, center.ca.Cert, allow), old); serverErr == nil {
		t.Fatal("center accepted TLS 1.2")
	}
	cfg := ServerTLS(center.serverCert, center.ca.Cert, allow)
	if cfg.MinVersion != tls.VersionTLS13 || cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("server TLS: min %x, client auth %v", cfg.MinVersion, cfg.ClientAuth)
	}
}
