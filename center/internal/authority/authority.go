// Package authority is the center's two offline certification
// authorities, run on a machine kept away from the online center (docs/KEYS.md):
//
//   - the country signing CA (CSCA) of the ICAO VDS-NC barcodes, which
//     certifies the center's document (barcode) signers;
//   - the kiosk CA, the root of the kiosk channel, which certifies the
//     center's online kiosk issuing CA (and, where a kiosk cannot reach
//     the center to enroll, a kiosk's certificate directly).
//
// Both sign only from certificate signing requests: a document signer's
// and the issuing CA's keys are made inside the center's key source (an
// HSM in production) and never leave it; the authority sees their public
// halves and proves nothing but its own signature. An authority's
// directory holds its certificate (authority.pem, public) and its key
// (authority.key, mode 0600); carry only the certificate to the center.
//
// In a demo or test center (`issuance-center init` without offline
// certificates) both authorities are made under the center's directory by
// the same code, so the whole chain is exercised in one command.
package authority

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kioskcert/kioskcert/pkg/keyfile"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// Kind names an authority.
type Kind string

// Authorities.
const (
	CSCA    Kind = "csca"
	KioskCA Kind = "kiosk-ca"
)

// Files in an authority's directory.
const (
	CertFile = "authority.pem"
	KeyFile  = "authority.key"
)

// Validity periods.
const (
	// RootValidity is how long an authority's own certificate is valid.
	RootValidity = 15 * 365 * 24 * time.Hour
	// SignerValidity is a document signer's certificate validity: it must
	// outlive every barcode it signs as long as they matter, and a new
	// signer is introduced well before it ends (docs/KEYS.md).
	SignerValidity = 2 * 365 * 24 * time.Hour
	// IssuingCAValidity is the online kiosk issuing CA's validity.
	IssuingCAValidity = 5 * 365 * 24 * time.Hour
	// KioskValidity matches kioskpki.KioskValidity.
	KioskValidity = 2 * 365 * 24 * time.Hour
	// ServerValidity is the center's TLS certificate validity.
	ServerValidity = 365 * 24 * time.Hour
)

// Authority is an opened authority: its certificate and a signer for its key.
type Authority struct {
	Kind   Kind
	Dir    string
	Cert   *x509.Certificate
	Signer crypto.Signer
}

// Errors.
var (
	// ErrWrongKind means a command for one authority was pointed at the other.
	ErrWrongKind = errors.New("authority: this directory holds the other authority")
	// ErrBadRequest means a certificate signing request was malformed,
	// not self-signed correctly, or not a P-256 key.
	ErrBadRequest = errors.New("authority: bad certificate signing request")
)

// New makes a new authority in memory: a P-256 key and a self-signed
// certificate. Create also writes them to a directory.
func New(kind Kind, commonName, country string, now time.Time) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var der []byte
	switch kind {
	case CSCA:
		der, err = vdsnc.CreateCSCA(rand.Reader, vdsnc.CSCATemplate{CommonName: commonName, Country: country,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(RootValidity)}, key)
	case KioskCA:
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: commonName, Organization: []string{"kioskcert"}, Country: []string{country}},
			NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(RootValidity),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true, IsCA: true,
			// Room for one online issuing CA below the root.
			MaxPathLen: 1,
		}
		der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	default:
		return nil, fmt.Errorf("authority: unknown kind %q (want csca or kiosk-ca)", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("authority: create %s certificate: %w", kind, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Kind: kind, Cert: cert, Signer: key}, nil
}

// Create makes a new authority in dir (which must not hold one): its key
// (file, mode 0600) and self-signed certificate.
func Create(dir string, kind Kind, commonName, country string, now time.Time) (*Authority, error) {
	if _, err := os.Stat(filepath.Join(dir, CertFile)); err == nil {
		return nil, fmt.Errorf("authority: %s already holds an authority; refusing to overwrite it", dir)
	}
	a, err := New(kind, commonName, country, now)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := keyfile.Write(filepath.Join(dir, KeyFile), a.Signer); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, CertFile), EncodeCert(a.Cert.Raw), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "kind"), []byte(kind+"\n"), 0o644); err != nil {
		return nil, err
	}
	a.Dir = dir
	return a, nil
}

// Open opens the authority of kind in dir.
func Open(dir string, kind Kind) (*Authority, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kind"))
	if err != nil {
		return nil, fmt.Errorf("authority: %s holds no authority (run `issuance-center authority %s init`): %w", dir, kind, err)
	}
	if got := Kind(trimSpace(string(b))); got != kind {
		return nil, fmt.Errorf("%w: %s holds the %s, not the %s", ErrWrongKind, dir, got, kind)
	}
	cert, err := LoadCert(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, err
	}
	key, err := keyfile.Load(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	if !publicEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("authority: %s: the key does not match the certificate", dir)
	}
	return &Authority{Kind: kind, Dir: dir, Cert: cert, Signer: key}, nil
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// ParseRequest decodes a PEM (or DER) certificate signing request, checks
// its self-signature and that it is for a P-256 key.
func ParseRequest(b []byte) (*x509.CertificateRequest, error) {
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block %q, want CERTIFICATE REQUEST", ErrBadRequest, blk.Type)
		}
		der = blk.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: its signature does not verify: %w", ErrBadRequest, err)
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: the key is not ECDSA P-256", ErrBadRequest)
	}
	return csr, nil
}

// SignDocumentSigner certifies a VDS-NC barcode signer (CSCA only): the
// certificate carries the barcode-signer extended key usage and the NV
// document type, the common name from the request, and the CSCA's country.
func (a *Authority) SignDocumentSigner(csrPEM []byte, now time.Time) ([]byte, error) {
	if a.Kind != CSCA {
		return nil, fmt.Errorf("%w: document signers are certified by the CSCA", ErrWrongKind)
	}
	csr, err := ParseRequest(csrPEM)
	if err != nil {
		return nil, err
	}
	cn := csr.Subject.CommonName
	if cn == "" {
		cn = "kioskcert Barcode Signer"
	}
	country := "JP"
	if len(a.Cert.Subject.Country) > 0 {
		country = a.Cert.Subject.Country[0]
	}
	notAfter := now.Add(SignerValidity)
	if notAfter.After(a.Cert.NotAfter) {
		notAfter = a.Cert.NotAfter
	}
	der, err := vdsnc.CreateBarcodeSigner(rand.Reader, vdsnc.SignerTemplate{CommonName: cn, Country: country,
		NotBefore: now.Add(-time.Hour), NotAfter: notAfter}, csr.PublicKey, a.Cert.Raw, a.Signer)
	if err != nil {
		return nil, fmt.Errorf("authority: certify document signer: %w", err)
	}
	return EncodeCert(der), nil
}

// Profile is what the kiosk CA certifies.
type Profile string

// Kiosk CA profiles.
const (
	// ProfileIssuingCA is the center's online kiosk issuing CA (a CA
	// certificate allowing no further CA below it).
	ProfileIssuingCA Profile = "issuing-ca"
	// ProfileKiosk is one kiosk's TLS client certificate; the kiosk ID is
	// the request's common name.
	ProfileKiosk Profile = "kiosk"
	// ProfileServer is the center's TLS server certificate for the DNS
	// names and IP addresses in the request.
	ProfileServer Profile = "server"
)

// SignKioskChannel certifies a request under the kiosk CA with profile.
// The result is PEM: the new certificate.
func (a *Authority) SignKioskChannel(csrPEM []byte, profile Profile, now time.Time) ([]byte, error) {
	if a.Kind != KioskCA {
		return nil, fmt.Errorf("%w: kiosk-channel certificates are certified by the kiosk CA", ErrWrongKind)
	}
	csr, err := ParseRequest(csrPEM)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), NotBefore: now.Add(-time.Hour)}
	switch profile {
	case ProfileIssuingCA:
		tmpl.Subject = pkix.Name{CommonName: nonEmpty(csr.Subject.CommonName, "kioskcert Kiosk Issuing CA"), Organization: []string{"kioskcert"}}
		tmpl.NotAfter = now.Add(IssuingCAValidity)
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
		tmpl.BasicConstraintsValid, tmpl.IsCA, tmpl.MaxPathLenZero = true, true, true
	case ProfileKiosk:
		if csr.Subject.CommonName == "" {
			return nil, fmt.Errorf("%w: a kiosk request names the kiosk ID as its common name", ErrBadRequest)
		}
		tmpl.Subject = pkix.Name{CommonName: csr.Subject.CommonName, Organization: []string{"kioskcert kiosk"}}
		tmpl.NotAfter = now.Add(KioskValidity)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case ProfileServer:
		if len(csr.DNSNames)+len(csr.IPAddresses) == 0 {
			return nil, fmt.Errorf("%w: a server request names the center's hosts (DNS names or IP addresses)", ErrBadRequest)
		}
		tmpl.Subject = pkix.Name{CommonName: "kioskcert issuance center"}
		tmpl.DNSNames, tmpl.IPAddresses = slices.Clone(csr.DNSNames), slices.Clone(csr.IPAddresses)
		tmpl.NotAfter = now.Add(ServerValidity)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	default:
		return nil, fmt.Errorf("authority: unknown profile %q (want issuing-ca, kiosk or server)", profile)
	}
	if tmpl.NotAfter.After(a.Cert.NotAfter) {
		tmpl.NotAfter = a.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, csr.PublicKey, a.Signer)
	if err != nil {
		return nil, fmt.Errorf("authority: certify %s: %w", profile, err)
	}
	return EncodeCert(der), nil
}

// ServerRequest makes a certificate signing request for the center's TLS
// key naming hosts (DNS names or IP addresses).
func ServerRequest(key crypto.Signer, hosts []string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "kioskcert issuance center"}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return Request(key, tmpl)
}

// Request makes a PEM certificate signing request signed by key.
func Request(key crypto.Signer, tmpl *x509.CertificateRequest) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("authority: make certificate signing request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("authority: crypto/rand failed: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}

// EncodeCert returns PEM for a DER certificate.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// LoadCert reads the first PEM certificate in path.
func LoadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	certs, err := ParseCerts(b)
	if err != nil {
		return nil, fmt.Errorf("authority: %s: %w", path, err)
	}
	return certs[0], nil
}

// ParseCerts decodes one or more PEM certificates.
func ParseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q is not a CERTIFICATE", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
