// Package keyring manages the center's QR signing keys: the SMART Health
// Card keys, which rotate (a new key signs, old keys stay published), and
// the ICAO VDS-NC barcode signer with its certificate.
//
// Private keys live as PKCS#8 files (mode 0600) under one directory and are
// handed out only as crypto.Signer; the store keeps their public halves and
// status, which is what the JWKS and CRL endpoints publish. Layout:
//
//	DIR/shc/<kid>.key      one per SMART Health Card key; kid = RFC 7638 thumbprint
//	DIR/shc-rid.secret     32 random bytes for revocation identifiers (vc.rid)
//	DIR/vdsnc/signer.key   barcode signer key
//	DIR/vdsnc/signer.pem   barcode signer certificate (from the country signing CA)
//	DIR/vdsnc/csca.pem     country signing CA certificate (public; for verifiers)
package keyring

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/keyfile"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// SHCKeyLifetime is how long a SMART Health Card key signs before it must
// be rotated (the specification asks for at least yearly rotation).
const SHCKeyLifetime = 365 * 24 * time.Hour

// ErrNoActiveKey means no active SMART Health Card key is recorded; run
// the rotate-shc-key command (init-demo does it for the demo).
var ErrNoActiveKey = errors.New("keyring: no active SMART Health Card key; run `issuance-center rotate-shc-key`")

// Keyring reads and rotates keys under one directory.
type Keyring struct {
	Dir   string
	Store store.SigningKeyStore
}

func (k Keyring) shcKeyPath(kid string) string { return filepath.Join(k.Dir, "shc", kid+".key") }

// RidSecretPath is where the revocation secret lives.
func (k Keyring) RidSecretPath() string { return filepath.Join(k.Dir, "shc-rid.secret") }

// RotateSHC creates a new SMART Health Card key, makes it the active one
// and retires the previous active key, which stays published. It returns
// the new key ID.
func (k Keyring) RotateSHC(ctx context.Context, now time.Time) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("keyring: generate SHC key: %w", err)
	}
	kid, err := shc.Thumbprint(&key.PublicKey)
	if err != nil {
		return "", err
	}
	jwk, err := shc.NewJWK(&key.PublicKey)
	if err != nil {
		return "", err
	}
	pub, err := json.Marshal(jwk)
	if err != nil {
		return "", err
	}
	if err := keyfile.Write(k.shcKeyPath(kid), key); err != nil {
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
		KID: kid, Purpose: store.PurposeSHC, Format: store.FormatJWK, PublicKey: pub,
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

// ActiveSHC returns the active SMART Health Card key, newest first if
// several are marked active, after checking the key file matches the
// published key.
func (k Keyring) ActiveSHC(ctx context.Context) (crypto.Signer, string, error) {
	keys, err := k.Store.ListSigningKeys(ctx, store.PurposeSHC)
	if err != nil {
		return nil, "", err
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].Status != store.KeyActive {
			continue
		}
		kid := keys[i].KID
		signer, err := keyfile.Load(k.shcKeyPath(kid))
		if err != nil {
			return nil, "", err
		}
		ec, ok := signer.Public().(*ecdsa.PublicKey)
		if !ok {
			return nil, "", fmt.Errorf("keyring: SHC key %s is not ECDSA", kid)
		}
		if got, _ := shc.Thumbprint(ec); got != kid {
			return nil, "", fmt.Errorf("keyring: key file for %s holds key %s", kid, got)
		}
		return signer, kid, nil
	}
	return nil, "", ErrNoActiveKey
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

// VDS paths.
func (k Keyring) vdsPath(name string) string { return filepath.Join(k.Dir, "vdsnc", name) }

// CSCAPath is the country signing CA certificate verifiers trust.
func (k Keyring) CSCAPath() string { return k.vdsPath("csca.pem") }

// CreateVDS creates a test country signing CA and a barcode signer
// certificate under it. The CSCA private key is written beside it for
// issuing the next signer; in production it lives offline.
func (k Keyring) CreateVDS(ctx context.Context, now time.Time) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caDER, err := vdsnc.CreateCSCA(rand.Reader, vdsnc.CSCATemplate{CommonName: "kioskcert Test CSCA Japan", Country: "JP", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour)}, caKey)
	if err != nil {
		return err
	}
	signerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	signerDER, err := vdsnc.CreateBarcodeSigner(rand.Reader, vdsnc.SignerTemplate{CommonName: "kioskcert Test Barcode Signer", Country: "JP", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * 365 * 24 * time.Hour)}, &signerKey.PublicKey, caDER, caKey)
	if err != nil {
		return err
	}
	if err := keyfile.Write(k.vdsPath("csca.key"), caKey); err != nil {
		return err
	}
	if err := keyfile.Write(k.vdsPath("signer.key"), signerKey); err != nil {
		return err
	}
	for name, der := range map[string][]byte{"csca.pem": caDER, "signer.pem": signerDER} {
		if err := os.WriteFile(k.vdsPath(name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return err
		}
	}
	cert, err := x509.ParseCertificate(signerDER)
	if err != nil {
		return err
	}
	return k.Store.PutSigningKey(ctx, store.SigningKey{
		KID: fmt.Sprintf("vdsnc-%X", cert.SerialNumber.Bytes()), Purpose: store.PurposeVDSNC, Format: store.FormatPEM,
		PublicKey: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signerDER}),
		Created:   now, NotAfter: cert.NotAfter, Status: store.KeyActive,
	})
}

// VDSSigner loads the barcode signer.
func (k Keyring) VDSSigner() (*vdsnc.Signer, error) {
	key, err := keyfile.Load(k.vdsPath("signer.key"))
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(k.vdsPath("signer.pem"))
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("keyring: %s holds no certificate", k.vdsPath("signer.pem"))
	}
	return vdsnc.NewSigner(key, block.Bytes)
}
