// Package keyring manages the center's QR signing keys: the SMART Health
// Card keys, which rotate (a new key signs, old keys stay published), and
// the ICAO VDS-NC barcode signer with its certificate.
//
// Private keys live in a KeySource — files (FileSource) or a hardware
// token — and are handed out only as crypto.Signer; the store keeps their
// public halves, labels and status, which is what the JWKS and CRL
// endpoints publish and what every center instance reads to find the
// active key. Signers holds the keys the issuance path signs with and
// picks up a rotation, made here or on another instance, without a
// restart.
//
// The VDS-NC document signer and the kiosk issuing CA are certified by
// offline authorities (center/internal/authority): Request makes the key
// in the source and a certificate signing request, Install puts the
// authority's certificate in service. No authority's private key is kept
// here.
//
// Besides the source, the keyring's directory holds:
//
//	DIR/shc-rid.secret         32 random bytes for revocation identifiers (vc.rid)
//	DIR/vdsnc/csca.pem         country signing CA certificate (public; for verifiers)
//	DIR/requests/<p>-<l>.csr   pending certificate signing requests (public)
package keyring

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/authority"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// SHCKeyLifetime is how long a SMART Health Card key signs before it must
// be rotated (the specification asks for at least yearly rotation).
const SHCKeyLifetime = 365 * 24 * time.Hour

// Errors.
var (
	// ErrNoActiveKey means no active SMART Health Card key is recorded; run
	// the rotate-shc-key command (init does it for a new center).
	ErrNoActiveKey = errors.New("keyring: no active SMART Health Card key; run `issuance-center rotate-shc-key`")
	// ErrNoVDSSigner means no active VDS-NC barcode signer is recorded.
	ErrNoVDSSigner = errors.New("keyring: no active VDS-NC barcode signer")
)

// Keyring reads and rotates keys.
type Keyring struct {
	// Source holds the private halves.
	Source KeySource
	// Store holds the public halves, labels and status.
	Store store.SigningKeyStore
	// Dir holds the revocation secret, the country signing CA certificate
	// and the pending certificate requests.
	Dir string
	// KioskCAFile is the offline kiosk CA's certificate, the root the
	// kiosk issuing CA must chain to.
	KioskCAFile string
}

// newLabel returns a fresh key label: the purpose and 64 random bits.
func newLabel(purpose store.KeyPurpose) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return string(purpose) + "-" + hex.EncodeToString(b), nil
}

// RidSecretPath is where the revocation secret lives.
func (k Keyring) RidSecretPath() string { return filepath.Join(k.Dir, "shc-rid.secret") }

// RotateSHC creates a new SMART Health Card key in the source, makes it the
// active one and retires the previous active key, which stays published. It
// returns the new key ID.
func (k Keyring) RotateSHC(ctx context.Context, now time.Time) (string, error) {
	label, err := newLabel(store.PurposeSHC)
	if err != nil {
		return "", err
	}
	signer, err := k.Source.Generate(ctx, store.PurposeSHC, label)
	if err != nil {
		return "", err
	}
	pubKey, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("keyring: the key source made a %T, want an ECDSA P-256 key", signer.Public())
	}
	kid, err := shc.Thumbprint(pubKey)
	if err != nil {
		return "", err
	}
	jwk, err := shc.NewJWK(pubKey)
	if err != nil {
		return "", err
	}
	pub, err := json.Marshal(jwk)
	if err != nil {
		return "", err
	}
	if err := k.ensureRidSecret(); err != nil {
		return "", err
	}
	previous, err := k.Store.ListSigningKeys(ctx, store.PurposeSHC)
	if err != nil {
		return "", err
	}
	if err := k.Store.PutSigningKey(ctx, store.SigningKey{
		KID: kid, Purpose: store.PurposeSHC, Format: store.FormatJWK, PublicKey: pub, KeyLabel: label,
		Created: now, NotAfter: now.Add(SHCKeyLifetime), Status: store.KeyActive,
	}); err != nil {
		return "", err
	}
	for _, p := range previous {
		if p.Status == store.KeyActive {
			if err := k.Store.SetSigningKeyStatus(ctx, p.KID, store.KeyRetired, now); err != nil {
				return "", err
			}
		}
	}
	return kid, nil
}

func (k Keyring) ensureRidSecret() error {
	path := k.RidSecretPath()
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	secret := make([]byte, shc.MinRIDSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	return writeSecret(path, secret)
}

func writeSecret(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// active returns the newest active key of purpose.
func (k Keyring) active(ctx context.Context, purpose store.KeyPurpose) (store.SigningKey, bool, error) {
	keys, err := k.Store.ListSigningKeys(ctx, purpose)
	if err != nil {
		return store.SigningKey{}, false, err
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].Status == store.KeyActive {
			return keys[i], true, nil
		}
	}
	return store.SigningKey{}, false, nil
}

// ActiveSHC returns the active SMART Health Card key, newest first if
// several are marked active, after checking the source's key matches the
// published key.
func (k Keyring) ActiveSHC(ctx context.Context) (crypto.Signer, string, error) {
	sk, ok, err := k.active(ctx, store.PurposeSHC)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", ErrNoActiveKey
	}
	signer, err := k.Source.Signer(ctx, store.PurposeSHC, sk.Label())
	if err != nil {
		return nil, "", err
	}
	ec, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return nil, "", fmt.Errorf("keyring: SHC key %s is not ECDSA", sk.KID)
	}
	if got, _ := shc.Thumbprint(ec); got != sk.KID {
		return nil, "", fmt.Errorf("keyring: the key source's key %s holds key %s, not the published %s", sk.Label(), got, sk.KID)
	}
	return signer, sk.KID, nil
}

// RidSecret reads the revocation secret.
func (k Keyring) RidSecret() ([]byte, error) {
	path := k.RidSecretPath()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keyring: %s has mode %04o; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if len(b) < shc.MinRIDSecretLen {
		return nil, fmt.Errorf("keyring: %s is shorter than %d bytes", path, shc.MinRIDSecretLen)
	}
	return b, nil
}

// JWKS returns every published (active or retired) SMART Health Card key.
func (k Keyring) JWKS(ctx context.Context) (*shc.JWKS, error) {
	keys, err := k.Store.ListSigningKeys(ctx, store.PurposeSHC)
	if err != nil {
		return nil, err
	}
	var pubs []crypto.PublicKey
	for _, sk := range keys {
		if !sk.Status.Published() {
			continue
		}
		var jwk shc.JWK
		if err := json.Unmarshal(sk.PublicKey, &jwk); err != nil {
			return nil, fmt.Errorf("keyring: stored key %s: %w", sk.KID, err)
		}
		pub, err := jwk.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("keyring: stored key %s: %w", sk.KID, err)
		}
		pubs = append(pubs, pub)
	}
	return shc.NewJWKS(pubs...)
}

// CSCAPath is the country signing CA certificate verifiers trust.
func (k Keyring) CSCAPath() string { return filepath.Join(k.Dir, "vdsnc", "csca.pem") }

// CreateVDS gives a test center a VDS-NC barcode signer at once: a
// throwaway country signing CA, made in memory and forgotten, certifies a
// signer whose key is made in the source. Its certificate is written to
// CSCAPath for verifiers. Real centers request the signer's certificate
// from their offline CSCA instead (Request, Install).
func (k Keyring) CreateVDS(ctx context.Context, now time.Time) error {
	ca, err := authority.New(authority.CSCA, "kioskcert Test CSCA Japan", "JP", now)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(k.CSCAPath()), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(k.CSCAPath(), authority.EncodeCert(ca.Cert.Raw), 0o644); err != nil {
		return err
	}
	_, csr, err := k.Request(ctx, store.PurposeVDSNC)
	if err != nil {
		return err
	}
	cert, err := ca.SignDocumentSigner(csr, now)
	if err != nil {
		return err
	}
	_, err = k.Install(ctx, cert, now)
	return err
}

// VDSSigner opens the active barcode signer: its certificate from the
// store, its key from the source.
func (k Keyring) VDSSigner(ctx context.Context) (*vdsnc.Signer, error) {
	sk, ok, err := k.active(ctx, store.PurposeVDSNC)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNoVDSSigner
	}
	block, _ := pem.Decode(sk.PublicKey)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("keyring: VDS-NC signer %s has no certificate in the store", sk.KID)
	}
	key, err := k.Source.Signer(ctx, store.PurposeVDSNC, sk.Label())
	if err != nil {
		return nil, err
	}
	return vdsnc.NewSigner(key, block.Bytes)
}
