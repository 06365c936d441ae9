// Package protocol is the wire protocol between a kiosk agent and the
// issuance center: versioned JSON messages, one per websocket text frame,
// over mutually authenticated TLS 1.3. docs/PROTOCOL.md describes every
// message with an example transcript.
//
// Every frame is an envelope {"v":1,"type":"…","body":{…}}. Decode is strict:
// unknown types, unknown fields, missing required fields, oversized frames
// and trailing data are errors, never panics, so a misbehaving peer gets a
// clear error code back and the connection survives.
//
// The binding between the card in the reader and the printed certificate is
// carried end to end: the kiosk names each request with a 128-bit random
// RequestID; the center answers with that ID and with CardDigest, the SHA-256
// digest of the card files it verified; the kiosk prints only a response
// whose ID and digest match its own request and whose holder matches the
// card it read.
//
// The PIN is never part of any message.
package protocol

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Version is the protocol version this package speaks.
const Version = 1

// Size limits. The center reads kiosk frames with MaxKioskFrame; the kiosk
// reads center frames with MaxCenterFrame.
const (
	MaxKioskFrame  = 32 << 10  // an issue request is about 2 KiB
	MaxCenterFrame = 256 << 10 // two certificates with QR payloads are about 20 KiB
	MaxCopies      = 5
)

// Message types.
const (
	TypeHello       = "hello"       // center → kiosk, first frame
	TypeIssue       = "issue"       // kiosk → center
	TypeCertificate = "certificate" // center → kiosk, answers issue
	TypeOutcome     = "outcome"     // kiosk → center: printed, failed, refused, cancelled
	TypeAck         = "ack"         // center → kiosk, answers outcome
	TypeStatus      = "status"      // kiosk → center: device health for live status
	TypeError       = "error"       // either direction
	TypePing        = "ping"        // either direction
	TypePong        = "pong"        // answers ping
)

// Message is implemented by every message body.
type Message interface {
	// Type returns the envelope type of the message.
	Type() string
	validate() error
}

// Municipality is a municipality the kiosk may offer, as listed in Hello.
type Municipality struct {
	Code   string `json:"code"`
	NameJa string `json:"nameJa"`
	NameEn string `json:"nameEn"`
}

// Hello is the center's first frame: what this kiosk may offer.
type Hello struct {
	ProtocolVersion int    `json:"protocolVersion"`
	KioskID         string `json:"kioskId"`
	// Time is the center's clock (RFC 3339), so kiosks can detect skew.
	Time             string         `json:"time"`
	Municipalities   []Municipality `json:"municipalities"`
	FeePerCopyYen    int            `json:"feePerCopyYen"`
	Kinds            []string       `json:"kinds"`
	MaxCopies        int            `json:"maxCopies"`
	HeartbeatSeconds int            `json:"heartbeatSeconds"`
}

// CardFiles carries the raw card files exactly as read. JSON encodes them
// in base64.
type CardFiles = carddata.Raw

// Issue asks for a certificate.
type Issue struct {
	// RequestID is 32 lowercase hex digits (128 random bits) chosen by the
	// kiosk; repeating an Issue with the same ID after a dropped connection
	// returns the same certificate instead of issuing another.
	RequestID    string           `json:"requestId"`
	Municipality string           `json:"municipality"`
	Kind         certificate.Kind `json:"kind"`
	Copies       int              `json:"copies"`
	Card         CardFiles        `json:"card"`
}

// CertificateResponse answers Issue.
type CertificateResponse struct {
	RequestID string `json:"requestId"`
	// CardDigest is hex SHA-256 (carddata.Raw.Digest) of the card files the
	// center verified for this certificate.
	CardDigest string `json:"cardDigest"`
	// Certificates holds one certificate for the domestic kind, and the
	// overseas certificate followed by the domestic one for the overseas kind.
	Certificates []certificate.Certificate `json:"certificates"`
	Copies       int                       `json:"copies"`
	FeeYen       int                       `json:"feeYen"`
	// Replayed is true when this answers a repeated RequestID.
	Replayed bool `json:"replayed,omitempty"`
}

// OutcomeKind says what became of a certificate response.
type OutcomeKind string

// Outcome values.
const (
	OutcomePrinted   OutcomeKind = "printed"   // paper delivered; settle the fee
	OutcomeFailed    OutcomeKind = "failed"    // printing failed; no charge
	OutcomeRefused   OutcomeKind = "refused"   // the kiosk refused to print (binding check failed)
	OutcomeCancelled OutcomeKind = "cancelled" // the resident cancelled before printing
)

// Outcome reports what became of a certificate response.
type Outcome struct {
	RequestID string      `json:"requestId"`
	Outcome   OutcomeKind `json:"outcome"`
	Copies    int         `json:"copies"`
	// Reason is an error code (see Code) for failed and refused outcomes.
	Reason Code `json:"reason,omitempty"`
}

// Ack acknowledges an Outcome; the center has recorded it and forgotten the request.
type Ack struct {
	RequestID string `json:"requestId"`
}

// Status reports the kiosk's health for the operators' live view and the
// console's "needs a visit" list. Every field is a code from a closed
// alphabet, so nothing personal can be carried.
type Status struct {
	Reader  string `json:"reader"`  // ReaderStates: "ok", "no-reader"
	Printer string `json:"printer"` // PrinterStates: "ok", "paper-low", "paper-out", "jammed", …
	State   string `json:"state"`   // the session state name (idle, pin, …), without personal data
	// AgentVersion is the kiosk agent's version (1-64 of [A-Za-z0-9._+-]).
	AgentVersion string `json:"agentVersion,omitempty"`
	// LastError is the code of the last error a session showed or a
	// device reported (1-64 of [a-z0-9_.-]), never its text.
	LastError string `json:"lastError,omitempty"`
}

// ReaderStates are the values of Status.Reader.
var ReaderStates = []string{"ok", "no-reader"}

// PrinterStates are the values of Status.Printer: "ok" (or "ready",
// "busy") can print; "paper-low" can print but needs paper soon; the rest
// need a visit. "unknown" is a printer that cannot say.
var PrinterStates = []string{"ok", "ready", "busy", "paper-low", "paper-out", "jammed", "cover-open", "supply-empty", "stopped", "offline", "unknown"}

// Ping asks the peer to answer with Pong.
type Ping struct {
	Nonce string `json:"nonce"`
}

// Pong answers Ping with its nonce.
type Pong struct {
	Nonce string `json:"nonce"`
}

// Type implements Message.
func (Hello) Type() string { return TypeHello }

// Type implements Message.
func (Issue) Type() string { return TypeIssue }

// Type implements Message.
func (CertificateResponse) Type() string { return TypeCertificate }

// Type implements Message.
func (Outcome) Type() string { return TypeOutcome }

// Type implements Message.
func (Ack) Type() string { return TypeAck }

// Type implements Message.
func (Status) Type() string { return TypeStatus }

// Type implements Message.
func (Ping) Type() string { return TypePing }

// Type implements Message.
func (Pong) Type() string { return TypePong }

// NewRequestID returns 128 random bits as 32 lowercase hex digits.
func NewRequestID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("protocol: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// CardDigest returns the hex digest that binds a response to card files.
func CardDigest(card CardFiles) string {
	d := card.Digest()
	return hex.EncodeToString(d[:])
}

// ValidRequestID reports whether id has the form NewRequestID produces.
func ValidRequestID(id string) bool { return validRequestID(id) == nil }

func validRequestID(id string) error {
	if len(id) != 32 {
		return fmt.Errorf("requestId must be 32 hex digits")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("requestId must be 32 lowercase hex digits")
		}
	}
	return nil
}
