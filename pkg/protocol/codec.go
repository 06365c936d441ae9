package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// DecodeError is returned by Decode. Code says what to answer the peer with.
type DecodeError struct {
	Code Code
	// Detail says what was wrong, naming the message type and field but
	// never quoting what the peer sent: safe to answer with and to log.
	Detail string
	// Err is the decoder's own error. JSON decoding errors may quote the
	// frame (an unknown field's name, a value's text), so Err is for
	// errors.Is and tests only: never send it or log it.
	Err error
}

func (e *DecodeError) Error() string { return "protocol: " + e.Detail }
func (e *DecodeError) Unwrap() error { return e.Err }

type envelope struct {
	V    int             `json:"v"`
	Type string          `json:"type"`
	Body json.RawMessage `json:"body"`
}

// Encode returns the frame for m.
func Encode(m Message) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("protocol: encode %s: %w", m.Type(), err)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("protocol: encode %s: %w", m.Type(), err)
	}
	return json.Marshal(envelope{V: Version, Type: m.Type(), Body: body})
}

// Decode parses one frame of at most limit bytes. Messages come back as
// values of the concrete types (Hello, Issue, …; *Error for errors).
func Decode(frame []byte, limit int) (Message, error) {
	if len(frame) > limit {
		return nil, decodeError(CodeMessageTooLarge, fmt.Errorf("frame of %d bytes exceeds %d", len(frame), limit), nil)
	}
	if !utf8.Valid(frame) {
		return nil, decodeError(CodeBadMessage, errors.New("frame is not UTF-8"), nil)
	}
	var env envelope
	if err := strictUnmarshal(frame, &env); err != nil {
		return nil, decodeError(CodeBadMessage, errors.New("envelope is not a JSON object with v, type and body"), err)
	}
	if env.V != Version {
		return nil, decodeError(CodeUnsupportedVersion, fmt.Errorf("unsupported envelope version; this side speaks %d", Version), nil)
	}
	var m Message
	switch env.Type {
	case TypeHello:
		m = decodeAs[Hello](env.Body)
	case TypeCheck:
		m = decodeAs[Check](env.Body)
	case TypeChecked:
		m = decodeAs[Checked](env.Body)
	case TypeIssue:
		m = decodeAs[Issue](env.Body)
	case TypeCertificate:
		m = decodeAs[CertificateResponse](env.Body)
	case TypeOutcome:
		m = decodeAs[Outcome](env.Body)
	case TypeAck:
		m = decodeAs[Ack](env.Body)
	case TypeStatus:
		m = decodeAs[Status](env.Body)
	case TypePing:
		m = decodeAs[Ping](env.Body)
	case TypePong:
		m = decodeAs[Pong](env.Body)
	case TypeError:
		m = decodeAs[*Error](env.Body)
	case TypeRenew:
		m = decodeAs[Renew](env.Body)
	case TypeRenewed:
		m = decodeAs[Renewed](env.Body)
	default:
		return nil, decodeError(CodeUnexpectedMessage, errors.New("unknown message type"), nil)
	}
	if f, ok := m.(failed); ok {
		return nil, decodeError(CodeBadMessage, fmt.Errorf("%s body is not valid JSON for this message (syntax, unknown field or wrong type)", env.Type), f.err)
	}
	if err := m.validate(); err != nil {
		// validate's messages name fields and limits, never values.
		return nil, decodeError(CodeBadMessage, fmt.Errorf("%s: %w", env.Type, err), err)
	}
	return m, nil
}

func decodeError(code Code, public, cause error) *DecodeError {
	if cause == nil {
		cause = public
	}
	return &DecodeError{Code: code, Detail: public.Error(), Err: cause}
}

// failed carries a body decoding error through decodeAs's Message result.
type failed struct{ err error }

func (failed) Type() string      { return "" }
func (f failed) validate() error { return f.err }

func decodeAs[T Message](body json.RawMessage) Message {
	var v T
	if len(body) == 0 {
		return failed{errors.New("body is missing")}
	}
	// *Error decodes into a fresh value, not a nil pointer.
	if p, ok := any(&v).(**Error); ok {
		*p = new(Error)
		if err := strictUnmarshal(body, *p); err != nil {
			return failed{err}
		}
		return v
	}
	if err := strictUnmarshal(body, &v); err != nil {
		return failed{err}
	}
	return v
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

func (h Hello) validate() error {
	if h.ProtocolVersion != Version {
		return fmt.Errorf("protocolVersion %d", h.ProtocolVersion)
	}
	if h.KioskID == "" || h.Time == "" || h.MaxCopies < 1 || h.MaxCopies > MaxCopies || h.FeePerCopyYen < 0 || h.HeartbeatSeconds < 1 {
		return errors.New("hello needs kioskId, time, maxCopies 1-5, feePerCopyYen ≥ 0, heartbeatSeconds ≥ 1")
	}
	if n := len(h.Municipalities) + len(h.NotParticipating); n > MaxMunicipalities {
		return fmt.Errorf("%d municipalities, at most %d", n, MaxMunicipalities)
	}
	seen := make(map[string]bool, len(h.Municipalities)+len(h.NotParticipating))
	for _, list := range [][]Municipality{h.Municipalities, h.NotParticipating} {
		for _, m := range list {
			if err := m.validate(); err != nil {
				return err
			}
			if seen[m.Code] {
				return fmt.Errorf("municipality %s listed twice", m.Code)
			}
			seen[m.Code] = true
		}
	}
	if len(h.Features) > 16 {
		return errors.New("at most 16 features")
	}
	for _, f := range h.Features {
		if f == "" || len(f) > 32 {
			return errors.New("a feature is 1-32 bytes")
		}
	}
	for _, k := range h.Kinds {
		if !certificate.Kind(k).Valid() {
			return errors.New("kinds must be domestic or overseas")
		}
	}
	return nil
}

// maxNameBytes bounds each text field of a Municipality (as the center's
// store does).
const maxNameBytes = 200

func (m Municipality) validate() error {
	if err := lgcode.Validate(m.Code); err != nil {
		return err
	}
	if m.NameJa == "" || m.NameEn == "" {
		return fmt.Errorf("municipality %s needs names in both languages", m.Code)
	}
	if len(m.NameJa) > maxNameBytes || len(m.NameEn) > maxNameBytes || len(m.Kana) > maxNameBytes {
		return fmt.Errorf("municipality %s: names and kana are at most %d bytes", m.Code, maxNameBytes)
	}
	if (m.CounterJa == "") != (m.CounterEn == "") || len(m.CounterJa) > MaxCounterBytes || len(m.CounterEn) > MaxCounterBytes {
		return fmt.Errorf("municipality %s: the counter is named in both languages or neither, each at most %d bytes", m.Code, MaxCounterBytes)
	}
	if m.Kana != "" && !ValidKana(m.Kana) {
		return fmt.Errorf("municipality %s: kana must be full-width katakana", m.Code)
	}
	if m.Kind != "" && !ValidMunicipalityKind(m.Kind) {
		return fmt.Errorf("municipality %s: unknown kind %q", m.Code, m.Kind)
	}
	return nil
}

// ValidMunicipalityKind reports whether k is one of the Kind… values.
func ValidMunicipalityKind(k string) bool {
	switch k {
	case KindCity, KindDesignatedCity, KindTown, KindVillage, KindSpecialWard:
		return true
	}
	return false
}

// ValidKana reports whether s is a reading in full-width katakana
// (ァ–ヶ, ヴ and the long-vowel mark ー), as Municipality.Kana must be.
func ValidKana(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'ァ' || r > 'ヶ') && r != 'ー' && r != 'ヴ' {
			return false
		}
	}
	return true
}

func (m Check) validate() error {
	if err := validRequestID(m.RequestID); err != nil {
		return err
	}
	if err := lgcode.Validate(m.Municipality); err != nil {
		return err
	}
	return validCard(m.Card)
}

func (m Checked) validate() error {
	if err := validRequestID(m.RequestID); err != nil {
		return err
	}
	if len(m.CardDigest) != 64 {
		return errors.New("cardDigest must be 64 hex digits")
	}
	if len(m.Kinds) == 0 || len(m.Kinds) > 2 {
		return errors.New("kinds must hold 1 or 2 kinds")
	}
	for _, k := range m.Kinds {
		if !certificate.Kind(k).Valid() {
			return fmt.Errorf("unknown kind %q", k)
		}
	}
	return nil
}

func validCard(c CardFiles) error {
	for name, f := range map[string][]byte{"myNumber": c.MyNumber, "fourItems": c.FourItems, "signature": c.Signature, "certificate": c.Certificate} {
		if len(f) == 0 || len(f) > 4096 {
			return fmt.Errorf("card.%s must hold 1-4096 bytes", name)
		}
	}
	return nil
}

func (m Issue) validate() error {
	if err := validRequestID(m.RequestID); err != nil {
		return err
	}
	if err := lgcode.Validate(m.Municipality); err != nil {
		return err
	}
	if !m.Kind.Valid() {
		return fmt.Errorf("kind must be domestic or overseas")
	}
	if m.Copies < 1 || m.Copies > MaxCopies {
		return fmt.Errorf("copies must be 1-%d", MaxCopies)
	}
	return validCard(m.Card)
}

func (m CertificateResponse) validate() error {
	if err := validRequestID(m.RequestID); err != nil {
		return err
	}
	if len(m.CardDigest) != 64 {
		return errors.New("cardDigest must be 64 hex digits")
	}
	if len(m.Certificates) == 0 || len(m.Certificates) > 2 {
		return errors.New("certificates must hold 1 or 2 certificates")
	}
	for i := range m.Certificates {
		if err := m.Certificates[i].Validate(); err != nil {
			return fmt.Errorf("certificates[%d]: %w", i, err)
		}
	}
	if m.Copies < 1 || m.Copies > MaxCopies || m.FeeYen < 0 {
		return errors.New("copies must be 1-5 and feeYen ≥ 0")
	}
	return nil
}

func (m Outcome) validate() error {
	if err := validRequestID(m.RequestID); err != nil {
		return err
	}
	switch m.Outcome {
	case OutcomePrinted:
		if m.Copies < 1 || m.Copies > MaxCopies {
			return errors.New("printed outcome needs copies 1-5")
		}
	case OutcomeFailed, OutcomeRefused, OutcomeCancelled:
		if m.Copies != 0 {
			return errors.New("only a printed outcome has copies")
		}
	default:
		return errors.New("outcome must be printed, failed, refused or cancelled")
	}
	if m.Reason != "" && !m.Reason.Known() {
		return errors.New("reason is not a known code")
	}
	return nil
}

func (m Ack) validate() error { return validRequestID(m.RequestID) }

func (m Status) validate() error {
	switch {
	case !slices.Contains(ReaderStates, m.Reader):
		return errors.New("status reader must be one of " + strings.Join(ReaderStates, ", "))
	case !slices.Contains(PrinterStates, m.Printer):
		return errors.New("status printer must be one of " + strings.Join(PrinterStates, ", "))
	case !codeWord(m.State, 32, "-"):
		return errors.New("status state must be at most 32 of [a-z0-9-]")
	case !codeWord(m.AgentVersion, 64, "._+-ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
		return errors.New("status agentVersion must be at most 64 of [A-Za-z0-9._+-]")
	case !codeWord(m.LastError, 64, "_.-"):
		return errors.New("status lastError must be an error code: at most 64 of [a-z0-9_.-]")
	}
	return nil
}

// codeWord reports whether s is at most max bytes of lowercase letters,
// digits and the extra characters (empty is allowed).
func codeWord(s string, max int, extra string) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

func (m Ping) validate() error {
	if len(m.Nonce) == 0 || len(m.Nonce) > 64 {
		return errors.New("nonce must be 1-64 bytes")
	}
	return nil
}

func (m Pong) validate() error { return Ping(m).validate() }

func (e *Error) validate() error {
	if e == nil || e.Code == "" {
		return errors.New("error needs a code")
	}
	if e.RequestID != "" {
		if err := validRequestID(e.RequestID); err != nil {
			return err
		}
	}
	if len(e.Detail) > 512 {
		return errors.New("detail is at most 512 bytes")
	}
	if e.RetryAfterMs < 0 || e.RetryAfterMs > MaxRetryAfterMs {
		return fmt.Errorf("retryAfterMs must be 0-%d", MaxRetryAfterMs)
	}
	return nil
}

// MaxRetryAfterMs bounds Error.RetryAfterMs (one minute).
const MaxRetryAfterMs = 60000
