package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// AuditLog is the append-only record of what the center did, and the source
// of the per-municipality settlement counts. It has no update or delete,
// and an edit behind its back shows: each event carries the hash of its
// predecessor and its own (ChainHash, computed by the store as it appends,
// in sequence order), and the center signs checkpoints of the chain's head
// (center/internal/auditlog verifies both).
type AuditLog interface {
	// AppendEvent validates e, assigns its sequence number and stores it.
	// The returned event carries the sequence number and normalised times.
	AppendEvent(ctx context.Context, e Event) (Event, error)
	// Events returns the events matching q, ordered by time then sequence.
	Events(ctx context.Context, q EventQuery) ([]Event, error)
	// EventsBySeq returns the events with Seq ≥ from in sequence (append)
	// order, at most limit (EffectiveLimit rules apply): the order the
	// hash chain follows.
	EventsBySeq(ctx context.Context, from uint64, limit int) ([]Event, error)
	// AuditHead returns the last event's sequence number and hash, or 0
	// and GenesisHash for an empty log.
	AuditHead(ctx context.Context) (uint64, string, error)
	// PutCheckpoint stores a signed checkpoint of the chain; ErrExists
	// when one at that Seq is stored.
	PutCheckpoint(ctx context.Context, c Checkpoint) error
	// Checkpoints returns every checkpoint in Seq order.
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
	// DailyCounts returns the settlement counters for the settlement days
	// firstDay to lastDay inclusive (YYYY-MM-DD, Japan time), ordered by
	// day, municipality, event type and kind. Events without a
	// municipality are not counted.
	DailyCounts(ctx context.Context, firstDay, lastDay string) ([]DailyCount, error)
	// SettlementCounts returns the printed (paid) issuances of the
	// settlement days or months q selects, grouped by period, municipality,
	// store chain, kind and copies per issuance (settlement.go).
	SettlementCounts(ctx context.Context, q SettlementQuery) ([]SettlementCount, error)
}

// EventType names what happened. The center defines the values it writes;
// these are the ones settlement and the operator tools know.
type EventType string

// Event types the center writes.
const (
	// EventRequested: a kiosk asked for a certificate (written before the
	// checks, so refused and failed requests are accounted for).
	EventRequested EventType = "requested"
	// EventIssued: the center signed and returned a certificate.
	EventIssued EventType = "issued"
	// EventRefused: a check refused the request (Result says which).
	EventRefused EventType = "refused"
	// EventFailed: an internal error or timeout aborted the request.
	EventFailed EventType = "failed"
	// EventPrinted: the kiosk reported Copies printed and paid for; the
	// basis of settlement with the municipality.
	EventPrinted EventType = "printed"
	// EventPrintFailed: the kiosk reported that printing failed (no charge).
	EventPrintFailed EventType = "print_failed"
	// EventPrintRefused: the kiosk refused to print the certificate (its
	// binding check failed; no charge).
	EventPrintRefused EventType = "print_refused"
	// EventCancelled: the resident cancelled before printing (no charge).
	EventCancelled EventType = "cancelled"
	// EventKioskStatus: an operator changed a kiosk's status.
	EventKioskStatus EventType = "kiosk_status"
	// Operator actions. Each names the operator (Event.Operator) and its
	// object in the identifier fields; Result holds the new state.
	EventKioskEnrolled   EventType = "kiosk_enrolled"
	EventMunicipalitySet EventType = "municipality_set"
	EventParticipation   EventType = "municipality_participation"
	EventRecordsImported EventType = "records_imported"
	EventRecordsDeleted  EventType = "records_deleted"
	// An import job (Object names it): started (Result: its mode), a
	// cancellation asked for, and its end other than imported (Result:
	// failed or cancelled; imported ends as EventRecordsImported).
	EventRecordsImportStarted EventType = "records_import_started"
	EventRecordsImportCancel  EventType = "records_import_cancel"
	EventRecordsImportEnded   EventType = "records_import_ended"
	EventRecordFlagSet        EventType = "record_flag_set"
	EventRecordFlagCleared    EventType = "record_flag_cleared"
	EventKeyRotated           EventType = "key_rotated"
	EventCertificateRevoke    EventType = "certificate_revoked"
	// Operator accounts and their sessions (the operations console).
	// Object names the operator or token acted on.
	EventOperatorLogin    EventType = "operator_login"
	EventOperatorLogout   EventType = "operator_logout"
	EventOperatorAdded    EventType = "operator_added"
	EventOperatorChanged  EventType = "operator_changed"
	EventAPITokenIssued   EventType = "api_token_issued"
	EventAPITokenRevoked  EventType = "api_token_revoked"
	EventAuditExported    EventType = "audit_exported"
	EventSettlementExport EventType = "settlement_exported"
)

// Settles reports whether events of type t settle a request (the kiosk's
// outcome report).
func (t EventType) Settles() bool {
	switch t {
	case EventPrinted, EventPrintFailed, EventPrintRefused, EventCancelled:
		return true
	}
	return false
}

// Event is one audit and settlement event. By design it has no field that
// could hold personal data: identifiers, codes, counts and times only, each
// restricted to a short ASCII alphabet by Validate.
type Event struct {
	// Seq is assigned by the store: unique and increasing in append order.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type EventType `json:"type"`
	// KioskID and StoreCode identify where the request came from.
	KioskID   string `json:"kioskId,omitempty"`
	StoreCode string `json:"storeCode,omitempty"`
	// Municipality is the issuing municipality's 6-digit code.
	Municipality string `json:"municipality,omitempty"`
	// Kind is domestic or overseas; empty when not yet known.
	Kind certificate.Kind `json:"kind,omitempty"`
	// Copies is the number of copies (printed, or requested).
	Copies int `json:"copies,omitempty"`
	// CertificateID is the issued certificate's ID (at most 12 characters).
	CertificateID string `json:"certificateId,omitempty"`
	// RequestID ties together the events of one request end to end.
	RequestID string `json:"requestId,omitempty"`
	// Result is a result code such as "ok", "no_record",
	// "municipality_not_participating".
	Result string `json:"result,omitempty"`
	// Latency is how long the step took.
	Latency time.Duration `json:"latency,omitempty"`
	// Operator is the operator ID behind an operator action (brief §2:
	// operations are logged per user ID).
	Operator string `json:"operator,omitempty"`
	// Source is where an operator action came from (an address, or
	// "local" for a command run on the center's own files).
	Source string `json:"source,omitempty"`
	// Object names what an operator action acted on when no field above
	// does: an operator ID, an API token ID, a signing key ID.
	Object string `json:"object,omitempty"`
	// PrevHash and Hash chain the event to its predecessor (set by the
	// store; see ChainHash).
	PrevHash string `json:"prevHash,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

// GenesisHash is the PrevHash of the first event of a log.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// ChainHash returns the hash of e as the successor of prev: SHA-256 over a
// version line, prev, and e's JSON encoding with PrevHash set to prev and
// Hash empty (encoding/json writes struct fields in declaration order, so
// the encoding is the same wherever it is computed). Every store computes
// it the same way; a verifier recomputes it.
func ChainHash(prev string, e Event) string {
	e.PrevHash, e.Hash = prev, ""
	e.Time = Time(e.Time)
	b, err := json.Marshal(e)
	if err != nil {
		// An Event always encodes; a failure is a bug worth a loud stop.
		panic("store: encoding an audit event: " + err.Error())
	}
	h := sha256.New()
	h.Write([]byte("kioskcert audit v1\n"))
	h.Write([]byte(prev))
	h.Write([]byte("\n"))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// Checkpoint is a signed statement of the chain's head: the center signs
// one at least every minute with a key kept apart from the certificate
// keys, so a log rewritten from some point on (hashes and all) no longer
// matches the checkpoints signed before.
type Checkpoint struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
	// KeyID names the audit key (store.SigningKey with PurposeAudit).
	KeyID     string `json:"keyId"`
	Signature []byte `json:"signature"` // ASN.1 ECDSA over SHA-256 of Message
}

// Message is what a checkpoint's signature covers.
func (c *Checkpoint) Message() []byte {
	return fmt.Appendf(nil, "kioskcert audit checkpoint v1\n%d\n%s\n%s", c.Seq, c.Hash, Time(c.Time).Format(time.RFC3339Nano))
}

// Validate checks a checkpoint's fields.
func (c *Checkpoint) Validate() error {
	switch {
	case c.Seq == 0:
		return invalid("checkpoint.seq", "must be positive")
	case !isLowerHex(c.Hash, 64):
		return invalid("checkpoint.hash", "must be 64 lowercase hex digits")
	case c.Time.IsZero():
		return invalid("checkpoint.time", "is required")
	case !isIdent(c.KeyID, 128):
		return invalid("checkpoint.keyId", "must be 1-128 characters of [A-Za-z0-9._:-]")
	case len(c.Signature) == 0 || len(c.Signature) > 160:
		return invalid("checkpoint.signature", "must be 1-160 bytes")
	}
	return nil
}

// MaxCopies bounds Event.Copies.
const MaxCopies = 100

// Validate checks every field's alphabet and range.
func (e *Event) Validate() error {
	switch {
	case e.Time.IsZero() || e.Time.Year() < 2000:
		return invalid("event.time", "is required (after the year 2000)")
	case !isEventWord(string(e.Type), 40):
		return invalid("event.type", "must be 1-40 characters of [a-z0-9_.]")
	case e.KioskID != "" && !isIdent(e.KioskID, 64):
		return invalid("event.kioskId", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case e.StoreCode != "" && !isIdent(e.StoreCode, 32):
		return invalid("event.storeCode", "must be 1-32 characters of [A-Za-z0-9._:-]")
	case e.Kind != "" && !e.Kind.Valid():
		return invalid("event.kind", "must be domestic or overseas")
	case e.Copies < 0 || e.Copies > MaxCopies:
		return invalid("event.copies", fmt.Sprintf("must be 0-%d", MaxCopies))
	case e.CertificateID != "" && !isIdent(e.CertificateID, certificate.MaxIDLen):
		return invalid("event.certificateId", "must be 1-12 characters of [A-Za-z0-9._:-]")
	case e.RequestID != "" && !isIdent(e.RequestID, 64):
		return invalid("event.requestId", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case e.Result != "" && !isEventWord(e.Result, 64):
		return invalid("event.result", "must be 1-64 characters of [a-z0-9_.]")
	case e.Latency < 0:
		return invalid("event.latency", "must not be negative")
	case e.Operator != "" && !isIdent(e.Operator, 64):
		return invalid("event.operator", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case e.PrevHash != "" && !isLowerHex(e.PrevHash, 64), e.Hash != "" && !isLowerHex(e.Hash, 64):
		return invalid("event.hash", "must be 64 lowercase hex digits (set by the store)")
	case e.Source != "" && !isIdent(e.Source, 64):
		return invalid("event.source", "must be 1-64 characters of [A-Za-z0-9._:-] (an address or \"local\")")
	case e.Object != "" && !isIdent(e.Object, 128):
		return invalid("event.object", "must be 1-128 characters of [A-Za-z0-9._:-]")
	}
	if e.Municipality != "" {
		if err := lgcode.Validate(e.Municipality); err != nil {
			return fmt.Errorf("%w: event.municipality: %w", ErrInvalid, err)
		}
	}
	return nil
}

func isEventWord(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// EventQuery selects events.
type EventQuery struct {
	// From and To bound the event time: From <= Time < To. A zero From
	// means from the beginning, a zero To means without end.
	From, To time.Time
	// KioskID, when set, selects only that kiosk's events.
	KioskID string
	// RequestID, when set, selects only that request's events. The center
	// uses it to settle an outcome reported after a restart, and to refuse
	// a retried request it already issued before the restart.
	RequestID string
	// Municipality, CertificateID, Operator, Result and Type, when set,
	// select only events with that value. All conditions combine (AND).
	// There is deliberately no condition on anything personal: events
	// hold nothing personal to search by.
	Municipality  string
	CertificateID string
	Operator      string
	Result        string
	Type          EventType
	// After, when set, starts after the event at that position in the
	// query's order (exclusive): the next page of a paged search passes
	// the position of the last event of the previous page.
	After EventPosition
	// Descending returns the newest events first (time then sequence,
	// both descending); From, To and After keep their meaning.
	Descending bool
	// Limit caps the number of events returned (0 means DefaultEventLimit;
	// at most MaxEventLimit).
	Limit int
}

// EventPosition is an event's place in the log's order: its time and
// sequence number. The zero position means "from the start".
type EventPosition struct {
	Time time.Time
	Seq  uint64
}

// IsZero reports whether p is the zero position.
func (p EventPosition) IsZero() bool { return p.Time.IsZero() && p.Seq == 0 }

// Position returns e's position, for EventQuery.After.
func (e *Event) Position() EventPosition { return EventPosition{Time: e.Time, Seq: e.Seq} }

// Limits on EventQuery.Limit, so a careless query cannot load the whole log.
const (
	DefaultEventLimit = 1000
	MaxEventLimit     = 100000
)

// EffectiveLimit returns the limit a store applies for q.
func (q EventQuery) EffectiveLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultEventLimit
	case q.Limit > MaxEventLimit:
		return MaxEventLimit
	}
	return q.Limit
}

// DailyCount is one settlement counter: the events of one type and kind for
// one municipality on one settlement day.
type DailyCount struct {
	Day          string           `json:"day"` // YYYY-MM-DD, Japan time
	Municipality string           `json:"municipality"`
	Type         EventType        `json:"type"`
	Kind         certificate.Kind `json:"kind,omitempty"`
	Events       int64            `json:"events"`
	Copies       int64            `json:"copies"`
}

// CounterOnlyPrefix begins the type of the audit event of a counter_only
// refusal: counter_only.<reason> (support_measure, alias_on_record,
// travel_document, staff_review, deceased, alias_on_card). The reason is
// the municipality's to read; the kiosk only ever sees counter_only.
const CounterOnlyPrefix = "counter_only."

// CounterOnlyReason returns the reason of a counter_only refusal's event
// type, and whether t is one.
func CounterOnlyReason(t EventType) (string, bool) {
	r, ok := strings.CutPrefix(string(t), CounterOnlyPrefix)
	return r, ok && r != ""
}

// jst is Japan Standard Time. Japan has no daylight saving time, so a fixed
// zone is exact and needs no time zone database in the center's image.
var jst = time.FixedZone("JST", 9*60*60)

// SettlementDay returns the settlement day of t: its date in Japan time.
func SettlementDay(t time.Time) string { return t.In(jst).Format(time.DateOnly) }

// ParseDay checks a settlement day string (YYYY-MM-DD).
func ParseDay(day string) (time.Time, error) {
	t, err := time.ParseInLocation(time.DateOnly, day, jst)
	if err != nil {
		return time.Time{}, invalid("day", "must be a date YYYY-MM-DD")
	}
	return t, nil
}
