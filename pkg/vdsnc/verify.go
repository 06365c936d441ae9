package vdsnc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gowebpki/jcs"
)

// VerifyOptions says what a document is checked against.
type VerifyOptions struct {
	// CSCAs are the trusted Country Signing CA certificates (required).
	CSCAs []*x509.Certificate
	// Now is the time at which the signer certificate must be valid; zero
	// means time.Now().
	Now time.Time
}

// Verified is a verified proof of vaccination.
type Verified struct {
	Data Data
	// Signer is the barcode signer certificate.
	Signer *x509.Certificate
}

// Verify checks a VDS-NC JSON document and returns its content.
func Verify(doc []byte, opts VerifyOptions) (*Verified, error) {
	if len(doc) > MaxDocumentSize {
		return nil, fmt.Errorf("%w: larger than a QR code can carry (%d bytes)", ErrFormat, MaxDocumentSize)
	}
	// Keep data as received: the signature covers JCS(data), and a field
	// this package does not model must still be covered.
	var wire struct {
		Data json.RawMessage `json:"data"`
		Sig  Signature       `json:"sig"`
	}
	if err := json.Unmarshal(doc, &wire); err != nil || len(wire.Data) == 0 {
		return nil, fmt.Errorf("%w: not a JSON object with data and sig", ErrFormat)
	}
	var d Data
	if err := json.Unmarshal(wire.Data, &d); err != nil {
		return nil, fmt.Errorf("%w: data: %w", ErrFormat, err)
	}
	if d.Hdr.T != TypeVaccination || d.Hdr.V != Version || !isAlpha3(d.Hdr.Is) {
		return nil, ErrHeader
	}
	if wire.Sig.Alg != "ES256" {
		return nil, fmt.Errorf("%w: sig.alg must be ES256", ErrFormat)
	}
	certDER, err := decodeB64URL(wire.Sig.Cer)
	if err != nil {
		return nil, fmt.Errorf("%w: sig.cer is not base64url", ErrFormat)
	}
	sig, err := decodeB64URL(wire.Sig.Sigvl)
	if err != nil || len(sig) != 64 {
		return nil, fmt.Errorf("%w: sig.sigvl must be 64 bytes of base64url (r ‖ s)", ErrFormat)
	}
	cert, err := parseSignerCert(certDER)
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if err := verifyChain(cert, opts.CSCAs, now); err != nil {
		return nil, err
	}
	canon, err := jcs.Transform(wire.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: data cannot be canonicalized: %w", ErrFormat, err)
	}
	digest := sha256.Sum256(canon)
	if err := verifyRaw(cert.PublicKey.(*ecdsa.PublicKey), digest[:], sig); err != nil {
		return nil, err
	}
	// Signed but malformed content is still refused: a verifier must not
	// show a name of 200 characters as if the guidelines allowed it.
	if err := d.check(); err != nil {
		return nil, err
	}
	return &Verified{Data: d, Signer: cert}, nil
}

// IsVDSNC reports whether text looks like a VDS-NC proof of vaccination
// (a JSON object whose data.hdr.t is "icao.vacc"), without verifying it.
func IsVDSNC(text []byte) bool {
	var probe struct {
		Data struct {
			Hdr struct {
				T string `json:"t"`
			} `json:"hdr"`
		} `json:"data"`
	}
	text = bytes.TrimSpace(text)
	return len(text) > 0 && text[0] == '{' && len(text) <= MaxDocumentSize &&
		json.Unmarshal(text, &probe) == nil && probe.Data.Hdr.T == TypeVaccination
}

// decodeB64URL accepts base64url with or without padding: the guidelines
// say base64url, and issuers differ on padding.
func decodeB64URL(s string) ([]byte, error) {
	return b64.DecodeString(strings.TrimRight(s, "="))
}

func isAlpha3(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := range 3 {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
