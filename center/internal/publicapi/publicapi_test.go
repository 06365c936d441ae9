package publicapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/shc"
)

// fakeKeys serves a fixed key set, or fails.
type fakeKeys struct {
	set *shc.JWKS
	err error
}

func (f *fakeKeys) JWKS(ctx context.Context) (*shc.JWKS, error) { return f.set, f.err }

// fakeRevocations is a hand-written store.RevocationStore.
type fakeRevocations struct {
	mu   sync.Mutex
	revs []store.Revocation
	err  error
}

func (f *fakeRevocations) RevokeCertificate(ctx context.Context, r store.Revocation) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revs = append(f.revs, r)
	return nil
}

func (f *fakeRevocations) Revocation(ctx context.Context, id string) (store.Revocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.revs {
		if r.CertificateID == id {
			return r, nil
		}
	}
	return store.Revocation{}, store.ErrNotFound
}

func (f *fakeRevocations) Revocations(ctx context.Context, kid string) ([]store.Revocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []store.Revocation
	for _, r := range f.revs {
		if kid == "" || r.KID == kid {
			out = append(out, r)
		}
	}
	return out, nil
}

type fixture struct {
	keys       *fakeKeys
	revs       *fakeRevocations
	kid1, kid2 string
	secret     []byte
	srv        *httptest.Server
}

var revokedAt = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, prefix string) *fixture {
	t.Helper()
	var pubs []*ecdsa.PublicKey
	for i := 0; i < 2; i++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, &k.PublicKey)
	}
	set, err := shc.NewJWKS(pubs[0], pubs[1])
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{keys: &fakeKeys{set: set}, revs: &fakeRevocations{}, secret: []byte(strings.Repeat("s", shc.MinRIDSecretLen))}
	f.kid1, _ = shc.Thumbprint(pubs[0])
	f.kid2, _ = shc.Thumbprint(pubs[1])
	for _, id := range []string{"4M41JFDVR4JS", "6N6H917FGG04"} {
		f.revs.RevokeCertificate(context.Background(), store.Revocation{CertificateID: id, KID: f.kid1, RevokedAt: revokedAt, Reason: "misprint"})
	}
	f.srv = httptest.NewServer(Handler(prefix, f.keys, f.revs, f.secret, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "https://verifier.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func checkCORS(t *testing.T, resp *http.Response) {
	t.Helper()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin %q", got)
	}
	if got := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "GET") {
		t.Errorf("Access-Control-Allow-Methods %q", got)
	}
}

func TestJWKS(t *testing.T) {
	for _, prefix := range []string{"/kioskcert", "/kioskcert/", ""} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			f := newFixture(t, prefix)
			path := strings.TrimSuffix(prefix, "/") + "/.well-known/jwks.json"
			resp, body := f.do(t, http.MethodGet, path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s", path, resp.Status)
			}
			checkCORS(t, resp)
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			set, err := shc.ParseJWKS(body)
			if err != nil {
				t.Fatal(err)
			}
			for _, kid := range []string{f.kid1, f.kid2} {
				if _, _, err := set.Key(kid); err != nil {
					t.Errorf("key %s missing: %v", kid, err)
				}
			}
			if strings.Contains(string(body), `"d"`) {
				t.Fatal("JWKS carries a private key")
			}
		})
	}
}

// getJWKS and getCRL fetch and parse what a verifier would.
func (f *fixture) getJWKS(t *testing.T) *shc.JWKS {
	t.Helper()
	resp, body := f.do(t, http.MethodGet, "/kioskcert/.well-known/jwks.json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET JWKS: %s", resp.Status)
	}
	set, err := shc.ParseJWKS(body)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func (f *fixture) getCRL(t *testing.T, kid string) *shc.CRL {
	t.Helper()
	resp, body := f.do(t, http.MethodGet, "/kioskcert/.well-known/crl/"+kid+".json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET CRL %s: %s", kid, resp.Status)
	}
	crl, err := shc.ParseCRL(body)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func crlVersion(t *testing.T, set *shc.JWKS, kid string) int {
	t.Helper()
	_, k, err := set.Key(kid)
	if err != nil {
		t.Fatal(err)
	}
	return k.CRLVersion
}

// TestJWKSAnnouncesCRLVersion checks the rule verifiers depend on: a key
// whose list revokes anything carries crlVersion equal to the list's ctr
// (at least 1), and crlVersion rises with every change to the list.
// Verifiers never look at a list whose key lacks crlVersion.
func TestJWKSAnnouncesCRLVersion(t *testing.T) {
	f := newFixture(t, "/kioskcert")
	set := f.getJWKS(t)
	v1 := crlVersion(t, set, f.kid1)
	if crl := f.getCRL(t, f.kid1); v1 < 1 || v1 != crl.Ctr {
		t.Fatalf("key with 2 revocations: crlVersion %d, CRL ctr %d; want equal and ≥ 1", v1, crl.Ctr)
	}
	if v := crlVersion(t, set, f.kid2); v != 0 {
		t.Errorf("key with nothing revoked announces crlVersion %d", v)
	}

	// A third revocation under kid1 changes its list: the version rises.
	f.revs.RevokeCertificate(context.Background(), store.Revocation{CertificateID: "7P7J028GHH15", KID: f.kid1, RevokedAt: revokedAt.Add(time.Hour), Reason: "misprint"})
	set = f.getJWKS(t)
	v2 := crlVersion(t, set, f.kid1)
	if crl := f.getCRL(t, f.kid1); v2 <= v1 || v2 != crl.Ctr || len(crl.RIDs) != 3 {
		t.Fatalf("after a new revocation: crlVersion %d (was %d), CRL ctr %d with %d rids", v2, v1, crl.Ctr, len(crl.RIDs))
	}
	// The first revocation under kid2 makes it announce a list.
	f.revs.RevokeCertificate(context.Background(), store.Revocation{CertificateID: "8Q8K139HJJ26", KID: f.kid2, RevokedAt: revokedAt, Reason: "holder_request"})
	set = f.getJWKS(t)
	if v, crl := crlVersion(t, set, f.kid2), f.getCRL(t, f.kid2); v < 1 || v != crl.Ctr || len(crl.RIDs) != 1 {
		t.Fatalf("kid2 after its first revocation: crlVersion %d, CRL ctr %d with %d rids", v, crl.Ctr, len(crl.RIDs))
	}
	if crlVersion(t, set, f.kid1) != v2 {
		t.Error("a revocation under kid2 changed kid1's version")
	}
}

func TestPreflight(t *testing.T) {
	f := newFixture(t, "/kioskcert")
	for _, path := range []string{"/kioskcert/.well-known/jwks.json", "/kioskcert/.well-known/crl/" + "x.json"} {
		t.Run(path, func(t *testing.T) {
			resp, body := f.do(t, http.MethodOptions, path)
			if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
				t.Fatalf("OPTIONS %s: %s, %d bytes", path, resp.Status, len(body))
			}
			checkCORS(t, resp)
			if resp.Header.Get("Access-Control-Max-Age") == "" {
				t.Error("preflight without Access-Control-Max-Age")
			}
		})
	}
}

func TestCRL(t *testing.T) {
	f := newFixture(t, "/kioskcert")
	resp, body := f.do(t, http.MethodGet, "/kioskcert/.well-known/crl/"+f.kid1+".json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET CRL: %s", resp.Status)
	}
	checkCORS(t, resp)
	crl, err := shc.ParseCRL(body)
	if err != nil {
		t.Fatal(err)
	}
	if crl.Kid != f.kid1 || len(crl.RIDs) != 2 || crl.Ctr != 3 {
		t.Fatalf("CRL %+v", crl)
	}
	for _, id := range []string{"4M41JFDVR4JS", "6N6H917FGG04"} {
		rid := shc.RID(f.secret, f.kid1, id)
		if !crl.Revoked(rid, revokedAt.Add(-time.Hour)) {
			t.Errorf("a card of %s issued before the revocation is not revoked", id)
		}
		if crl.Revoked(rid, revokedAt.Add(time.Hour)) {
			t.Errorf("a card of %s issued after the revocation is revoked", id)
		}
		// The list names rids, never certificate IDs.
		if strings.Contains(string(body), id) {
			t.Errorf("CRL reveals certificate ID %s", id)
		}
	}
	if crl.Revoked(shc.RID(f.secret, f.kid1, "0000000000AB"), revokedAt.Add(-time.Hour)) {
		t.Error("an unrevoked certificate is listed")
	}
	// The rid is per key: the same certificate ID under the other key is not listed.
	if crl.Revoked(shc.RID(f.secret, f.kid2, "4M41JFDVR4JS"), revokedAt.Add(-time.Hour)) {
		t.Error("rid does not depend on the key")
	}

	// A known key with nothing revoked has an empty list.
	resp, body = f.do(t, http.MethodGet, "/kioskcert/.well-known/crl/"+f.kid2+".json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET CRL of the second key: %s", resp.Status)
	}
	if crl, err := shc.ParseCRL(body); err != nil || len(crl.RIDs) != 0 || crl.Ctr != 1 {
		t.Fatalf("empty CRL %+v, %v", crl, err)
	}
}

func TestNotFoundAndErrors(t *testing.T) {
	f := newFixture(t, "/kioskcert")
	tests := []struct {
		name   string
		method string
		path   string
		setup  func(*fixture)
		want   int
	}{
		{"unknown kid", http.MethodGet, "/kioskcert/.well-known/crl/unknownkid.json", nil, http.StatusNotFound},
		{"CRL without .json", http.MethodGet, "/kioskcert/.well-known/crl/KID", nil, http.StatusNotFound},
		{"CRL named .json only", http.MethodGet, "/kioskcert/.well-known/crl/.json", nil, http.StatusNotFound},
		{"outside the prefix", http.MethodGet, "/.well-known/jwks.json", nil, http.StatusNotFound},
		{"POST to the JWKS", http.MethodPost, "/kioskcert/.well-known/jwks.json", nil, http.StatusMethodNotAllowed},
		{"keys unavailable", http.MethodGet, "/kioskcert/.well-known/jwks.json", func(f *fixture) { f.keys.err = errors.New("db down") }, http.StatusServiceUnavailable},
		{"keys unavailable for the CRL", http.MethodGet, "/kioskcert/.well-known/crl/KID.json", func(f *fixture) { f.keys.err = errors.New("db down") }, http.StatusServiceUnavailable},
		{"revocations unavailable", http.MethodGet, "", func(f *fixture) { f.revs.err = errors.New("db down") }, http.StatusServiceUnavailable},
		{"revocations unavailable for the JWKS", http.MethodGet, "/kioskcert/.well-known/jwks.json", func(f *fixture) { f.revs.err = errors.New("db down") }, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.keys.err, f.revs.err = nil, nil
			if tt.setup != nil {
				tt.setup(f)
			}
			path := tt.path
			if path == "" {
				path = "/kioskcert/.well-known/crl/" + f.kid1 + ".json"
			}
			resp, body := f.do(t, tt.method, path)
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s: %s, want %d", tt.method, path, resp.Status, tt.want)
			}
			if strings.Contains(string(body), "db down") {
				t.Error("internal error text sent to the public")
			}
		})
	}
	if resp, body := f.do(t, http.MethodGet, "/healthz"); resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("healthz: %s %q", resp.Status, body)
	}
}
