package shc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/golden")

// testIssuerURL is the iss of test cards.
const testIssuerURL = "https://vc.kioskcert.example/012041"

// testRIDSecret is the test revocation secret (32 bytes; protects nothing).
var testRIDSecret = []byte("kioskcert-test-revocation-secret")

// pinnedNow is the clock of every golden file: 2024-04-01 09:00 JST.
var pinnedNow = time.Date(2024, 4, 1, 9, 0, 0, 0, time.FixedZone("JST", 9*3600))

// loadKey reads a PKCS#8 P-256 key from testdata.
func loadKey(t testing.TB, name string) *ecdsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", name)
		return nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}

func testIssuer(t testing.TB) *Issuer {
	t.Helper()
	is, err := NewIssuer(testIssuerURL, loadKey(t, "issuer-key.pem"), testRIDSecret)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\n got %s\nwant %s", name, got, want)
	}
}

func readSpec(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "spec", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func specJWKS(t testing.TB) *JWKS {
	t.Helper()
	s, err := ParseJWKS([]byte(readSpec(t, "jwks.json")))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
