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
	"strings"

	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Version is the protocol version this package speaks.
const Version = 1

// Size limits. The center reads kiosk frames with MaxKioskFrame; the kiosk
// reads center frames with MaxCenterFrame.
const (
	MaxKioskFrame = 32 << 10 // an issue request is about 2 KiB
	// MaxCenterFrame bounds a frame from the center. The largest is Hello:
	// the national list of 1,741 municipalities is about 250 KiB, and at
	// most MaxMunicipalities entries of at most maxNameBytes per text field
	// stay under 2 MiB. Two certificates with QR payloads are about 20 KiB.
	MaxCenterFrame = 2 << 20
	MaxCopies      = 5
	// MaxMunicipalities bounds Hello's two lists together: Japan has 1,741
	// municipalities (the 1,747 of the national list less the six Northern
	// Territories villages), so this leaves room and bounds the kiosk's memory.
	MaxMunicipalities = 2000
)

// Message types.
const (
	TypeHello       = "hello"       // center → kiosk, first frame
	TypeCheck       = "check"       // kiosk → center: may this card get a certificate from this municipality?
	TypeChecked     = "checked"     // center → kiosk, answers check
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

// Municipality is a municipality as listed in Hello: what the kiosk needs
// to group and sort it for the resident. The prefecture is the code's first
// two digits.
type Municipality struct {
	Code   string `json:"code"`
	NameJa string `json:"nameJa"`
	NameEn string `json:"nameEn"`
	// Kana is the reading in full-width katakana as the national list
	// writes it (サッポロシ): the kiosk sorts by it and files the
	// municipality under its 50-sound index tab. Empty when the center has
	// none (the kiosk then files it under the index's last tab).
	Kana string `json:"kana,omitempty"`
	// Kind is one of the MunicipalityKind values; empty when unknown.
	Kind string `json:"kind,omitempty"`
	// CounterJa and CounterEn name the municipal counter (窓口) where a
	// resident the kiosk cannot serve applies instead: the counter_only
	// screen shows them. Both or neither, each at most MaxCounterBytes;
	// only in Municipalities (a municipality that does not take part
	// sends no one away), and only to a kiosk that announced
	// KioskFeatureCounter: an older kiosk decodes hello strictly and
	// would drop a frame with fields it does not know.
	CounterJa string `json:"counterJa,omitempty"`
	CounterEn string `json:"counterEn,omitempty"`
}

// MaxCounterBytes bounds each of a municipality's counter names (in the
// center's store too), so that a hello of MaxMunicipalities entries with
// every text field at its limit stays under MaxCenterFrame.
const MaxCounterBytes = 120

// HeaderKioskFeatures is the websocket upgrade request header in which a
// kiosk lists, comma-separated, the optional hello fields it decodes. A
// center sends an optional field only to a kiosk that lists it, so kiosks
// and centers can be upgraded in any order.
const HeaderKioskFeatures = "Kioskcert-Kiosk-Features"

// KioskFeatureCounter: the kiosk decodes Municipality.CounterJa and
// CounterEn.
const KioskFeatureCounter = "counter"

// KioskFeatures returns the kiosk features a HeaderKioskFeatures value
// lists (unknown ones included; the center ignores them).
func KioskFeatures(header string) []string {
	var out []string
	for f := range strings.SplitSeq(header, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Municipality kinds (Municipality.Kind). A designated city (政令指定都市) has
// wards of its own, which are not municipalities: its residents choose the
// city. Tokyo's special wards are municipalities.
const (
	KindCity           = "city"
	KindDesignatedCity = "designated_city"
	KindTown           = "town"
	KindVillage        = "village"
	KindSpecialWard    = "special_ward"
)

// Features a center may announce in Hello.Features.
const (
	// FeatureCheck: the center answers Check, so the kiosk can learn
	// before kind and copies whether the municipality holds the resident's
	// record and which kinds it can issue.
	FeatureCheck = "check"
)

// Hello is the center's first frame: what this kiosk may offer.
type Hello struct {
	ProtocolVersion int    `json:"protocolVersion"`
	KioskID         string `json:"kioskId"`
	// Time is the center's clock (RFC 3339), so kiosks can detect skew.
	Time string `json:"time"`
	// Municipalities are the participating municipalities: the only ones
	// the kiosk may request.
	Municipalities []Municipality `json:"municipalities"`
	// NotParticipating lists the municipalities that do not offer kiosk
	// issuance, so that the kiosk can show them greyed with the reason
	// instead of hiding them (a resident who cannot find theirs does not
	// know why). The two lists together hold at most MaxMunicipalities.
	NotParticipating []Municipality `json:"notParticipating,omitempty"`
	FeePerCopyYen    int            `json:"feePerCopyYen"`
	Kinds            []string       `json:"kinds"`
	MaxCopies        int            `json:"maxCopies"`
	HeartbeatSeconds int            `json:"heartbeatSeconds"`
	// Features lists what this center supports beyond the messages every
	// version-1 center answers (FeatureCheck).
	Features []string `json:"features,omitempty"`
}

// HasFeature reports whether the center announced feature f.
func (h Hello) HasFeature(f string) bool {
	for _, x := range h.Features {
		if x == f {
			return true
		}
	}
	return false
}

// Check asks, before the resident chooses kind and copies, whether the
// center can issue to this card from this municipality. The center runs the
// checks of an issue up to the record (municipality participating, card
// data, record found, same holder) and signs nothing. A refusal comes back
// as an Error with the check's RequestID (no_record, not_participating, …).
type Check struct {
	// RequestID is fresh for each check (never reused for the issue).
	RequestID    string    `json:"requestId"`
	Municipality string    `json:"municipality"`
	Card         CardFiles `json:"card"`
}

// Checked answers Check: the record is there.
type Checked struct {
	RequestID string `json:"requestId"`
	// CardDigest binds the answer to the card files checked, as in
	// CertificateResponse.
	CardDigest string `json:"cardDigest"`
	// Kinds are the kinds this resident can get from this municipality:
	// overseas only when passport data is on record.
	Kinds []string `json:"kinds"`
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
func (Check) Type() string { return TypeCheck }

// Type implements Message.
func (Checked) Type() string { return TypeChecked }

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
