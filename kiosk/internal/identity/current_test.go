package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testChain returns a PEM chain for pub named cn, signed by a throwaway CA.
func testChain(t *testing.T, cn string, pub crypto.PublicKey) []byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"}}, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestInstall: a renewed certificate replaces the current one on disk and
// for the next handshake, the old one is kept as .previous, and a
// certificate for another key or another kiosk is refused and changes
// nothing.
func TestInstall(t *testing.T) {
	dir := t.TempDir()
	key, err := CreateFileKey(filepath.Join(dir, "kiosk.key"))
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(dir, "kiosk.pem")
	first := testChain(t, "K1", key.Public())
	if err := os.WriteFile(certFile, first, 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := Load(certFile, key)
	if err != nil {
		t.Fatal(err)
	}
	if id.KioskID() != "K1" {
		t.Fatalf("kiosk ID %q", id.KioskID())
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tt := range []struct {
		name  string
		chain []byte
	}{
		{"another key", testChain(t, "K1", other.Public())},
		{"another kiosk", testChain(t, "K2", key.Public())},
		{"the current certificate", first},
		{"no certificate", []byte("nothing")},
	} {
		if err := id.Install(tt.chain); err == nil {
			t.Errorf("%s: installed", tt.name)
		}
		if b, _ := os.ReadFile(certFile); !bytes.Equal(b, first) {
			t.Fatalf("%s: the certificate file changed", tt.name)
		}
		if _, err := os.Stat(certFile + ".previous"); err == nil {
			t.Fatalf("%s: a .previous was written", tt.name)
		}
	}
	next := testChain(t, "K1", key.Public())
	if err := id.Install(next); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(certFile); !bytes.Equal(b, next) {
		t.Fatal("the new certificate is not stored")
	}
	if b, _ := os.ReadFile(certFile + ".previous"); !bytes.Equal(b, first) {
		t.Fatal("the old certificate is not kept as .previous")
	}
	c, err := id.GetClientCertificate(nil)
	if err != nil || !bytes.Equal(c.Leaf.Raw, id.Leaf().Raw) {
		t.Fatal("the handshake does not get the new certificate")
	}
	blk, _ := pem.Decode(next)
	if !bytes.Equal(c.Certificate[0], blk.Bytes) {
		t.Fatal("the handshake does not get the new certificate")
	}
	// A restart loads the new one.
	again, err := Load(certFile, key)
	if err != nil || !bytes.Equal(again.Leaf().Raw, blk.Bytes) {
		t.Fatalf("reload: %v", err)
	}
	csr, err := id.Request()
	if err != nil {
		t.Fatal(err)
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil || req.CheckSignature() != nil || req.Subject.CommonName != "K1" {
		t.Fatalf("renewal CSR: %v", err)
	}
}
