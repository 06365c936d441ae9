// Package shc issues and verifies SMART Health Cards
// (https://spec.smarthealth.cards) for the vaccination certificate: the QR
// code printed on both the domestic and the overseas kind.
//
// # Issuing
//
// An Issuer holds the issuer URL and an ECDSA P-256 crypto.Signer. Issue
// turns a *certificate.Certificate into QR text:
//
//	is, err := shc.NewIssuer("https://vc.example.jp/012041", signer, ridSecret)
//	qr, err := is.Issue(cert, now) // "shc:/5676290952…"
//
// Issue builds a FHIR R4 Bundle (one Patient, one Immunization per dose,
// coded with CVX from pkg/vaccine), wraps it in the JWT payload {iss, nbf,
// vc}, minifies it, compresses it with raw DEFLATE, signs it as a compact JWS
// with header {"alg":"ES256","zip":"DEF","kid":<RFC 7638 thumbprint>} and a
// 64-byte r‖s signature, and encodes every JWS character as two digits
// (code − 45) after "shc:/". A JWS longer than 1195 characters does not fit a
// version 22 QR code at error correction L and is refused with ErrTooLarge:
// chunking is deprecated by the specification and unsupported here.
//
// The patient name is the registered (kanji or katakana) name on the
// domestic kind and the romanized passport name on the overseas kind, so the
// QR says what the page next to it says.
//
// # Keys and revocation
//
// NewJWKS publishes public keys as the JSON Web Key Set served at
// <iss>/.well-known/jwks.json; keep retired keys in it for as long as their
// cards matter. When the Issuer has a revocation secret, each card carries
// vc.rid = base64url(first 64 bits of HMAC-SHA-256(secret ‖ kid, certificate
// ID)), the method the specification recommends; a CRL document lists the
// rids revoked under one kid and is served at <iss>/.well-known/crl/<kid>.json.
//
// # Verifying
//
// Verify reverses the steps, in an order chosen so that nothing
// unauthenticated is decompressed: QR text → JWS → key chosen by kid from a
// JWKS → ECDSA signature → DEFLATE with a 10 KiB output limit → payload
// checks (issuer, nbf, exp, type) → optional CRL. It returns the holder and
// doses so the verifier can compare them with the printed page.
//
// The payload carries personal data. Nothing in this package logs, and error
// messages name the field that failed, never its value.
package shc

import (
	"errors"
	"math"
	"time"
)

// Limits and fixed values from the specification.
const (
	// MaxJWSLen is the longest JWS that fits one version 22 QR code at error
	// correction L (two digits per character in a numeric segment).
	MaxJWSLen = 1195
	// MaxPayloadSize bounds the inflated payload when verifying; a genuine
	// vaccination card is a few KiB at most.
	MaxPayloadSize = 10 << 10
	// QRPrefix starts every SMART Health Card QR text.
	QRPrefix = "shc:/"
	// FHIRVersion is the FHIR release of the bundle.
	FHIRVersion = "4.0.1"
	// CVXSystem is the code system of Immunization.vaccineCode.
	CVXSystem = "http://hl7.org/fhir/sid/cvx"
)

// TypeHealthCard is the one credential type a card carries. VCI 1.4
// deprecated the additional top-level types (#immunization, #covid19) in
// favour of classifying cards by their contents, so the issuer no longer
// writes them; Verify still accepts cards of other issuers that do, as the
// specification tells verifiers to ignore types they do not understand.
const TypeHealthCard = "https://smarthealth.cards#health-card"

// ClockSkew is how far in the future nbf may lie before a card is "not yet
// valid": the issuer's and the verifier's clocks are never exactly equal.
const ClockSkew = 5 * time.Minute

// Errors, grouped by operation. Every error this package returns wraps one of
// them.
var (
	// Issuing.
	ErrKey         = errors.New("shc: signing key must be an ECDSA P-256 crypto.Signer")
	ErrIssuerURL   = errors.New("shc: issuer URL must be https with a host and no trailing slash")
	ErrCertificate = errors.New("shc: certificate cannot be expressed as a health card")
	ErrTooLarge    = errors.New("shc: card too large for one version 22 QR code")

	// Decoding.
	ErrQRText  = errors.New("shc: malformed QR text")
	ErrChunked = errors.New("shc: chunked (multi-QR) health cards are not supported")
	ErrJWS     = errors.New("shc: malformed JWS")
	ErrPayload = errors.New("shc: malformed payload")
	ErrJWKS    = errors.New("shc: unusable key set")
	ErrCRL     = errors.New("shc: unusable revocation list")

	// Verifying.
	ErrUnknownKey  = errors.New("shc: signing key not in the issuer's key set")
	ErrSignature   = errors.New("shc: signature does not verify")
	ErrIssuer      = errors.New("shc: issuer not the expected one")
	ErrNotYetValid = errors.New("shc: card not yet valid")
	ErrExpired     = errors.New("shc: card expired")
	ErrRevoked     = errors.New("shc: card revoked by its issuer")
	ErrCRLStale    = errors.New("shc: revocation list older than the key set announces")
)

// Payload is the JWT claims set of a health card.
type Payload struct {
	Iss string `json:"iss"`
	// Nbf is seconds since the Unix epoch. Issuers here write whole seconds;
	// other issuers (the specification's own examples) write fractions.
	Nbf float64 `json:"nbf"`
	// Exp is optional; vaccination cards normally have none.
	Exp *float64 `json:"exp,omitempty"`
	VC  VC       `json:"vc"`
}

// VC is the verifiable credential claim.
type VC struct {
	Type              []string          `json:"type"`
	CredentialSubject CredentialSubject `json:"credentialSubject"`
	// RID is the revocation identifier (base64url alphabet, ≤ 24 chars).
	RID string `json:"rid,omitempty"`
}

// CredentialSubject carries the FHIR bundle.
type CredentialSubject struct {
	FHIRVersion string `json:"fhirVersion"`
	FHIRBundle  Bundle `json:"fhirBundle"`
}

// NotBefore returns nbf as a time.
func (p *Payload) NotBefore() time.Time { return secondsToTime(p.Nbf) }

// Expires returns exp as a time, or the zero time if the card has none.
func (p *Payload) Expires() time.Time {
	if p.Exp == nil {
		return time.Time{}
	}
	return secondsToTime(*p.Exp)
}

func secondsToTime(s float64) time.Time {
	sec, frac := math.Modf(s)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}
