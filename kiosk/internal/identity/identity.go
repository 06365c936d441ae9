// Package identity is the kiosk's own key and certificate. The kiosk makes
// its key itself — inside its TPM 2.0 where the terminal has one (the key
// is bound to that TPM and cannot be exported), otherwise in a file only
// the agent's account can read — and the center only ever sees a
// certificate signing request for it:
//
//   - Enroll: a new kiosk sends its CSR with the one-time enrollment code
//     the operator gave the store to the center's enrollment endpoint
//     (docs/KEYS.md) and stores the certificate it gets back.
//   - Renew: an enrolled kiosk asks for a new certificate for the same key
//     before its certificate expires, over its open connection
//     (protocol.Renew / protocol.Renewed).
//
// The key file holds either a PKCS#8 private key (mode 0600) or, for a
// TPM key, the TPM-wrapped key blob as PEM "TSS2 PRIVATE KEY" (the layout
// of the TPM 2.0 OpenSSL providers), which is useless without the TPM
// that made it.
package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskcert/kioskcert/pkg/keyfile"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Key is the kiosk's private key as a crypto.Signer; Close releases a TPM.
type Key interface {
	crypto.Signer
	io.Closer
}

type fileKey struct{ crypto.Signer }

func (fileKey) Close() error { return nil }

// CreateFileKey makes a P-256 key in a file readable only by the agent's
// account. It refuses to overwrite a key.
func CreateFileKey(path string) (Key, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("identity: %s exists; refusing to overwrite the kiosk's key", path)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := keyfile.Write(path, k); err != nil {
		return nil, err
	}
	return fileKey{k}, nil
}

// OpenKey opens the kiosk's key: a TPM key blob through the TPM at
// tpmPath (a device such as /dev/tpmrm0, or a swtpm socket), or a key file.
func OpenKey(path, tpmPath string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: kiosk key: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil && blk.Type == tpmKeyPEM {
		if tpmPath == "" {
			return nil, fmt.Errorf("identity: %s is a TPM key; configure the TPM (tpm) to use it", path)
		}
		return openTPMKey(tpmPath, blk.Bytes)
	}
	s, err := keyfile.Load(path)
	if err != nil {
		return nil, err
	}
	return fileKey{s}, nil
}

// Request makes the certificate signing request for key as kiosk id.
func Request(key crypto.Signer, id string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
	if err != nil {
		return nil, fmt.Errorf("identity: certificate signing request: %w", err)
	}
	return der, nil
}

// Certificate pairs a certificate chain (PEM, leaf first) with the key.
func Certificate(chainPEM []byte, key crypto.Signer) (tls.Certificate, error) {
	var cert tls.Certificate
	for rest := chainPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			cert.Certificate = append(cert.Certificate, blk.Bytes)
		}
	}
	if len(cert.Certificate) == 0 {
		return cert, errors.New("identity: no certificate in the chain")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return cert, fmt.Errorf("identity: %w", err)
	}
	if eq, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(leaf.PublicKey) {
		return cert, errors.New("identity: the certificate is not for the kiosk's key")
	}
	cert.PrivateKey, cert.Leaf = key, leaf
	return cert, nil
}

// EnrollOptions says where and how to enroll.
type EnrollOptions struct {
	// URL is the center's enrollment endpoint, https://host:port/v1/enroll.
	URL string
	// CenterCA authenticates the center (the kiosk CA's certificate, PEM).
	CenterCA []byte
	// ServerName overrides the name checked in the center's certificate.
	ServerName string
	KioskID    string
	Code       string
	Timeout    time.Duration
}

// Enroll sends key's CSR with the one-time code and returns the center's
// answer (the kiosk's certificate chain and the center CA). Only the CSR
// leaves the kiosk.
func Enroll(ctx context.Context, key crypto.Signer, o EnrollOptions) (protocol.EnrollResponse, error) {
	csr, err := Request(key, o.KioskID)
	if err != nil {
		return protocol.EnrollResponse{}, err
	}
	req := protocol.EnrollRequest{KioskID: o.KioskID, Code: o.Code, CSR: csr}
	if err := req.Validate(); err != nil {
		return protocol.EnrollResponse{}, err
	}
	body, _ := json.Marshal(req)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(o.CenterCA) {
		return protocol.EnrollResponse{}, errors.New("identity: no center CA certificate to authenticate the center with")
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	client := &http.Client{Timeout: o.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: o.ServerName}}}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, o.URL, bytes.NewReader(body))
	if err != nil {
		return protocol.EnrollResponse{}, fmt.Errorf("identity: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return protocol.EnrollResponse{}, fmt.Errorf("identity: enroll at %s: %w", o.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 3*protocol.MaxChain))
	if err != nil {
		return protocol.EnrollResponse{}, fmt.Errorf("identity: enroll: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return protocol.EnrollResponse{}, fmt.Errorf("identity: the center refused the enrollment (HTTP %d): %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	out, err := protocol.DecodeEnrollResponse(bytes.TrimSpace(b))
	if err != nil {
		return protocol.EnrollResponse{}, err
	}
	if _, err := Certificate([]byte(out.Chain), key); err != nil {
		return protocol.EnrollResponse{}, err
	}
	return out, nil
}

// NeedsRenewal reports whether a certificate should be renewed at now:
// once less than a third of its validity is left.
func NeedsRenewal(leaf *x509.Certificate, now time.Time) bool {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotAfter.Sub(now) < life/3
}

// WriteFileAtomic replaces path with data (mode), so a crash leaves the
// old or the new file, never half of one.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
