package vdsnc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "create missing test keys and certificates and rewrite golden files")

// pinnedNow is the verification clock of the tests: 2024-04-01 09:00 JST.
var pinnedNow = time.Date(2024, 4, 1, 9, 0, 0, 0, time.FixedZone("JST", 9*3600))

// testPKI is a CSCA and a barcode signer it issued.
type testPKI struct {
	cscaKey, signerKey *ecdsa.PrivateKey
	csca, signer       *x509.Certificate
	cscaDER, signerDER []byte
}

// fixturePKI loads the fixed test PKI from testdata, creating it with
// -update when missing (see testdata/README.md).
func fixturePKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{}
	p.cscaKey = fixtureKey(t, "csca-key.pem")
	p.signerKey = fixtureKey(t, "signer-key.pem")
	p.cscaDER = fixtureCert(t, "csca.pem", func() []byte {
		der, err := CreateCSCA(rand.Reader, CSCATemplate{CommonName: "Japan Test CSCA", Country: "JP",
			NotBefore: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2044, 1, 1, 0, 0, 0, 0, time.UTC)}, p.cscaKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	})
	p.signerDER = fixtureCert(t, "signer.pem", func() []byte {
		der, err := CreateBarcodeSigner(rand.Reader, SignerTemplate{CommonName: "Japan Test VDS-NC Signer 1", Country: "JP",
			NotBefore: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2034, 1, 1, 0, 0, 0, 0, time.UTC)},
			&p.signerKey.PublicKey, p.cscaDER, p.cscaKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	})
	var err error
	if p.csca, err = x509.ParseCertificate(p.cscaDER); err != nil {
		t.Fatal(err)
	}
	if p.signer, err = x509.ParseCertificate(p.signerDER); err != nil {
		t.Fatal(err)
	}
	return p
}

// freshPKI makes a throw-away PKI with the given signer template.
func freshPKI(t testing.TB, st SignerTemplate) *testPKI {
	t.Helper()
	p := &testPKI{}
	var err error
	if p.cscaKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if p.signerKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if p.cscaDER, err = CreateCSCA(rand.Reader, CSCATemplate{CommonName: "Other Test CSCA", Country: "JP",
		NotBefore: pinnedNow.AddDate(-1, 0, 0), NotAfter: pinnedNow.AddDate(10, 0, 0)}, p.cscaKey); err != nil {
		t.Fatal(err)
	}
	if p.signerDER, err = CreateBarcodeSigner(rand.Reader, st, &p.signerKey.PublicKey, p.cscaDER, p.cscaKey); err != nil {
		t.Fatal(err)
	}
	p.csca, _ = x509.ParseCertificate(p.cscaDER)
	p.signer, _ = x509.ParseCertificate(p.signerDER)
	return p
}

func fixtureKey(t testing.TB, name string) *ecdsa.PrivateKey {
	t.Helper()
	path := filepath.Join("testdata", name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && *update {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		b = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
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

func fixtureCert(t testing.TB, name string, create func() []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && *update {
		b = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: create()})
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", name)
		return nil
	}
	return blk.Bytes
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
