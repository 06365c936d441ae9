package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/enrollment"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// renewHarness is the server harness with the real enrollment service as
// its Renewer, certifying with the harness's kiosk CA.
func renewHarness(t *testing.T) *harness {
	t.Helper()
	var h *harness
	h = newHarness(t, func(c *Config) {
		c.Renewer = renewerFunc(func(ctx context.Context, id string, csr []byte) ([]byte, error) {
			svc, err := enrollment.New(enrollment.Config{
				Store:     h.st,
				IssuingCA: func(context.Context) (*kioskpki.CA, error) { return h.ca, nil },
				CenterCA:  kioskpki.EncodeCert(h.ca.Cert),
				Log:       slog.New(slog.NewJSONHandler(h.log, nil)),
			})
			if err != nil {
				return nil, err
			}
			return svc.Renew(ctx, id, csr)
		})
	})
	return h
}

type renewerFunc func(ctx context.Context, id string, csr []byte) ([]byte, error)

func (f renewerFunc) Renew(ctx context.Context, id string, csr []byte) ([]byte, error) {
	return f(ctx, id, csr)
}

// enrollKey enrolls a kiosk as harness.enroll does and returns its key too.
func (h *harness) enrollKey(t *testing.T, id string) (*ecdsa.PrivateKey, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := h.ca.IssueKiosk(id, &key.PublicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.st.EnrollKiosk(context.Background(), store.Kiosk{ID: id, StoreName: "テスト店", StoreCode: "S-" + id, Chain: "TEST", Prefecture: "01",
		CertSerial: cert.SerialNumber.Text(16), CertSHA256: kioskpki.Fingerprint(cert), EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return key, kioskpki.ClientTLS(tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}, h.pool, "127.0.0.1")
}

func csrFor(t *testing.T, key *ecdsa.PrivateKey, cn string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestRenewRefusals: a renewal the center will not make is refused with
// the code that says why — kiosk_not_allowed for a kiosk that is no
// longer active, bad_message for a CSR that is malformed, unsigned by the
// key or names another kiosk — never internal_error, and is audited as
// kiosk_certificate_renewal_refused with the reason as its result.
func TestRenewRefusals(t *testing.T) {
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		status  store.KioskStatus // set in the store after the kiosk connected
		csr     func(t *testing.T, key *ecdsa.PrivateKey) []byte
		code    protocol.Code
		result  string
		renewed bool
	}{
		{name: "good", status: store.KioskActive, csr: func(t *testing.T, k *ecdsa.PrivateKey) []byte { return csrFor(t, k, "K1") }, renewed: true},
		{name: "another kiosk's name", status: store.KioskActive, csr: func(t *testing.T, k *ecdsa.PrivateKey) []byte { return csrFor(t, k, "K2") },
			code: protocol.CodeBadMessage, result: "bad_csr"},
		{name: "not a CSR", status: store.KioskActive, csr: func(*testing.T, *ecdsa.PrivateKey) []byte { return []byte{0x30, 0x03, 0x02, 0x01, 0x01} },
			code: protocol.CodeBadMessage, result: "bad_csr"},
		{name: "signature broken", status: store.KioskActive, csr: func(t *testing.T, k *ecdsa.PrivateKey) []byte {
			der := csrFor(t, k, "K1")
			der[len(der)-3] ^= 0xff
			return der
		}, code: protocol.CodeBadMessage, result: "bad_csr"},
		{name: "suspended", status: store.KioskSuspended, csr: func(t *testing.T, k *ecdsa.PrivateKey) []byte { return csrFor(t, k, "K1") },
			code: protocol.CodeKioskNotAllowed, result: "kiosk_suspended"},
		{name: "revoked", status: store.KioskRevoked, csr: func(t *testing.T, k *ecdsa.PrivateKey) []byte { return csrFor(t, k, "K1") },
			code: protocol.CodeKioskNotAllowed, result: "kiosk_revoked"},
		{name: "a new key is certified too", status: store.KioskActive, csr: func(t *testing.T, _ *ecdsa.PrivateKey) []byte { return csrFor(t, other, "K1") }, renewed: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := renewHarness(t)
			key, conf := h.enrollKey(t, "K1")
			c, _, err := h.dial(t, conf, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.status != store.KioskActive {
				// In the store only: the connection stays up, as it does on
				// an instance that has not yet heard of the suspension.
				if err := h.st.SetKioskStatus(context.Background(), "K1", tt.status, "test", time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			rid := protocol.NewRequestID()
			c.send(protocol.Renew{RequestID: rid, CSR: tt.csr(t, key)})
			m := c.read()
			evs, err := h.st.Events(context.Background(), store.EventQuery{KioskID: "K1"})
			if err != nil {
				t.Fatal(err)
			}
			if tt.renewed {
				r, ok := m.(protocol.Renewed)
				if !ok || r.RequestID != rid {
					t.Fatalf("answer %#v, want renewed", m)
				}
				blk, _ := pem.Decode([]byte(r.Chain))
				leaf, err := x509.ParseCertificate(blk.Bytes)
				if err != nil || leaf.Subject.CommonName != "K1" {
					t.Fatalf("renewed chain: %v", err)
				}
				if len(evs) != 1 || evs[0].Type != enrollment.EventCertRenewed || evs[0].Result != "ok" {
					t.Fatalf("audit %+v", evs)
				}
				return
			}
			e, ok := m.(*protocol.Error)
			if !ok || e.RequestID != rid || e.Code != tt.code {
				t.Fatalf("answer %#v, want error %s", m, tt.code)
			}
			var refused []store.Event
			for _, ev := range evs {
				if ev.Type == enrollment.EventRenewRefused {
					refused = append(refused, ev)
				}
			}
			if len(refused) != 1 || refused[0].Result != tt.result || refused[0].StoreCode != "S-K1" {
				t.Fatalf("audit %+v, want one %s refusal %s", evs, enrollment.EventRenewRefused, tt.result)
			}
			k, err := h.st.Kiosk(context.Background(), "K1")
			if err != nil || k.CertSHA256 != kioskpki.Fingerprint(mustLeaf(t, conf)) {
				t.Fatalf("a refused renewal changed the kiosk's certificate: %+v %v", k, err)
			}
		})
	}
}

func mustLeaf(t *testing.T, conf *tls.Config) *x509.Certificate {
	t.Helper()
	leaf, err := x509.ParseCertificate(conf.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestRenewedCertificateConnects: the renewed certificate opens the next
// connection, and the live view shows its serial.
func TestRenewedCertificateConnects(t *testing.T) {
	h := renewHarness(t)
	key, conf := h.enrollKey(t, "K1")
	c, _, err := h.dial(t, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := h.srv.KioskLive("K1"); !ok || l.CertSerial != mustLeaf(t, conf).SerialNumber.Text(16) {
		t.Fatalf("live %+v", l)
	}
	c.send(protocol.Renew{RequestID: protocol.NewRequestID(), CSR: csrFor(t, key, "K1")})
	r, ok := c.read().(protocol.Renewed)
	if !ok {
		t.Fatal("not renewed")
	}
	blk, _ := pem.Decode([]byte(r.Chain))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	c.ws.Close()
	next := kioskpki.ClientTLS(tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key}, h.pool, "127.0.0.1")
	if _, _, err := h.dial(t, next, nil); err != nil {
		t.Fatalf("renewed certificate: %v", err)
	}
	if l, _ := h.srv.KioskLive("K1"); l.CertSerial != leaf.SerialNumber.Text(16) || !l.CertNotAfter.Equal(leaf.NotAfter) {
		t.Fatalf("live %+v, want serial %s", l, leaf.SerialNumber.Text(16))
	}
}
