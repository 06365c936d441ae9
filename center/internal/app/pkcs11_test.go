//go:build pkcs11

package app_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/backend"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/keyring/pkcs11source"
	"github.com/kioskcert/kioskcert/center/internal/keyring/pkcs11source/softhsmtest"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// TestProductionCenterPKCS11 runs a production center whose signing keys
// and kiosk issuing CA live in a SoftHSM2 token: the ceremony, enrollment
// by CSR, issuing, renewal, rotation and a restart all work, the token's
// keys are sensitive and not extractable, and no file of the center holds
// a signer's or an authority's private key.
func TestProductionCenterPKCS11(t *testing.T) {
	tok := softhsmtest.New(t, "kioskcert-test")
	pinFile := filepath.Join(t.TempDir(), "token.pin")
	if err := os.WriteFile(pinFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ks := config.KeySource{Type: "pkcs11", Module: tok.Module, TokenLabel: tok.Label, PINFile: pinFile, Sessions: 4}
	tc, _ := productionCenter(t, ks)
	exerciseProduction(t, tc)
	tc.stop()

	// Every key in the store is in the token, sensitive and not extractable.
	src, err := pkcs11source.Open(pkcs11source.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b, err := backend.Open(context.Background(), tc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	keys, err := b.Store.ListSigningKeys(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	purposes := map[store.KeyPurpose]int{}
	for _, sk := range keys {
		signer, err := src.Signer(context.Background(), sk.Purpose, sk.Label())
		if err != nil {
			t.Fatalf("key %s (%s) is not in the token: %v", sk.KID, sk.Purpose, err)
		}
		extractable, sensitive, err := src.Extractable(signer)
		if err != nil {
			t.Fatal(err)
		}
		if extractable || !sensitive {
			t.Errorf("key %s: extractable=%v sensitive=%v", sk.KID, extractable, sensitive)
		}
		purposes[sk.Purpose]++
	}
	if purposes[store.PurposeSHC] != 2 || purposes[store.PurposeVDSNC] != 1 || purposes[store.PurposeKioskCA] != 1 {
		t.Fatalf("keys in the store by purpose: %v", purposes)
	}

	// No file on the online center holds a signer's or an authority's
	// private key. The private key files are the TLS keys of the kiosk
	// channel (pki/center.key) and of the operations console
	// (pki/console.key): transport keys that sign nothing anyone verifies
	// later.
	var found []string
	err = filepath.WalkDir(tc.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if holdsPrivateKey(data) {
			rel, _ := filepath.Rel(tc.dir, path)
			found = append(found, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(found)
	if want := []string{filepath.Join("pki", "center.key"), filepath.Join("pki", "console.key")}; !slices.Equal(found, want) {
		t.Fatalf("files holding private keys on the online center: %v; want only the TLS keys %v", found, want)
	}
	if strings.HasPrefix(tok.Dir, tc.dir) {
		t.Fatal("the token lives inside the center's directory")
	}
}

// holdsPrivateKey reports whether data is or contains a private key: a
// PEM private key block anywhere, or a whole DER PKCS#8 / SEC 1 key.
func holdsPrivateKey(data []byte) bool {
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if strings.Contains(blk.Type, "PRIVATE KEY") {
			return true
		}
	}
	if strings.Contains(string(data), "PRIVATE KEY") {
		return true
	}
	if _, err := x509.ParsePKCS8PrivateKey(data); err == nil {
		return true
	}
	_, err := x509.ParseECPrivateKey(data)
	return err == nil
}
