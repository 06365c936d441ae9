package keyring

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/authority"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// The kiosk issuing CA goes through the ceremony: key in the source, CSR
// to the offline kiosk CA, certificate installed; a second round replaces
// it and retires the first. Certificates from the wrong authority, for
// keys never requested, or with the wrong profile are refused.
func TestKioskIssuingCACeremony(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 4, 1, 9, 0, 0, 0, time.UTC)
	k := newKeyring(t)
	root, err := authority.Create(filepath.Join(t.TempDir(), "kiosk-ca"), authority.KioskCA, "Test Kiosk CA", "JP", now)
	if err != nil {
		t.Fatal(err)
	}
	k.KioskCAFile = filepath.Join(root.Dir, authority.CertFile)
	if _, err := k.KioskIssuingCA(ctx); !errors.Is(err, ErrNoKioskCA) {
		t.Fatalf("KioskIssuingCA before installing: %v, want ErrNoKioskCA", err)
	}

	other, err := authority.New(authority.KioskCA, "Another Kiosk CA", "JP", now)
	if err != nil {
		t.Fatal(err)
	}
	csca, err := authority.New(authority.CSCA, "Test CSCA", "JP", now)
	if err != nil {
		t.Fatal(err)
	}
	_, csr, err := k.Request(ctx, store.PurposeKioskCA)
	if err != nil {
		t.Fatal(err)
	}
	wrongRoot, err := other.SignKioskChannel(csr, authority.ProfileIssuingCA, now)
	if err != nil {
		t.Fatal(err)
	}
	leafProfile, err := root.SignKioskChannel(csr, authority.ProfileKiosk, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := csca.SignKioskChannel(csr, authority.ProfileIssuingCA, now); !errors.Is(err, authority.ErrWrongKind) {
		t.Fatalf("the CSCA certified a kiosk issuing CA: %v", err)
	}
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	strangerCSR, err := authority.Request(stranger, &x509.CertificateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	notRequested, err := root.SignKioskChannel(strangerCSR, authority.ProfileIssuingCA, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string][]byte{"another root": wrongRoot, "kiosk profile": leafProfile, "key never requested": notRequested} {
		if _, err := k.Install(ctx, cert, now); err == nil {
			t.Errorf("installed a certificate from %s", name)
		}
	}

	good, err := root.SignKioskChannel(csr, authority.ProfileIssuingCA, now)
	if err != nil {
		t.Fatal(err)
	}
	first, err := k.Install(ctx, good, now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := k.KioskIssuingCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The online CA issues a kiosk certificate that chains to the root.
	kioskKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, err := ca.IssueKiosk("K-0001", &kioskKey.PublicKey, now)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Cert)
	inter.AddCert(ca.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("kiosk certificate from the issuing CA does not chain to the kiosk CA: %v", err)
	}
	if _, err := k.Install(ctx, good, now); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("installing the same certificate twice: %v, want ErrNoRequest", err)
	}

	// Replacement (a compromised or expiring issuing CA).
	_, csr2, err := k.Request(ctx, store.PurposeKioskCA)
	if err != nil {
		t.Fatal(err)
	}
	next, err := root.SignKioskChannel(csr2, authority.ProfileIssuingCA, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	second, err := k.Install(ctx, next, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	prev, err := k.Store.SigningKey(ctx, first.KID)
	if err != nil || prev.Status != store.KeyRetired {
		t.Fatalf("previous issuing CA: %+v, %v; want retired", prev, err)
	}
	ca2, err := k.KioskIssuingCA(ctx)
	if err != nil || !ca2.Cert.Equal(mustCert(t, second.PublicKey)) {
		t.Fatalf("active issuing CA after replacement: %v", err)
	}
	// Only the refused requests' files remain: the stranger's was never ours.
	left, _ := os.ReadDir(k.RequestsDir())
	if len(left) != 0 {
		t.Fatalf("requests left: %v", left)
	}
}

func mustCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	certs, err := authority.ParseCerts(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
