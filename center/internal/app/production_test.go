package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/admin"
	centerauthority "github.com/kioskcert/kioskcert/center/internal/authority"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/demodata"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// productionCenter makes a center as production does: the CSCA and the
// kiosk CA live in another directory (the offline machine), init leaves
// certificate requests, the authorities sign them and the operator
// installs the certificates; kiosks enroll themselves by CSR.
func productionCenter(t *testing.T, ks config.KeySource) (tc *testCenter, offline string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	offline = t.TempDir()
	csca, err := centerauthority.Create(filepath.Join(offline, "csca"), centerauthority.CSCA, "Test CSCA", "JP", now)
	if err != nil {
		t.Fatal(err)
	}
	kioskCA, err := centerauthority.Create(filepath.Join(offline, "kiosk-ca"), centerauthority.KioskCA, "Test Kiosk CA", "JP", now)
	if err != nil {
		t.Fatal(err)
	}
	tc = &testCenter{dir: t.TempDir(), auth: authority(t), log: &syncBuffer{}}
	ik, _ := tc.auth.IssuerKey()
	trust, err := carddata.MarshalIssuerKey(ik)
	if err != nil {
		t.Fatal(err)
	}
	trustFile := filepath.Join(offline, "trust.pem")
	os.WriteFile(trustFile, trust, 0o644)
	tc.cfg, err = admin.Init(ctx, admin.InitOptions{
		Dir: tc.dir, CardTrustFile: trustFile, IssuerURL: "https://issuer.test/kioskcert",
		KioskListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", EnrollListen: "127.0.0.1:0",
		KeySource:    ks,
		CSCACertFile: filepath.Join(csca.Dir, centerauthority.CertFile), KioskCACertFile: filepath.Join(kioskCA.Dir, centerauthority.CertFile),
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	if tc.cfg.Demo {
		t.Fatal("init with offline certificates made a demo center")
	}
	tc.cfg.Heartbeat.Duration = time.Second
	// The ceremony: each request to its authority, each certificate back.
	reqs, err := filepath.Glob(filepath.Join(tc.dir, "keys", "requests", "*.csr"))
	if err != nil || len(reqs) != 3 {
		t.Fatalf("requests after init: %v, %v; want the document signer, the kiosk issuing CA and TLS", reqs, err)
	}
	s, closeLocal, err := admin.OpenLocal(ctx, tc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	op := admin.Actor{Operator: "key-officer", Source: "local"}
	for _, r := range reqs {
		csr, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		var cert []byte
		switch name := filepath.Base(r); {
		case strings.HasPrefix(name, "vdsnc-"):
			cert, err = csca.SignDocumentSigner(csr, now)
		case strings.HasPrefix(name, "kioskca-"):
			cert, err = kioskCA.SignKioskChannel(csr, centerauthority.ProfileIssuingCA, now)
		case name == "tls.csr":
			cert, err = kioskCA.SignKioskChannel(csr, centerauthority.ProfileServer, now)
		default:
			t.Fatalf("unexpected request %s", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.InstallCertificate(ctx, op, cert); err != nil {
			t.Fatalf("install the certificate for %s: %v", filepath.Base(r), err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tc.dir, "keys", "requests", "*.csr")); len(left) != 0 {
		t.Fatalf("requests left after the ceremony: %v", left)
	}
	if _, err := demodata.Load(ctx, s, op); err != nil {
		t.Fatal(err)
	}
	// A production center does not make kiosk keys.
	if _, err := s.EnrollKiosk(ctx, op, admin.KioskEnrollment{ID: "K-BUNDLE", StoreName: "店", StoreCode: "S-B", Chain: "TEST", Prefecture: "01"}); err == nil {
		t.Fatal("a production center made a kiosk key")
	}
	closeLocal()
	if tc.residents, err = demo.Load(); err != nil {
		t.Fatal(err)
	}
	tc.start(t)
	return tc, offline
}

// enrollByCSR enrolls a kiosk the production way: its own key, a CSR and
// the one-time code, over the enrollment endpoint.
func (tc *testCenter) enrollByCSR(t *testing.T, id, code string, key *ecdsa.PrivateKey) (*http.Response, protocol.EnrollResponse) {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(protocol.EnrollRequest{KioskID: id, Code: code, CSR: csr})
	pool, err := kioskpki.LoadCertPool(tc.cfg.Path(tc.cfg.KioskCAFile))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}}}
	resp, err := client.Post("https://"+tc.center.Addr("enroll")+"/v1/enroll", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out protocol.EnrollResponse
	if resp.StatusCode == http.StatusOK {
		if out, err = protocol.DecodeEnrollResponse(bytes.TrimSpace(b)); err != nil {
			t.Fatal(err)
		}
	}
	return resp, out
}

func kioskTLS(t *testing.T, chain string, key *ecdsa.PrivateKey, centerCA []byte) *tls.Config {
	t.Helper()
	var cert tls.Certificate
	for _, c := range pemCerts(t, []byte(chain)) {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	cert.PrivateKey = key
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(centerCA) {
		t.Fatal("no center CA")
	}
	return kioskpki.ClientTLS(cert, pool, "localhost")
}

// issueAndVerify issues both kinds and verifies them as outside verifiers
// do: SMART Health Cards against the published JWKS, VDS-NC against the CSCA.
func (tc *testCenter) issueAndVerify(t *testing.T, k *kioskClient) (kid string) {
	t.Helper()
	jwks := tc.jwks(t)
	csca, err := os.ReadFile(filepath.Join(tc.dir, "keys", "vdsnc", "csca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	req, m := k.issue("012041", certificate.Overseas, tc.card(t, "hanako", ""))
	resp, ok := m.(protocol.CertificateResponse)
	if !ok {
		t.Fatalf("issue: got %#v", m)
	}
	for _, c := range resp.Certificates {
		card, err := shc.Verify(c.SHC, shc.VerifyOptions{Keys: jwks, Issuer: "https://issuer.test/kioskcert", Now: time.Now()})
		if err != nil {
			t.Fatalf("SHC of %s does not verify with the JWKS: %v", c.Kind, err)
		}
		kid = card.KeyID
		if c.Kind == certificate.Overseas {
			if _, err := vdsnc.Verify([]byte(c.VDSNC), vdsnc.VerifyOptions{CSCAs: pemCerts(t, csca), Now: time.Now()}); err != nil {
				t.Fatalf("VDS-NC does not verify with the CSCA: %v", err)
			}
		}
	}
	k.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1})
	if ack, ok := k.read().(protocol.Ack); !ok || ack.RequestID != req.RequestID {
		t.Fatal("no ack for the outcome")
	}
	return kid
}

// exerciseProduction runs a production center's life: a kiosk enrolls by
// CSR (its code works once), issues, renews its certificate over its
// connection, the SMART Health Card key rotates, the center restarts, and
// every certificate verifies throughout.
func exerciseProduction(t *testing.T, tc *testCenter) {
	ctx := context.Background()
	op := admin.Actor{Operator: "op-tanaka", Source: "test"}
	code, err := tc.center.Admin.CreateEnrollmentCode(ctx, op, admin.KioskEnrollment{ID: "K-CSR", StoreName: "旭川駅前店", StoreCode: "S-0001", Chain: "TEST", Prefecture: "01", Region: "hokkaido"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if resp, _ := tc.enrollByCSR(t, "K-CSR", "WRONG-CODE", key); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("enrollment with a wrong code: HTTP %d, want 403", resp.StatusCode)
	}
	resp, en := tc.enrollByCSR(t, "K-CSR", strings.ToLower(code.Code), key)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("enrollment: HTTP %d", resp.StatusCode)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if resp, _ := tc.enrollByCSR(t, "K-CSR", code.Code, other); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("second use of the code: HTTP %d, want 403", resp.StatusCode)
	}
	k, err := tc.dial(t, kioskTLS(t, en.Chain, key, []byte(en.CenterCA)))
	if err != nil {
		t.Fatalf("kiosk enrolled by CSR cannot connect: %v", err)
	}
	kid1 := tc.issueAndVerify(t, k)

	// Renewal over the open connection, with the same key.
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "K-CSR"}}, key)
	rid := protocol.NewRequestID()
	k.send(protocol.Renew{RequestID: rid, CSR: csr})
	renewed, ok := k.read().(protocol.Renewed)
	if !ok || renewed.RequestID != rid || renewed.Chain == en.Chain {
		t.Fatalf("renewal answer: %#v", renewed)
	}
	// A CSR naming another kiosk is refused.
	bad, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "K-OTHER"}}, key)
	k.send(protocol.Renew{RequestID: protocol.NewRequestID(), CSR: bad})
	if e, ok := k.read().(*protocol.Error); !ok || e.Code != protocol.CodeBadMessage {
		t.Fatalf("renewal for another kiosk: %#v", e)
	}
	k2, err := tc.dial(t, kioskTLS(t, renewed.Chain, key, []byte(en.CenterCA)))
	if err != nil {
		t.Fatalf("renewed certificate cannot connect: %v", err)
	}

	// Rotation: the new key signs, and the old one stays in the JWKS.
	kid2, err := tc.center.Admin.RotateSHCKey(ctx, op)
	if err != nil {
		t.Fatal(err)
	}
	if got := tc.issueAndVerify(t, k2); got != kid2 || got == kid1 {
		t.Fatalf("after rotation signed with %s, want the new key %s (old %s)", got, kid2, kid1)
	}
	if len(tc.jwks(t).Keys) != 2 {
		t.Fatal("the JWKS does not hold both keys after rotation")
	}

	// Restart: the keys come back from the key source.
	tc.stop()
	tc.start(t)
	k3, err := tc.dial(t, kioskTLS(t, renewed.Chain, key, []byte(en.CenterCA)))
	if err != nil {
		t.Fatal(err)
	}
	if got := tc.issueAndVerify(t, k3); got != kid2 {
		t.Fatalf("after restart signed with %s, want %s", got, kid2)
	}
}

func TestProductionCenterFileKeys(t *testing.T) {
	tc, _ := productionCenter(t, config.KeySource{})
	exerciseProduction(t, tc)
	// No authority key on the online center, even with file keys.
	for _, name := range []string{"authorities", "pki/kiosk-ca.key", "keys/vdsnc/csca.key"} {
		if _, err := os.Stat(filepath.Join(tc.dir, name)); err == nil {
			t.Errorf("the online center holds %s", name)
		}
	}
}
