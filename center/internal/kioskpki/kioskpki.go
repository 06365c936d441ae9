// Package kioskpki is the center's private PKI for the kiosk channel: a
// kiosk CA that issues one TLS client certificate per enrolled kiosk and the
// center's own server certificate, and the TLS 1.3 configuration that
// enforces them.
//
// A kiosk is identified by the Common Name of its client certificate (its
// kiosk ID). Chaining to the kiosk CA is necessary but not sufficient: the
// handshake also asks the center's kiosk registry whether that ID is
// enrolled with that exact certificate and still active, so that a
// suspended or revoked kiosk is refused before it can send a byte. Kiosks in
// turn pin the kiosk CA as the only root they trust for the center.
package kioskpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// Validity periods.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	KioskValidity  = 2 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
)

// CA is the kiosk CA: its certificate and a crypto.Signer for its key.
type CA struct {
	Cert   *x509.Certificate
	Signer crypto.Signer
}

// NewCA creates a self-signed ECDSA P-256 kiosk CA.
func NewCA(name string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kioskpki: generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"kioskcert"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("kioskpki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Signer: key}, nil
}

// IssueKiosk issues a TLS client certificate for kioskID's public key.
func (ca *CA) IssueKiosk(kioskID string, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	if kioskID == "" {
		return nil, errors.New("kioskpki: kiosk ID is empty")
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: kioskID, Organization: []string{"kioskcert kiosk"}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(KioskValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, pub)
}

// IssueServer issues the center's TLS server certificate for hosts (DNS
// names or IP addresses).
func (ca *CA) IssueServer(hosts []string, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kioskcert issuance center"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(ServerValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, pub)
}

func (ca *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	tmpl.SerialNumber = serial()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Signer)
	if err != nil {
		return nil, fmt.Errorf("kioskpki: issue certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("kioskpki: crypto/rand failed: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}

// Fingerprint is the hex SHA-256 of a certificate's DER, as the kiosk
// registry records it at enrollment.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// EncodeCert returns PEM for cert.
func EncodeCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// LoadCertPool reads PEM certificates into a pool (the kiosk's pinned CA).
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kioskpki: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("kioskpki: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// LoadCert reads the first PEM certificate in path.
func LoadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kioskpki: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("kioskpki: %s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

// KioskChecker decides at the handshake whether a kiosk that presents a
// valid certificate may connect. It returns an error saying why not.
type KioskChecker func(kioskID, fingerprint string) error

// ServerTLS returns the center's TLS 1.3 configuration: client certificates
// required and chained to the kiosk CA, then checked against the registry.
func ServerTLS(serverCert tls.Certificate, kioskCA *x509.Certificate, check KioskChecker) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(kioskCA)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("kioskpki: no client certificate")
			}
			leaf := cs.PeerCertificates[0]
			return check(leaf.Subject.CommonName, Fingerprint(leaf))
		},
	}
}

// ClientTLS returns a kiosk's TLS 1.3 configuration: its own certificate,
// and the kiosk CA pinned as the only root for the center.
func ClientTLS(kioskCert tls.Certificate, centerCA *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{kioskCert},
		RootCAs:      centerCA,
		ServerName:   serverName,
	}
}
