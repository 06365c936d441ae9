package shc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
)

const specKid = "3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s"

// TestSpecExample verifies the specification's example 00 (three files
// from the same commit: the JWS, its numeric QR text and the issuer's
// jwks.json) and checks the decoded content against the expanded payload
// published beside them.
func TestSpecExample(t *testing.T) {
	jws := readSpec(t, "example-00-d-jws.txt")
	qr := readSpec(t, "example-00-f-qr-code-numeric-value-0.txt")
	opts := VerifyOptions{Keys: specJWKS(t), Issuer: "https://smarthealth.cards/examples/issuer",
		Now: time.Date(2021, 5, 1, 0, 0, 0, 0, time.UTC)}

	decoded, err := DecodeQR(qr)
	if err != nil {
		t.Fatal(err)
	}
	if decoded != jws {
		t.Fatal("numeric QR text does not decode to the example JWS")
	}
	if again, err := EncodeQR(jws); err != nil || again != qr {
		t.Fatalf("EncodeQR(example JWS) does not reproduce the example QR text: %v", err)
	}
	for name, verify := range map[string]func() (*Card, error){
		"jws": func() (*Card, error) { return VerifyJWS(jws, opts) },
		"qr":  func() (*Card, error) { return Verify(qr, opts) },
	} {
		t.Run(name, func(t *testing.T) {
			c, err := verify()
			if err != nil {
				t.Fatal(err)
			}
			if c.KeyID != specKid || c.FHIRVersion != "4.0.1" || c.NotBefore.Unix() != 1617976270 {
				t.Errorf("card header = %+v", c)
			}
			if got := c.Holder; got.Family != "Anyperson" || strings.Join(got.Given, "|") != "John|B." || got.BirthDate != "1951-01-20" {
				t.Errorf("holder = %+v", got)
			}
			want := []Dose{
				{Status: "completed", CVX: "207", Date: "2021-01-01", Lot: "0000001", Performer: "ABC General Hospital"},
				{Status: "completed", CVX: "207", Date: "2021-01-29", Lot: "0000007", Performer: "ABC General Hospital"},
			}
			if len(c.Doses) != len(want) {
				t.Fatalf("doses = %+v", c.Doses)
			}
			for i := range want {
				if c.Doses[i] != want[i] {
					t.Errorf("dose %d = %+v, want %+v", i, c.Doses[i], want[i])
				}
			}
		})
	}
}

// TestSpecRevocation checks the specification's revoked example (03) against
// its CRL, and the rid derivation against the example generator's secret.
func TestSpecRevocation(t *testing.T) {
	jws := readSpec(t, "example-03-d-jws.txt")
	crl, err := ParseCRL([]byte(readSpec(t, "crl-"+specKid+".json")))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Date(2022, 12, 1, 0, 0, 0, 0, time.UTC) // after nbf, before exp
	tests := []struct {
		name    string
		opts    VerifyOptions
		wantErr error
	}{
		{"no CRL", VerifyOptions{Keys: specJWKS(t), Now: before}, nil},
		{"with CRL", VerifyOptions{Keys: specJWKS(t), Now: before, CRLs: []*CRL{crl}}, ErrRevoked},
		{"CRL for another key", VerifyOptions{Keys: specJWKS(t), Now: before, CRLs: []*CRL{{Kid: "other", Method: "rid", Ctr: 1, RIDs: []string{"vwAjHdarZuc"}}}}, nil},
		{"after exp", VerifyOptions{Keys: specJWKS(t), Now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}, ErrExpired},
		{"wrong issuer", VerifyOptions{Keys: specJWKS(t), Now: before, Issuer: "https://smarthealth.cards/examples/issuer"}, ErrIssuer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := VerifyJWS(jws, tc.opts)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("VerifyJWS error = %v, want %v", err, tc.wantErr)
			}
			if err == nil && (c.RID != "vwAjHdarZuc" || c.Holder.Family != "Revoked") {
				t.Errorf("card = %+v", c)
			}
		})
	}
	// The generator derives rids from "userid-NN" and its published secret
	// (generate-examples/src/config/issuer.hmac.private.json, used as text).
	secret := []byte("GWdbF5850vxNt3HhHFl0dRvvN--C6rD77obJgGjK_Zg")
	for id, want := range map[string]string{
		"userid-03": "vwAjHdarZuc", "fake-userid-1": "FKDIxsTCGlU",
		"fake-userid-2": "XkNHp2Iyk0Y", "fake-userid-3": "TqB_qu_6OtM",
	} {
		if got := RID(secret, specKid, id); got != want {
			t.Errorf("RID(%s) = %s, want %s", id, got, want)
		}
	}
}

func TestSpecJWKS(t *testing.T) {
	s := specJWKS(t)
	if len(s.Keys) != 2 {
		t.Fatalf("got %d keys, want 2", len(s.Keys))
	}
	for _, k := range s.Keys {
		pub, err := k.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Thumbprint(pub)
		if err != nil || got != k.Kid {
			t.Errorf("Thumbprint = %s, %v; want %s", got, err, k.Kid)
		}
		rebuilt, err := NewJWK(pub)
		if err != nil {
			t.Fatal(err)
		}
		if rebuilt.X != k.X || rebuilt.Y != k.Y || rebuilt.Kid != k.Kid || rebuilt.Use != "sig" || rebuilt.Alg != "ES256" {
			t.Errorf("NewJWK = %+v, spec has %+v", rebuilt, k)
		}
	}
}

func TestParseJWKSRejects(t *testing.T) {
	good := `{"kty":"EC","kid":"3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s","use":"sig","alg":"ES256","crv":"P-256","x":"11XvRWy1I2S0EyJlyf_bWfw_TQ5CJJNLw78bHXNxcgw","y":"eZXwxvO1hvCY0KucrPfKo7yAyMT6Ajc3N7OkAB6VYy8"`
	tests := map[string]string{
		"private part":     `{"keys":[` + good + `,"d":"AAAA"}]}`,
		"wrong kid":        `{"keys":[` + strings.Replace(good, `"kid":"3K`, `"kid":"4K`, 1) + `}]}`,
		"off-curve point":  `{"keys":[` + strings.Replace(good, `"x":"11X`, `"x":"12X`, 1) + `}]}`,
		"no signing keys":  `{"keys":[{"kty":"EC","use":"enc","alg":"ECDH-ES"}]}`,
		"not JSON":         `{"keys":`,
		"wrong curve name": `{"keys":[` + strings.Replace(good, `"crv":"P-256"`, `"crv":"P-384"`, 1) + `}]}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseJWKS([]byte(in)); !errors.Is(err, ErrJWKS) {
				t.Fatalf("ParseJWKS error = %v, want ErrJWKS", err)
			}
		})
	}
	// A set with an encryption key beside the signing key keeps only the latter.
	s, err := ParseJWKS([]byte(`{"keys":[{"kty":"EC","use":"enc","alg":"ECDH-ES"},` + good + `}]}`))
	if err != nil || len(s.Keys) != 1 {
		t.Fatalf("ParseJWKS with an extra encryption key = %+v, %v", s, err)
	}
}

// TestIssueVerifyRoundTrip issues cards for demo residents with a pinned
// clock, compares the payload with golden files, verifies the QR text and
// checks the decoded content against the certificate.
func TestIssueVerifyRoundTrip(t *testing.T) {
	is := testIssuer(t)
	keys, err := NewJWKS(is.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		resident string
		kind     certificate.Kind
		family   string
	}{
		{"hanako", certificate.Domestic, "試験"},
		{"hanako", certificate.Overseas, "SHIKEN"},
		{"taro", certificate.Domestic, "試験"},
		{"an", certificate.Overseas, "NGUYEN"},
		{"takasaki", certificate.Domestic, "髙﨑"},
	}
	for _, tc := range tests {
		t.Run(tc.resident+"-"+string(tc.kind), func(t *testing.T) {
			c := certtest.Resident(t, tc.resident, tc.kind)
			p, err := is.Payload(c, pinnedNow)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(p); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.resident+"-"+string(tc.kind)+".json", buf.Bytes())

			qr, err := is.Issue(c, pinnedNow)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := DecodeQR(qr)
			if err != nil {
				t.Fatal(err)
			}
			if len(jws) > MaxJWSLen {
				t.Fatalf("JWS is %d characters", len(jws))
			}
			card, err := Verify(qr, VerifyOptions{Keys: keys, Issuer: testIssuerURL, Now: pinnedNow.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if card.Holder.Family != tc.family || card.Holder.BirthDate != c.Holder.BirthDate {
				t.Errorf("holder = %+v", card.Holder)
			}
			if card.RID != RID(testRIDSecret, is.KeyID(), c.ID) || card.KeyID != is.KeyID() {
				t.Errorf("rid/kid = %s/%s", card.RID, card.KeyID)
			}
			if len(card.Doses) != len(c.Doses) {
				t.Fatalf("card has %d doses, certificate %d", len(card.Doses), len(c.Doses))
			}
			for i, d := range card.Doses {
				p, _ := vaccine.Lookup(c.Doses[i].Product)
				if d.CVX != p.CVX || d.Date != c.Doses[i].Date || d.Lot != c.Doses[i].Lot ||
					d.Status != "completed" || d.Performer != c.Issuer.NameEn {
					t.Errorf("dose %d = %+v", i, d)
				}
			}
		})
	}
}

// TestPayloadRules checks the bundle against the specification's QR rules:
// no id, text, display or CodeableConcept.text; resource: references; meta
// absent.
func TestPayloadRules(t *testing.T) {
	p, err := testIssuer(t).Payload(certtest.Resident(t, "taro", certificate.Domestic), pinnedNow)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				switch k {
				case "id", "text", "display", "meta":
					if !strings.HasSuffix(path, ".actor") || k != "display" {
						t.Errorf("%s.%s must not appear", path, k)
					}
				case "reference", "fullUrl":
					if s, _ := child.(string); !strings.HasPrefix(s, "resource:") {
						t.Errorf("%s.%s = %q, want a resource: URI", path, k, s)
					}
				}
				walk(path+"."+k, child)
			}
		case []any:
			for _, child := range v {
				walk(path, child)
			}
		}
	}
	walk("", generic)
	if p.Nbf != float64(pinnedNow.Unix()) || p.Iss != testIssuerURL {
		t.Errorf("payload header = %v %v", p.Iss, p.Nbf)
	}
	// VCI 1.4 deprecated the extra top-level types (#immunization,
	// #covid19): a card says only that it is a health card.
	if len(p.VC.Type) != 1 || p.VC.Type[0] != TypeHealthCard {
		t.Errorf("vc.type = %q, want only %s", p.VC.Type, TypeHealthCard)
	}
}

// TestVerifyAcceptsDeprecatedTypes checks that cards of other issuers that
// still list the deprecated types verify: verifiers ignore types they do not
// need, and the specification's own example 00 carries them.
func TestVerifyAcceptsDeprecatedTypes(t *testing.T) {
	jws := strings.TrimSpace(readSpec(t, "example-00-d-jws.txt"))
	card, err := VerifyJWS(jws, VerifyOptions{Keys: specJWKS(t), Now: time.Date(2021, 5, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(card.Types, "https://smarthealth.cards#immunization") || !slices.Contains(card.Types, TypeHealthCard) {
		t.Fatalf("types = %q; the example lists #immunization", card.Types)
	}
}

// TestTamperedJWSFails changes every character of a valid JWS in turn; no
// change may verify.
func TestTamperedJWSFails(t *testing.T) {
	is := testIssuer(t)
	keys, _ := NewJWKS(is.PublicKey())
	qr, err := is.Issue(certtest.Resident(t, "hanako", certificate.Domestic), pinnedNow)
	if err != nil {
		t.Fatal(err)
	}
	jws, _ := DecodeQR(qr)
	opts := VerifyOptions{Keys: keys, Now: pinnedNow}
	if _, err := VerifyJWS(jws, opts); err != nil {
		t.Fatal(err)
	}
	for i := range len(jws) {
		if jws[i] == '.' {
			continue
		}
		repl := byte('A')
		if jws[i] == 'A' {
			repl = 'B'
		}
		bad := jws[:i] + string(repl) + jws[i+1:]
		if _, err := VerifyJWS(bad, opts); err == nil {
			t.Fatalf("JWS with character %d changed still verifies", i)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	is := testIssuer(t)
	old := loadKey(t, "issuer-key-old.pem")
	keys, _ := NewJWKS(is.PublicKey())
	oldOnly, _ := NewJWKS(old.Public())
	c := certtest.Resident(t, "hanako", certificate.Domestic)
	qr, err := is.Issue(c, pinnedNow)
	if err != nil {
		t.Fatal(err)
	}
	revoked := NewCRL(is.KeyID())
	if err := revoked.Revoke(RID(testRIDSecret, is.KeyID(), c.ID), time.Time{}); err != nil {
		t.Fatal(err)
	}
	laterOnly := NewCRL(is.KeyID())
	if err := laterOnly.Revoke(RID(testRIDSecret, is.KeyID(), c.ID), pinnedNow.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	staleKeys, _ := NewJWKS(is.PublicKey())
	staleKeys.Keys[0].CRLVersion = 5
	tests := []struct {
		name string
		qr   string
		opts VerifyOptions
		want error
	}{
		{"key not in set", qr, VerifyOptions{Keys: oldOnly, Now: pinnedNow}, ErrUnknownKey},
		{"no key set", qr, VerifyOptions{Now: pinnedNow}, ErrUnknownKey},
		{"other issuer", qr, VerifyOptions{Keys: keys, Issuer: "https://other.example", Now: pinnedNow}, ErrIssuer},
		{"before nbf", qr, VerifyOptions{Keys: keys, Now: pinnedNow.Add(-time.Hour)}, ErrNotYetValid},
		{"revoked", qr, VerifyOptions{Keys: keys, Now: pinnedNow, CRLs: []*CRL{revoked}}, ErrRevoked},
		{"stale CRL", qr, VerifyOptions{Keys: staleKeys, Now: pinnedNow, CRLs: []*CRL{revoked}}, ErrCRLStale},
		{"not prefixed", strings.TrimPrefix(qr, QRPrefix), VerifyOptions{Keys: keys, Now: pinnedNow}, ErrQRText},
		{"odd digits", qr[:len(qr)-1], VerifyOptions{Keys: keys, Now: pinnedNow}, ErrQRText},
		{"chunked", "shc:/1/2/5676", VerifyOptions{Keys: keys, Now: pinnedNow}, ErrChunked},
		{"digit pair out of range", "shc:/99" + qr[7:], VerifyOptions{Keys: keys, Now: pinnedNow}, ErrQRText},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(tc.qr, tc.opts); !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
		})
	}
	// A revocation that only covers cards issued before this one does not
	// touch it: the timestamp suffix at work.
	if _, err := Verify(qr, VerifyOptions{Keys: keys, Now: pinnedNow, CRLs: []*CRL{laterOnly}}); err != nil {
		t.Fatalf("card issued after the revocation timestamp: %v", err)
	}
	// Rotation: a key set holding the old and the new key verifies cards of both.
	oldIssuer, err := NewIssuer(testIssuerURL, old, testRIDSecret)
	if err != nil {
		t.Fatal(err)
	}
	oldQR, err := oldIssuer.Issue(c, pinnedNow)
	if err != nil {
		t.Fatal(err)
	}
	both, _ := NewJWKS(is.PublicKey(), old.Public())
	for _, q := range []string{qr, oldQR} {
		if _, err := Verify(q, VerifyOptions{Keys: both, Now: pinnedNow}); err != nil {
			t.Fatalf("rotated key set: %v", err)
		}
	}
}

// mismatchedSigner signs with one key but claims another.
type mismatchedSigner struct {
	signer crypto.Signer
	claims crypto.PublicKey
}

func (m mismatchedSigner) Public() crypto.PublicKey { return m.claims }
func (m mismatchedSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return m.signer.Sign(r, d, o)
}

func TestIssuerRejects(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	key := loadKey(t, "issuer-key.pem")
	for _, u := range []string{"http://vc.example", "https://vc.example/", "https://", "vc.example", "https://vc.example/?a=1", "https://u@vc.example"} {
		if _, err := NewIssuer(u, key, nil); !errors.Is(err, ErrIssuerURL) {
			t.Errorf("NewIssuer(%q) error = %v, want ErrIssuerURL", u, err)
		}
	}
	if _, err := NewIssuer(testIssuerURL, p384, nil); !errors.Is(err, ErrKey) {
		t.Errorf("P-384 key: error = %v, want ErrKey", err)
	}
	if _, err := NewIssuer(testIssuerURL, key, []byte("short")); err == nil {
		t.Error("short revocation secret accepted")
	}
	// A signer whose key is not the one it claims is refused at once.
	if _, err := NewIssuer(testIssuerURL, mismatchedSigner{signer: key, claims: loadKey(t, "issuer-key-old.pem").Public()}, nil); !errors.Is(err, ErrKey) {
		t.Errorf("mismatched signer: error = %v, want ErrKey", err)
	}
	c := certtest.Resident(t, "hanako", certificate.Domestic)
	c.Doses[0].Product = "sputnik"
	if _, err := testIssuer(t).Issue(c, pinnedNow); !errors.Is(err, ErrCertificate) {
		t.Errorf("unknown product: error = %v, want ErrCertificate", err)
	}
}

// TestTooLarge makes a card that cannot fit one QR code and checks the
// error, and checks that the largest card the certificate model allows
// (10 doses, 20-character lots, long names) still fits.
func TestTooLarge(t *testing.T) {
	is := testIssuer(t)
	c := certtest.Resident(t, "taro", certificate.Overseas)
	for len(c.Doses) < certificate.MaxDoses {
		d := c.Doses[len(c.Doses)-1]
		d.Number++
		c.Doses = append(c.Doses, d)
	}
	for i := range c.Doses {
		c.Doses[i].Lot = strings.Repeat(string(rune('A'+i)), certificate.MaxLotLen)
	}
	c.Holder.RomanFamily = strings.Repeat("W", 39)
	c.Holder.RomanGiven = strings.Repeat("V", 39)
	if _, err := is.Issue(c, pinnedNow); err != nil {
		t.Fatalf("largest certificate the model allows: %v", err)
	}
	p, err := is.Payload(c, pinnedNow)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		e := p.VC.CredentialSubject.FHIRBundle.Entry[1]
		e.Resource.LotNumber = strings.Repeat(string(rune('a'+i%26)), 7) + string(rune('0'+i%10))
		p.VC.CredentialSubject.FHIRBundle.Entry = append(p.VC.CredentialSubject.FHIRBundle.Entry, e)
	}
	if _, err := is.Sign(p); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized card: error = %v, want ErrTooLarge", err)
	}
	if _, err := EncodeQR(strings.Repeat("A", MaxJWSLen+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("EncodeQR of an oversized JWS: error = %v", err)
	}
}

func TestCRL(t *testing.T) {
	c := NewCRL("kid")
	ts := time.Unix(1700000000, 0)
	if err := c.Revoke("AAAAAAAAAAA", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke("BBBBBBBBBBB", ts); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke("not base64url!", ts); !errors.Is(err, ErrCRL) {
		t.Fatalf("bad rid: %v", err)
	}
	if c.Ctr != 3 {
		t.Fatalf("ctr = %d, want 3", c.Ctr)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"kid":"kid","method":"rid","ctr":3,"rids":["AAAAAAAAAAA","BBBBBBBBBBB.1700000000"]}` {
		t.Fatalf("CRL JSON = %s", b)
	}
	parsed, err := ParseCRL(b)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rid  string
		nbf  time.Time
		want bool
	}{
		{"AAAAAAAAAAA", ts.Add(1000 * time.Hour), true},
		{"BBBBBBBBBBB", ts.Add(-time.Second), true},
		{"BBBBBBBBBBB", ts.Add(400 * time.Millisecond), true},
		{"BBBBBBBBBBB", ts.Add(time.Second), false},
		{"CCCCCCCCCCC", ts, false},
		{"", ts, false},
	}
	for _, tc := range tests {
		if got := parsed.Revoked(tc.rid, tc.nbf); got != tc.want {
			t.Errorf("Revoked(%s, %v) = %v, want %v", tc.rid, tc.nbf, got, tc.want)
		}
	}
	for name, in := range map[string]string{
		"method":    `{"kid":"k","method":"hash-fhir","ctr":1,"rids":[]}`,
		"ctr":       `{"kid":"k","method":"rid","ctr":0,"rids":[]}`,
		"timestamp": `{"kid":"k","method":"rid","ctr":1,"rids":["AAAA.12x"]}`,
		"rid chars": `{"kid":"k","method":"rid","ctr":1,"rids":["A+A"]}`,
	} {
		if _, err := ParseCRL([]byte(in)); !errors.Is(err, ErrCRL) {
			t.Errorf("ParseCRL %s: %v", name, err)
		}
	}
}

func TestNewJWKS(t *testing.T) {
	a, b := loadKey(t, "issuer-key.pem"), loadKey(t, "issuer-key-old.pem")
	s, err := NewJWKS(a.Public(), b.Public())
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(`"d"`)) {
		t.Fatal("published key set contains a private part")
	}
	back, err := ParseJWKS(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*ecdsa.PrivateKey{a, b} {
		kid, _ := Thumbprint(&k.PublicKey)
		pub, _, err := back.Key(kid)
		if err != nil || !pub.Equal(&k.PublicKey) {
			t.Errorf("key %s did not round-trip: %v", kid, err)
		}
	}
	if _, err := NewJWKS(a.Public(), a.Public()); !errors.Is(err, ErrJWKS) {
		t.Errorf("duplicate key: %v", err)
	}
	if _, err := NewJWKS("not a key"); !errors.Is(err, ErrKey) {
		t.Errorf("wrong type: %v", err)
	}
}

func BenchmarkIssue(b *testing.B) {
	is := testIssuer(b)
	c := certtest.Resident(b, "taro", certificate.Domestic)
	for b.Loop() {
		if _, err := is.Issue(c, pinnedNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	is := testIssuer(b)
	keys, _ := NewJWKS(is.PublicKey())
	qr, err := is.Issue(certtest.Resident(b, "taro", certificate.Domestic), pinnedNow)
	if err != nil {
		b.Fatal(err)
	}
	opts := VerifyOptions{Keys: keys, Now: pinnedNow}
	for b.Loop() {
		if _, err := Verify(qr, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// switchingSigner signs with its own key until switched, then with another
// (a signer that goes wrong after it was checked).
type switchingSigner struct {
	crypto.Signer
	other    crypto.Signer
	switched *bool
}

func (s switchingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if *s.switched {
		return s.other.Sign(r, d, o)
	}
	return s.Signer.Sign(r, d, o)
}

// TestSampledSelfCheck: a signer that starts signing with the wrong key is
// caught within SelfCheckEvery cards.
func TestSampledSelfCheck(t *testing.T) {
	switched := false
	is, err := NewIssuer(testIssuerURL, switchingSigner{Signer: loadKey(t, "issuer-key.pem"), other: loadKey(t, "issuer-key-old.pem"), switched: &switched}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := certtest.Resident(t, "hanako", certificate.Domestic)
	if _, err := is.Issue(c, pinnedNow); err != nil {
		t.Fatal(err)
	}
	switched = true
	for i := 0; i < SelfCheckEvery; i++ {
		if _, err := is.Issue(c, pinnedNow); errors.Is(err, ErrKey) {
			return
		}
	}
	t.Fatalf("a signer signing with the wrong key went unnoticed for %d cards", SelfCheckEvery)
}
