package admin

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/authority"
	"github.com/kioskcert/kioskcert/center/internal/backend"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/enrollment"
	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/keyring/pkcs11source"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/keyfile"
)

// OpenKeyring returns the center's keyring: the key source the
// configuration names (files under the keys directory, or a PKCS#11
// token), public halves in the store. Close it to release the token.
func OpenKeyring(cfg *config.Config, b *backend.Backend) (keyring.Keyring, error) {
	src, err := OpenKeySource(cfg)
	if err != nil {
		return keyring.Keyring{}, err
	}
	dir := cfg.Path(cfg.KeysDir)
	return keyring.Keyring{Source: src, Store: b.Store, Dir: dir, KioskCAFile: cfg.Path(cfg.KioskCAFile)}, nil
}

// OpenKeySource opens the configured key source.
func OpenKeySource(cfg *config.Config) (keyring.KeySource, error) {
	ks := cfg.KeySource
	if !ks.IsPKCS11() {
		return keyring.FileSource{Dir: cfg.Path(cfg.KeysDir)}, nil
	}
	pin, err := readPIN(cfg)
	if err != nil {
		return nil, err
	}
	src, err := pkcs11source.Open(pkcs11source.Config{Module: ks.Module, TokenLabel: ks.TokenLabel, PIN: pin, Sessions: ks.Sessions})
	if err != nil {
		return nil, err
	}
	return src, nil
}

// readPIN reads the token PIN from the configured file (which others must
// not be able to read) or environment variable.
func readPIN(cfg *config.Config) (string, error) {
	ks := cfg.KeySource
	if ks.PINEnv != "" {
		pin, ok := os.LookupEnv(ks.PINEnv)
		if !ok || pin == "" {
			return "", fmt.Errorf("admin: the token PIN variable %s is not set", ks.PINEnv)
		}
		return pin, nil
	}
	path := cfg.Path(ks.PINFile)
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("admin: token PIN file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin: %s has mode %04o; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin: token PIN file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// CertificateRequest is a pending request for an offline authority.
type CertificateRequest struct {
	Purpose store.KeyPurpose `json:"purpose"`
	Label   string           `json:"label"`
	// CSRPEM is the PEM certificate signing request to carry to the authority.
	CSRPEM []byte `json:"csrPem"`
}

// Installed says what a certificate was installed as.
type Installed struct {
	// Purpose is vdsnc, kioskca or tls.
	Purpose  string    `json:"purpose"`
	KID      string    `json:"kid,omitempty"`
	NotAfter time.Time `json:"notAfter"`
}

// Audit event types of the key ceremony.
const (
	EventKeyRequested       store.EventType = "key_requested"
	EventCertificateInstall store.EventType = "key_certificate_installed"
	tlsPurpose                              = "tls"
	tlsRequestFile                          = "tls.csr"
)

// RequestCertificate makes a new key in the key source for a purpose an
// offline authority certifies (vdsnc: the CSCA; kioskca: the kiosk CA)
// and returns its certificate signing request.
func (s *Service) RequestCertificate(ctx context.Context, a Actor, purpose store.KeyPurpose) (CertificateRequest, error) {
	if err := checkActor(a); err != nil {
		return CertificateRequest{}, err
	}
	label, csr, err := s.cfg.Keys.Request(ctx, purpose)
	if err != nil {
		return CertificateRequest{}, err
	}
	if err := s.audit(ctx, a, store.Event{Type: EventKeyRequested, Result: string(purpose)}); err != nil {
		return CertificateRequest{}, err
	}
	return CertificateRequest{Purpose: purpose, Label: label, CSRPEM: csr}, nil
}

// InstallCertificate puts an offline authority's certificate in service:
// a document signer or kiosk issuing CA certificate for a pending request
// of this center (active at once; the previous one is retired), or the
// center's TLS server certificate (used from the next start).
func (s *Service) InstallCertificate(ctx context.Context, a Actor, certPEM []byte) (Installed, error) {
	if err := checkActor(a); err != nil {
		return Installed{}, err
	}
	certs, err := authority.ParseCerts(certPEM)
	if err != nil {
		return Installed{}, fmt.Errorf("admin: certificate to install: %w", err)
	}
	var out Installed
	if slices.Contains(certs[0].ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		if out, err = s.installTLS(certs[0], certPEM); err != nil {
			return Installed{}, err
		}
	} else {
		sk, err := s.cfg.Keys.Install(ctx, certPEM, s.cfg.Now())
		if err != nil {
			return Installed{}, err
		}
		out = Installed{Purpose: string(sk.Purpose), KID: sk.KID, NotAfter: sk.NotAfter}
		if sk.Purpose == store.PurposeVDSNC && s.cfg.Signers != nil {
			if _, err := s.cfg.Signers.Refresh(ctx); err != nil {
				s.cfg.Log.Error("load the installed document signer", "kid", sk.KID, "err", err)
			}
		}
	}
	return out, s.audit(ctx, a, store.Event{Type: EventCertificateInstall, Result: out.Purpose})
}

// installTLS installs the center's TLS server certificate for its key
// file, after checking it chains to the kiosk CA kiosks pin.
func (s *Service) installTLS(leaf *x509.Certificate, certPEM []byte) (Installed, error) {
	c := s.cfg.Center
	if c == nil {
		return Installed{}, errors.New("admin: this service cannot install the TLS certificate (no center configuration)")
	}
	key, err := keyfile.Load(c.Path(c.ServerKeyFile))
	if err != nil {
		return Installed{}, err
	}
	if !publicEqual(key.Public(), leaf.PublicKey) {
		return Installed{}, fmt.Errorf("admin: the TLS certificate is not for the center's key %s", c.Path(c.ServerKeyFile))
	}
	root, err := authority.LoadCert(c.Path(c.KioskCAFile))
	if err != nil {
		return Installed{}, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: s.cfg.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return Installed{}, fmt.Errorf("admin: the TLS certificate does not chain to the kiosk CA: %w", err)
	}
	if err := os.WriteFile(c.Path(c.ServerCertFile), bytes.TrimSpace(certPEM), 0o644); err != nil {
		return Installed{}, err
	}
	os.Remove(filepath.Join(c.Path(c.KeysDir), "requests", tlsRequestFile))
	return Installed{Purpose: tlsPurpose, NotAfter: leaf.NotAfter}, nil
}

// EnrollmentCode is a one-time code for a kiosk to enroll itself with.
// Give it to the store (by a separate channel from the kiosk's
// configuration); it is shown once and kept only hashed.
type EnrollmentCode struct {
	KioskID string    `json:"kioskId"`
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
}

// CreateEnrollmentCode records a kiosk to be enrolled and returns its
// one-time code, valid for ttl (default enrollment.DefaultCodeTTL, at most
// enrollment.MaxCodeTTL). A new code for the same kiosk voids the old one.
func (s *Service) CreateEnrollmentCode(ctx context.Context, a Actor, e KioskEnrollment, ttl time.Duration) (EnrollmentCode, error) {
	if err := checkActor(a); err != nil {
		return EnrollmentCode{}, err
	}
	switch {
	case ttl == 0:
		ttl = enrollment.DefaultCodeTTL
	case ttl < time.Minute || ttl > enrollment.MaxCodeTTL:
		return EnrollmentCode{}, fmt.Errorf("admin: an enrollment code lives from 1 minute to %v", enrollment.MaxCodeTTL)
	}
	code, err := enrollment.NewCode()
	if err != nil {
		return EnrollmentCode{}, err
	}
	now := s.cfg.Now()
	c := store.EnrollmentCode{
		Kiosk:    store.Kiosk{ID: e.ID, StoreName: e.StoreName, StoreCode: e.StoreCode, Chain: e.Chain, Prefecture: e.Prefecture, Region: e.Region},
		CodeHash: enrollment.HashCode(e.ID, code), Created: now, Expires: now.Add(ttl),
	}
	if err := s.cfg.Store.PutEnrollmentCode(ctx, c); err != nil {
		return EnrollmentCode{}, err
	}
	if err := s.audit(ctx, a, store.Event{Type: enrollment.EventCodeIssued, KioskID: e.ID, StoreCode: e.StoreCode, Result: "ok"}); err != nil {
		return EnrollmentCode{}, err
	}
	return EnrollmentCode{KioskID: e.ID, Code: code, Expires: store.Time(c.Expires)}, nil
}
