package identity

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// Identity is the kiosk's key with its current certificate. The agent's
// TLS configuration asks it for the certificate at every handshake
// (GetClientCertificate), so a renewed certificate is used from the next
// connection without a restart.
type Identity struct {
	key      Key
	certPath string

	mu   sync.Mutex
	cert *tls.Certificate
	pem  []byte
}

// Load pairs key with the certificate chain in certPath (PEM, leaf first).
func Load(certPath string, key Key) (*Identity, error) {
	b, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("identity: kiosk certificate: %w", err)
	}
	cert, err := Certificate(b, key)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", certPath, err)
	}
	return &Identity{key: key, certPath: certPath, cert: &cert, pem: b}, nil
}

// Key returns the kiosk's key.
func (i *Identity) Key() Key { return i.key }

// KioskID is the common name of the current certificate.
func (i *Identity) KioskID() string { return i.Leaf().Subject.CommonName }

// Leaf returns the current certificate.
func (i *Identity) Leaf() *x509.Certificate {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.cert.Leaf
}

// GetClientCertificate implements tls.Config.GetClientCertificate.
func (i *Identity) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.cert, nil
}

// Request makes a certificate signing request for the kiosk's key under
// its current name.
func (i *Identity) Request() ([]byte, error) { return Request(i.key, i.KioskID()) }

// Install makes chainPEM the kiosk's certificate: it must be for the
// kiosk's key and name the same kiosk. The certificate it replaces is kept
// as <certFile>.previous; both files are replaced atomically, so a crash
// leaves a usable certificate either way.
func (i *Identity) Install(chainPEM []byte) error {
	cert, err := Certificate(chainPEM, i.key)
	if err != nil {
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if got, want := cert.Leaf.Subject.CommonName, i.cert.Leaf.Subject.CommonName; got != want {
		return fmt.Errorf("identity: the new certificate names kiosk %q, not %q", got, want)
	}
	if bytes.Equal(cert.Leaf.Raw, i.cert.Leaf.Raw) {
		return errors.New("identity: the new certificate is the current one")
	}
	if err := WriteFileAtomic(i.certPath+".previous", i.pem, 0o644); err != nil {
		return fmt.Errorf("identity: keep the previous certificate: %w", err)
	}
	if err := WriteFileAtomic(i.certPath, chainPEM, 0o644); err != nil {
		return fmt.Errorf("identity: store the new certificate: %w", err)
	}
	i.cert, i.pem = &cert, bytes.Clone(chainPEM)
	return nil
}
