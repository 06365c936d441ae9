package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/publicapi"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// issuer is the center's publishing side as the test builds it: the real
// keyring over a bbolt store, publicapi over HTTPS on loopback.
type issuer struct {
	keys    keyring.Keyring
	store   *boltstore.Store
	shc     *shc.Issuer
	vds     *vdsnc.Signer
	kid     string
	secret  []byte
	srv     *httptest.Server
	caFile  string // the server's certificate, for NODE_EXTRA_CA_CERTS
	client  *http.Client
	issURL  string
	started time.Time
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now()
	is := &issuer{keys: keyring.Keyring{Source: keyring.FileSource{Dir: filepath.Join(dir, "keys")}, Dir: filepath.Join(dir, "keys"), Store: st}, store: st, started: now}
	// Two SHC keys: a retired one stays published beside the active one, as
	// after a yearly rotation.
	if _, err := is.keys.RotateSHC(ctx, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := is.keys.RotateSHC(ctx, now); err != nil {
		t.Fatal(err)
	}
	if err := is.keys.CreateVDS(ctx, now); err != nil {
		t.Fatal(err)
	}
	signer, kid, err := is.keys.ActiveSHC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	is.kid = kid
	if is.secret, err = is.keys.RidSecret(); err != nil {
		t.Fatal(err)
	}
	if is.vds, err = is.keys.VDSSigner(ctx); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	is.srv = httptest.NewUnstartedServer(publicapi.Handler("", is.keys, st, is.secret, log))
	is.srv.StartTLS()
	t.Cleanup(is.srv.Close)
	is.client = is.srv.Client()
	is.client.Timeout = 10 * time.Second
	is.issURL = is.srv.URL // https://127.0.0.1:PORT: a valid SHC issuer URL
	if is.shc, err = shc.NewIssuer(is.issURL, signer, is.secret); err != nil {
		t.Fatal(err)
	}
	is.caFile = filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(is.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return is
}

func (is *issuer) revoke(t *testing.T, c *certificate.Certificate, at time.Time) {
	t.Helper()
	if err := is.store.RevokeCertificate(context.Background(), store.Revocation{CertificateID: c.ID, KID: is.kid, RevokedAt: at, Reason: "misprint"}); err != nil {
		t.Fatal(err)
	}
}

// get fetches an issuer URL path and decodes its JSON into a generic value,
// checking what every verifier in a browser needs: 200 and CORS.
func (is *issuer) get(t *testing.T, path string) map[string]any {
	t.Helper()
	resp, err := is.client.Get(is.issURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("GET %s: no CORS (Access-Control-Allow-Origin %q)", path, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: not a JSON object: %v", path, err)
	}
	return v
}

// verifiers is the installed outside code.
type verifiers struct {
	dir      string // out/node-verifiers
	node     string
	testdata string
}

// installVerifiers runs the project's install script (as `make test` does
// through .ci/install-deps) and finds node. It fails, never skips: the
// script installs Debian's nodejs when node is missing.
func installVerifiers(t *testing.T) verifiers {
	t.Helper()
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, ".ci", "install-node-verifiers"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("install the outside verifiers: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not in PATH after .ci/install-node-verifiers: %v", err)
	}
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return verifiers{dir: lines[len(lines)-1], node: node, testdata: td}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// result is one code as an outside verifier saw it.
type result struct {
	Name      string   `json:"name"`
	Valid     bool     `json:"valid"`
	Messages  []string `json:"messages"`
	Iss       string   `json:"iss"`
	Family    string   `json:"family"`
	Given     []string `json:"given"`
	BirthDate string   `json:"birthDate"`
	Doses     int      `json:"doses"`
	NameOnDoc string   `json:"nameOnDoc"`
	UVCI      string   `json:"uvci"`
}

// run runs one runner script under node with the loopback guard and returns
// its results. args come before the script (e.g. --import hooks).
func (v verifiers) run(t *testing.T, caFile, script string, input any, args ...string) []result {
	t.Helper()
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append([]string{"--require", filepath.Join(v.testdata, "loopback-only.cjs")}, args...)
	argv = append(argv, filepath.Join(v.testdata, script))
	cmd := exec.CommandContext(ctx, v.node, argv...)
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+caFile, "NODE_NO_WARNINGS=1")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	var res struct {
		Results []result `json:"results"`
		Refused []string `json:"refused"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node %s printed %q: %v\n%s", script, out, err, stderr.String())
	}
	if len(res.Refused) > 0 {
		t.Errorf("node %s tried to leave the machine: %q", script, res.Refused)
	}
	return res.Results
}

// TestOutsideVerifiers issues cards and proofs with the center's keys and
// has PathCheck's verifiers, from the npm registry, check them.
func TestOutsideVerifiers(t *testing.T) {
	v := installVerifiers(t)
	is := newIssuer(t)
	now := time.Now()

	type shcCase struct {
		name  string
		cert  *certificate.Certificate
		valid bool
		qr    string
	}
	var shcCases []*shcCase
	for _, id := range []struct {
		resident string
		kind     certificate.Kind
	}{{"hanako", certificate.Domestic}, {"hanako", certificate.Overseas}, {"taro", certificate.Domestic}, {"an", certificate.Overseas}, {"takasaki", certificate.Domestic}} {
		c := certtest.Resident(t, id.resident, id.kind)
		qr, err := is.shc.Issue(c, now)
		if err != nil {
			t.Fatal(err)
		}
		shcCases = append(shcCases, &shcCase{name: id.resident + "-" + string(id.kind), cert: c, valid: true, qr: qr})
	}
	// A card with one signature character changed must be refused, or the
	// verifier proves nothing.
	jws, err := shc.DecodeQR(shcCases[0].qr)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(jws, '.') + 10
	swap := byte('A')
	if jws[i] == 'A' {
		swap = 'B'
	}
	tampered, err := shc.EncodeQR(jws[:i] + string(swap) + jws[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	shcCases = append(shcCases, &shcCase{name: "tampered signature", valid: false, qr: tampered})

	// taro's certificate is revoked (a misprint); his card is still a
	// genuine signature, so the SDK (which has no revocation support)
	// accepts it, and the revocation rules are checked below.
	is.revoke(t, shcCases[2].cert, now.Add(time.Minute))

	jwksBody, _ := json.Marshal(is.get(t, "/.well-known/jwks.json"))
	ours, err := shc.ParseJWKS(jwksBody)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("pathcheck-shc-sdk", func(t *testing.T) {
		type in struct {
			Name string `json:"name"`
			QR   string `json:"qr"`
		}
		var cases []in
		for _, c := range shcCases {
			cases = append(cases, in{c.name, c.qr})
		}
		results := v.run(t, is.caFile, "verify-shc.cjs", map[string]any{"dir": v.dir, "iss": is.issURL, "cases": cases})
		if len(results) != len(shcCases) {
			t.Fatalf("%d results for %d cards", len(results), len(shcCases))
		}
		for k, r := range results {
			c := shcCases[k]
			if r.Valid != c.valid {
				t.Errorf("%s: @pathcheck/shc-sdk says valid=%v, want %v; it reported: %q", c.name, r.Valid, c.valid, r.Messages)
				continue
			}
			if !c.valid {
				continue
			}
			if len(r.Messages) > 0 {
				t.Errorf("%s: @pathcheck/shc-sdk reported: %q", c.name, r.Messages)
			}
			// Our verifier and theirs must read the same card.
			card, err := shc.Verify(c.qr, shc.VerifyOptions{Keys: ours, Issuer: is.issURL, Now: now.Add(time.Minute)})
			if err != nil {
				t.Fatalf("%s: our verifier: %v", c.name, err)
			}
			if r.Iss != is.issURL || r.Family != card.Holder.Family || strings.Join(r.Given, " ") != strings.Join(card.Holder.Given, " ") ||
				r.BirthDate != card.Holder.BirthDate || r.Doses != len(card.Doses) {
				t.Errorf("%s: @pathcheck/shc-sdk read iss %q, %q %q, born %s, %d doses; ours read %q, %q %q, born %s, %d doses",
					c.name, r.Iss, r.Family, r.Given, r.BirthDate, r.Doses, card.Issuer, card.Holder.Family, card.Holder.Given, card.Holder.BirthDate, len(card.Doses))
			}
		}
	})

	t.Run("pathcheck-vds-sdk", func(t *testing.T) {
		type in struct {
			Name string `json:"name"`
			Doc  string `json:"doc"`
		}
		var cases []in
		var want []*certificate.Certificate
		for _, id := range []string{"hanako", "taro", "an"} {
			c := certtest.Resident(t, id, certificate.Overseas)
			d, err := vdsnc.Build(c)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := is.vds.Sign(d)
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, in{id, string(doc)})
			want = append(want, c)
		}
		// The first document with its holder's name changed after signing.
		var m map[string]any
		if err := json.Unmarshal([]byte(cases[0].Doc), &m); err != nil {
			t.Fatal(err)
		}
		m["data"].(map[string]any)["msg"].(map[string]any)["pid"].(map[string]any)["n"] = "SHIKEN HANAKA"
		forged, _ := json.Marshal(m)
		cases = append(cases, in{"tampered name", string(forged)})

		results := v.run(t, is.caFile, "verify-vds.mjs", map[string]any{"dir": v.dir, "cases": cases},
			"--import", filepath.Join(v.testdata, "register-hooks.mjs"))
		if len(results) != len(cases) {
			t.Fatalf("%d results for %d documents", len(results), len(cases))
		}
		for k, r := range results {
			if k == len(cases)-1 {
				if r.Valid {
					t.Errorf("@pathcheck/vds-sdk accepted a document whose name was changed after signing")
				}
				continue
			}
			if !r.Valid || len(r.Messages) > 0 {
				t.Errorf("%s: @pathcheck/vds-sdk says valid=%v; it reported: %q", cases[k].Name, r.Valid, r.Messages)
				continue
			}
			if r.UVCI != want[k].ID || r.NameOnDoc == "" {
				t.Errorf("%s: @pathcheck/vds-sdk read uvci %q name %q, want uvci %q", cases[k].Name, r.UVCI, r.NameOnDoc, want[k].ID)
			}
		}
	})

	t.Run("spec-revocation-rules", func(t *testing.T) {
		revoked := map[string]bool{shc.RID(is.secret, is.kid, shcCases[2].cert.ID): true}
		v1 := checkRevocationRules(t, is, revoked, shc.RID(is.secret, is.kid, shcCases[0].cert.ID))
		// A second revocation changes the list: crlVersion must rise and the
		// list follow, or verifiers keep their cached copy.
		is.revoke(t, shcCases[3].cert, now.Add(2*time.Minute))
		revoked[shc.RID(is.secret, is.kid, shcCases[3].cert.ID)] = true
		if v2 := checkRevocationRules(t, is, revoked, shc.RID(is.secret, is.kid, shcCases[0].cert.ID)); v2 <= v1 {
			t.Errorf("crlVersion %d after a new revocation, was %d: verifiers would keep the old list", v2, v1)
		}
	})
}

var ridRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,24}(\.[0-9]+)?$`)

// checkRevocationRules reads the JWKS and the revocation lists as a verifier
// does, straight from the wire (no code of ours parses them), and applies
// the specification's rules: every key is a P-256 ES256 signing key without
// a private part; the key that signed revoked cards carries crlVersion, an
// integer ≥ 1; its list at /.well-known/crl/<kid>.json has that kid, method
// "rid", ctr equal to crlVersion, rids of the base64url alphabet (≤ 24
// characters, optional .timestamp) and lists every revoked rid and no other
// card's. It returns the active key's crlVersion.
func checkRevocationRules(t *testing.T, is *issuer, revoked map[string]bool, notRevoked string) int {
	t.Helper()
	jwks := is.get(t, "/.well-known/jwks.json")
	keys, _ := jwks["keys"].([]any)
	if len(keys) != 2 {
		t.Fatalf("JWKS has %d keys, want the active and the retired one", len(keys))
	}
	version := 0
	for _, k := range keys {
		key := k.(map[string]any)
		kid, _ := key["kid"].(string)
		if key["kty"] != "EC" || key["crv"] != "P-256" || key["alg"] != "ES256" || key["use"] != "sig" || kid == "" {
			t.Errorf("key %s: not an EC P-256 ES256 signing key: %v", kid, key)
		}
		if _, ok := key["d"]; ok {
			t.Fatalf("key %s publishes its private part", kid)
		}
		cv, has := key["crlVersion"]
		if kid != is.kid {
			if has {
				t.Errorf("retired key %s with nothing revoked announces crlVersion %v", kid, cv)
			}
			continue
		}
		n, ok := cv.(float64)
		if !has || !ok || n < 1 || n != float64(int(n)) {
			t.Fatalf("key %s signed revoked cards but its crlVersion is %v (present %v); verifiers will never read its list", kid, cv, has)
		}
		version = int(n)
		crl := is.get(t, "/.well-known/crl/"+kid+".json")
		if crl["kid"] != kid || crl["method"] != "rid" {
			t.Errorf("CRL of %s: kid %v method %v", kid, crl["kid"], crl["method"])
		}
		if ctr, _ := crl["ctr"].(float64); int(ctr) != version {
			t.Errorf("CRL of %s: ctr %v, JWKS crlVersion %d", kid, crl["ctr"], version)
		}
		rids, _ := crl["rids"].([]any)
		listed := map[string]bool{}
		for _, r := range rids {
			s, _ := r.(string)
			if !ridRE.MatchString(s) {
				t.Errorf("CRL of %s: rid %q is not base64url (≤ 24) with an optional .timestamp", kid, s)
			}
			base, ts, hasTS := strings.Cut(s, ".")
			listed[base] = true
			if hasTS {
				var sec int64
				fmt.Sscan(ts, &sec)
				if sec < is.started.Unix() {
					t.Errorf("CRL of %s: rid %s revokes only cards issued before %d, before this card was issued", kid, base, sec)
				}
			}
		}
		for rid := range revoked {
			if !listed[rid] {
				t.Errorf("CRL of %s does not list revoked rid %s", kid, rid)
			}
		}
		if len(listed) != len(revoked) || listed[notRevoked] {
			t.Errorf("CRL of %s lists %d rids, want exactly the %d revoked", kid, len(listed), len(revoked))
		}
	}
	if version == 0 {
		t.Fatal("the active key is not in the JWKS")
	}
	return version
}
