package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/kiosk/internal/centerclient"
	"github.com/kioskcert/kioskcert/kiosk/internal/clocktest"
	"github.com/kioskcert/kioskcert/kiosk/internal/identity"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// renewCenter is a center for the renewal loop's tests: mutual TLS with a
// test CA, a websocket that says hello, answers pings, and answers renew
// by certifying the CSR (or with the refusal set). It records the client
// certificate of every connection and every renewal.
type renewCenter struct {
	t      *testing.T
	caKey  *ecdsa.PrivateKey
	ca     *x509.Certificate
	pool   *x509.CertPool
	srv    *httptest.Server
	refuse protocol.Code

	mu       sync.Mutex
	serials  []string // client certificate serial per connection
	renewals int
}

func newRenewCenter(t *testing.T, refuse protocol.Code) *renewCenter {
	rc := &renewCenter{t: t, refuse: refuse}
	var err error
	if rc.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "renew test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rc.caKey.PublicKey, rc.caKey)
	if err != nil {
		t.Fatal(err)
	}
	rc.ca, _ = x509.ParseCertificate(der)
	rc.pool = x509.NewCertPool()
	rc.pool.AddCert(rc.ca)
	serverKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serverDER := rc.issue("127.0.0.1", &serverKey.PublicKey, time.Hour, x509.ExtKeyUsageServerAuth)
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: rc.pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}}}
	rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	rc.srv.StartTLS()
	t.Cleanup(rc.srv.Close)
	return rc
}

// issue certifies pub as cn for validity, with the test CA.
func (rc *renewCenter) issue(cn string, pub crypto.PublicKey, validity time.Duration, usage x509.ExtKeyUsage) []byte {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = append(tmpl.IPAddresses, []byte{127, 0, 0, 1})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rc.ca, pub, rc.caKey)
	if err != nil {
		rc.t.Error(err)
	}
	return der
}

func (rc *renewCenter) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	rc.mu.Lock()
	rc.serials = append(rc.serials, r.TLS.PeerCertificates[0].SerialNumber.Text(16))
	rc.mu.Unlock()
	send := func(m protocol.Message) {
		b, _ := protocol.Encode(m)
		ws.WriteMessage(websocket.TextMessage, b)
	}
	send(protocol.Hello{ProtocolVersion: 1, KioskID: "K-RENEW", Time: time.Now().Format(time.RFC3339),
		Municipalities: []protocol.Municipality{{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City"}},
		FeePerCopyYen:  120, Kinds: []string{"domestic"}, MaxCopies: 5, HeartbeatSeconds: 15})
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		m, err := protocol.Decode(b, protocol.MaxKioskFrame)
		if err != nil {
			rc.t.Errorf("undecodable frame from the kiosk: %v", err)
			continue
		}
		switch m := m.(type) {
		case protocol.Ping:
			send(protocol.Pong(m))
		case protocol.Renew:
			rc.mu.Lock()
			rc.renewals++
			rc.mu.Unlock()
			if rc.refuse != "" {
				send(protocol.NewError(m.RequestID, rc.refuse, ""))
				continue
			}
			csr, err := x509.ParseCertificateRequest(m.CSR)
			if err != nil || csr.CheckSignature() != nil {
				send(protocol.NewError(m.RequestID, protocol.CodeBadMessage, ""))
				continue
			}
			der := rc.issue(csr.Subject.CommonName, csr.PublicKey, 30*24*time.Hour, x509.ExtKeyUsageClientAuth)
			chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.ca.Raw})...)
			send(protocol.Renewed{RequestID: m.RequestID, Chain: string(chain)})
		}
	}
}

func (rc *renewCenter) state() ([]string, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.serials...), rc.renewals
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}

// TestKeepRenewed drives the agent's renewal loop with a clock moved
// forward: nothing before the certificate is due; once due, one renewal
// over the connection, the new certificate stored (the old one kept as
// .previous) and presented on the next connection, no second renewal at
// that reconnection, and another at the next hourly check; a refusal
// leaves the certificate and the connection as they were.
func TestKeepRenewed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		refuse protocol.Code
	}{
		{name: "renewed"},
		{name: "refused", refuse: protocol.CodeKioskNotAllowed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rc := newRenewCenter(t, tt.refuse)
			dir := t.TempDir()
			key, err := identity.CreateFileKey(filepath.Join(dir, "kiosk.key"))
			if err != nil {
				t.Fatal(err)
			}
			certFile := filepath.Join(dir, "kiosk.pem")
			first := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.issue("K-RENEW", key.Public(), 30*24*time.Hour, x509.ExtKeyUsageClientAuth)})
			if err := os.WriteFile(certFile, first, 0o644); err != nil {
				t.Fatal(err)
			}
			id, err := identity.Load(certFile, key)
			if err != nil {
				t.Fatal(err)
			}
			clock := &clocktest.Clock{}
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			a := &Agent{Identity: id, clock: clock, renewEvery: time.Hour, log: logger,
				Client: centerclient.New(centerclient.Config{URL: "wss://" + rc.srv.Listener.Addr().String() + "/v1/kiosk",
					TLS:        &tls.Config{MinVersion: tls.VersionTLS13, GetClientCertificate: id.GetClientCertificate, RootCAs: rc.pool, ServerName: "127.0.0.1"},
					MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Log: logger})}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); a.Client.Run(ctx) }()
			go func() { defer wg.Done(); a.keepRenewed(ctx) }()
			defer func() { cancel(); wg.Wait() }()
			waitUntil(t, "first connection", a.Client.Connected)

			time.Sleep(100 * time.Millisecond)
			if _, n := rc.state(); n != 0 {
				t.Fatalf("%d renewals of a certificate that is not due", n)
			}
			old := id.Leaf()
			clock.Advance(time.Until(old.NotAfter.Add(-24 * time.Hour)))
			waitUntil(t, "renewal", func() bool { _, n := rc.state(); return n == 1 })

			if tt.refuse != "" {
				time.Sleep(200 * time.Millisecond)
				if b, _ := os.ReadFile(certFile); !bytes.Equal(b, first) || id.Leaf() != old {
					t.Fatal("a refused renewal changed the certificate")
				}
				if _, err := os.Stat(certFile + ".previous"); err == nil {
					t.Fatal("a refused renewal wrote .previous")
				}
				if s, _ := rc.state(); len(s) != 1 {
					t.Fatalf("%d connections after a refusal, want 1", len(s))
				}
			} else {
				waitUntil(t, "reconnection with the new certificate", func() bool {
					s, _ := rc.state()
					return len(s) == 2 && a.Client.Connected()
				})
				serials, _ := rc.state()
				next := id.Leaf()
				if serials[0] != old.SerialNumber.Text(16) || serials[1] != next.SerialNumber.Text(16) || serials[0] == serials[1] {
					t.Fatalf("connections presented %v; old %s, new %s", serials, old.SerialNumber.Text(16), next.SerialNumber.Text(16))
				}
				if prev, _ := os.ReadFile(certFile + ".previous"); !bytes.Equal(prev, first) {
					t.Fatal("the old certificate is not kept as .previous")
				}
				// By this clock the fresh certificate is due too (the
				// center's clock is a month behind): no renewal at every
				// connection.
				time.Sleep(200 * time.Millisecond)
				if _, n := rc.state(); n != 1 {
					t.Fatalf("%d renewals right after renewing, want 1", n)
				}
			}
			// The next hourly check asks again.
			clock.Advance(time.Hour + time.Minute)
			waitUntil(t, "renewal at the next hourly check", func() bool { _, n := rc.state(); return n == 2 })
		})
	}
}
