package keyring

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/authority"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// ErrNoKioskCA means no kiosk issuing CA is installed: request one
// (`issuance-center keys request -purpose kioskca`), have the offline kiosk
// CA certify it and install the certificate (docs/KEYS.md).
var ErrNoKioskCA = errors.New("keyring: no kiosk issuing CA is installed; see docs/KEYS.md (keys request -purpose kioskca, then keys install)")

// ErrNoRequest means a certificate offered for installation matches no
// pending request of this center.
var ErrNoRequest = errors.New("keyring: the certificate's key matches no pending request of this center")

// RequestsDir holds the pending certificate signing requests: public
// files, named <purpose>-<label>.csr, removed when their certificate is
// installed.
func (k Keyring) RequestsDir() string { return filepath.Join(k.Dir, "requests") }

// Close releases the key source when it holds resources (a token).
func (k Keyring) Close() error {
	if c, ok := k.Source.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Request makes a new key for a certified purpose (the VDS-NC document
// signer or the kiosk issuing CA) inside the key source and returns a
// certificate signing request for it, also written to RequestsDir. Carry
// it to the offline authority; Install puts the certificate in service.
func (k Keyring) Request(ctx context.Context, purpose store.KeyPurpose) (label string, csrPEM []byte, err error) {
	var cn string
	switch purpose {
	case store.PurposeVDSNC:
		cn = "kioskcert Barcode Signer"
	case store.PurposeKioskCA:
		cn = "kioskcert Kiosk Issuing CA"
	default:
		return "", nil, fmt.Errorf("keyring: %s keys are not certified by an authority (want vdsnc or kioskca)", purpose)
	}
	if label, err = newLabel(purpose); err != nil {
		return "", nil, err
	}
	signer, err := k.Source.Generate(ctx, purpose, label)
	if err != nil {
		return "", nil, err
	}
	csrPEM, err = authority.Request(signer, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Country: []string{"JP"}}})
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(k.RequestsDir(), 0o700); err != nil {
		return "", nil, err
	}
	path := filepath.Join(k.RequestsDir(), string(purpose)+"-"+label+".csr")
	if err := os.WriteFile(path, csrPEM, 0o644); err != nil {
		return "", nil, fmt.Errorf("keyring: %w", err)
	}
	return label, csrPEM, nil
}

// pendingFor finds the pending request whose key is pub.
func (k Keyring) pendingFor(pub crypto.PublicKey) (purpose store.KeyPurpose, label, path string, err error) {
	entries, err := os.ReadDir(k.RequestsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", "", fmt.Errorf("keyring: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".csr")
		if !ok {
			continue
		}
		p, l, ok := strings.Cut(name, "-")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(k.RequestsDir(), e.Name()))
		if err != nil {
			return "", "", "", fmt.Errorf("keyring: %w", err)
		}
		csr, err := authority.ParseRequest(b)
		if err != nil {
			continue
		}
		if eq, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(pub) {
			return store.KeyPurpose(p), l, filepath.Join(k.RequestsDir(), e.Name()), nil
		}
	}
	return "", "", "", ErrNoRequest
}

// Install puts an authority's certificate for a pending request in
// service: the certificate must be for a key this center requested, and
// chain to the authority the center trusts for that purpose (the CSCA at
// CSCAPath, the kiosk CA at KioskCAFile). It becomes the active key of its
// purpose; the previous one is retired. certPEM may carry the chain after
// the certificate.
func (k Keyring) Install(ctx context.Context, certPEM []byte, now time.Time) (store.SigningKey, error) {
	certs, err := authority.ParseCerts(certPEM)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("keyring: certificate to install: %w", err)
	}
	leaf := certs[0]
	purpose, label, reqPath, err := k.pendingFor(leaf.PublicKey)
	if err != nil {
		return store.SigningKey{}, err
	}
	signer, err := k.Source.Signer(ctx, purpose, label)
	if err != nil {
		return store.SigningKey{}, err
	}
	if !publicEqual(signer.Public(), leaf.PublicKey) {
		return store.SigningKey{}, fmt.Errorf("keyring: the key source's key %s is not the requested key", label)
	}
	var kid string
	switch purpose {
	case store.PurposeVDSNC:
		csca, err := authority.LoadCert(k.CSCAPath())
		if err != nil {
			return store.SigningKey{}, fmt.Errorf("keyring: the CSCA certificate this center trusts: %w", err)
		}
		if err := leaf.CheckSignatureFrom(csca); err != nil {
			return store.SigningKey{}, fmt.Errorf("keyring: the document signer certificate is not signed by the CSCA in %s: %w", k.CSCAPath(), err)
		}
		// NewSigner checks the certificate is a barcode signer for this key.
		if _, err := vdsnc.NewSigner(signer, leaf.Raw); err != nil {
			return store.SigningKey{}, err
		}
		kid = fmt.Sprintf("vdsnc-%X", leaf.SerialNumber.Bytes())
	case store.PurposeKioskCA:
		root, err := authority.LoadCert(k.KioskCAFile)
		if err != nil {
			return store.SigningKey{}, fmt.Errorf("keyring: the kiosk CA certificate this center trusts: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(root)
		if !leaf.IsCA {
			return store.SigningKey{}, errors.New("keyring: the kiosk issuing CA certificate is not a CA certificate (sign it with -profile issuing-ca)")
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return store.SigningKey{}, fmt.Errorf("keyring: the kiosk issuing CA certificate does not chain to the kiosk CA in %s: %w", k.KioskCAFile, err)
		}
		kid = fmt.Sprintf("kioskca-%X", leaf.SerialNumber.Bytes())
	default:
		return store.SigningKey{}, fmt.Errorf("keyring: pending request of unknown purpose %q", purpose)
	}
	previous, err := k.Store.ListSigningKeys(ctx, purpose)
	if err != nil {
		return store.SigningKey{}, err
	}
	sk := store.SigningKey{
		KID: kid, Purpose: purpose, Format: store.FormatPEM,
		PublicKey: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), KeyLabel: label,
		Created: now, NotAfter: leaf.NotAfter, Status: store.KeyActive,
	}
	if err := k.Store.PutSigningKey(ctx, sk); err != nil {
		return store.SigningKey{}, err
	}
	for _, p := range previous {
		if p.Status == store.KeyActive {
			if err := k.Store.SetSigningKeyStatus(ctx, p.KID, store.KeyRetired, now); err != nil {
				return store.SigningKey{}, err
			}
		}
	}
	if err := os.Remove(reqPath); err != nil {
		return store.SigningKey{}, fmt.Errorf("keyring: installed %s, but removing its request: %w", kid, err)
	}
	return k.Store.SigningKey(ctx, kid)
}

// KioskIssuingCA opens the active kiosk issuing CA: its certificate from
// the store, its key from the source.
func (k Keyring) KioskIssuingCA(ctx context.Context) (*kioskpki.CA, error) {
	sk, ok, err := k.active(ctx, store.PurposeKioskCA)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNoKioskCA
	}
	block, _ := pem.Decode(sk.PublicKey)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("keyring: kiosk issuing CA %s has no certificate in the store", sk.KID)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keyring: kiosk issuing CA %s: %w", sk.KID, err)
	}
	signer, err := k.Source.Signer(ctx, store.PurposeKioskCA, sk.Label())
	if err != nil {
		return nil, err
	}
	if !publicEqual(signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("keyring: the key source's key %s is not the kiosk issuing CA's", sk.Label())
	}
	return &kioskpki.CA{Cert: cert, Signer: signer}, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
