package protocol

import (
	"errors"
	"fmt"
)

// Kiosk identity messages: a kiosk renews its client certificate over its
// open connection (Renew → Renewed), and a kiosk without a certificate
// enrolls with a one-time code over HTTPS (EnrollRequest →
// EnrollResponse, see docs/PROTOCOL.md). The kiosk's private key never
// travels: only a PKCS#10 certificate signing request for it.

// Message types of renewal.
const (
	TypeRenew   = "renew"   // kiosk → center: a CSR for the kiosk's key
	TypeRenewed = "renewed" // center → kiosk, answers renew
)

// Limits on the identity messages.
const (
	// MaxCSR bounds a DER certificate signing request (a P-256 one is
	// about 250 bytes).
	MaxCSR = 4 << 10
	// MaxChain bounds a PEM certificate chain in an answer.
	MaxChain = 16 << 10
	// MaxEnrollmentCode bounds an enrollment code as typed (with dashes).
	MaxEnrollmentCode = 64
)

// Renew asks the center to certify the kiosk's key anew before its
// certificate expires. The CSR's common name must be the kiosk's ID.
type Renew struct {
	// RequestID is 32 lowercase hex digits chosen by the kiosk; Renewed
	// carries it back.
	RequestID string `json:"requestId"`
	// CSR is the DER certificate signing request (base64 in JSON).
	CSR []byte `json:"csr"`
}

// Renewed answers Renew with the new certificate.
type Renewed struct {
	RequestID string `json:"requestId"`
	// Chain is PEM: the kiosk's new certificate, then the issuing CA's.
	Chain string `json:"chain"`
}

// Type implements Message.
func (Renew) Type() string { return TypeRenew }

// Type implements Message.
func (Renewed) Type() string { return TypeRenewed }

func (m Renew) validate() error {
	if err := validRequestID(m.RequestID); err != nil {
		return err
	}
	return validCSR(m.CSR)
}

func (m Renewed) validate() error {
	if err := validRequestID(m.RequestID); err != nil {
		return err
	}
	return validChain(m.Chain)
}

func validCSR(b []byte) error {
	if len(b) == 0 || len(b) > MaxCSR {
		return fmt.Errorf("csr must be 1-%d bytes of DER", MaxCSR)
	}
	// A DER SEQUENCE; the receiver parses and checks it fully.
	if b[0] != 0x30 {
		return errors.New("csr is not a DER certificate signing request")
	}
	return nil
}

func validChain(s string) error {
	if len(s) == 0 || len(s) > MaxChain {
		return fmt.Errorf("chain must be 1-%d bytes of PEM", MaxChain)
	}
	return nil
}

// EnrollRequest is what a kiosk without a certificate sends to the
// center's enrollment endpoint (POST /v1/enroll, JSON).
type EnrollRequest struct {
	KioskID string `json:"kioskId"`
	// Code is the one-time enrollment code the operator gave the store.
	Code string `json:"code"`
	// CSR is the DER certificate signing request for the kiosk's key
	// (base64 in JSON); its common name must be KioskID.
	CSR []byte `json:"csr"`
}

// EnrollResponse answers a successful EnrollRequest.
type EnrollResponse struct {
	// Chain is PEM: the kiosk's certificate, then the issuing CA's.
	Chain string `json:"chain"`
	// CenterCA is PEM: the kiosk CA, the root the kiosk pins for the center.
	CenterCA string `json:"centerCa"`
}

// DecodeEnrollRequest parses an enrollment request strictly (unknown
// fields, trailing data and oversized fields are errors).
func DecodeEnrollRequest(b []byte) (EnrollRequest, error) {
	var r EnrollRequest
	if len(b) > 2*MaxCSR+1024 {
		return r, errors.New("protocol: enrollment request too large")
	}
	if err := strictUnmarshal(b, &r); err != nil {
		return EnrollRequest{}, fmt.Errorf("protocol: enrollment request is not valid JSON with kioskId, code and csr: %w", err)
	}
	if err := r.Validate(); err != nil {
		return EnrollRequest{}, err
	}
	return r, nil
}

// Validate checks the fields.
func (r EnrollRequest) Validate() error {
	switch {
	case !validKioskID(r.KioskID):
		return errors.New("protocol: enrollment request: kioskId must be 1-64 characters of [A-Za-z0-9._:-]")
	case len(r.Code) == 0 || len(r.Code) > MaxEnrollmentCode:
		return fmt.Errorf("protocol: enrollment request: code must be 1-%d characters", MaxEnrollmentCode)
	}
	if err := validCSR(r.CSR); err != nil {
		return fmt.Errorf("protocol: enrollment request: %w", err)
	}
	return nil
}

// DecodeEnrollResponse parses an enrollment answer strictly.
func DecodeEnrollResponse(b []byte) (EnrollResponse, error) {
	var r EnrollResponse
	if len(b) > 2*MaxChain+1024 {
		return r, errors.New("protocol: enrollment response too large")
	}
	if err := strictUnmarshal(b, &r); err != nil {
		return EnrollResponse{}, fmt.Errorf("protocol: enrollment response is not valid JSON with chain and centerCa: %w", err)
	}
	if err := validChain(r.Chain); err != nil {
		return EnrollResponse{}, fmt.Errorf("protocol: enrollment response: %w", err)
	}
	if err := validChain(r.CenterCA); err != nil {
		return EnrollResponse{}, fmt.Errorf("protocol: enrollment response: centerCa: %w", err)
	}
	return r, nil
}

func validKioskID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}
