package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// DecodeError is returned by Decode. Code says what to answer the peer with.
type DecodeError struct {
	Code Code
	Err  error
}

func (e *DecodeError) Error() string { return "protocol: " + e.Err.Error() }
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
		return nil, &DecodeError{CodeMessageTooLarge, fmt.Errorf("frame of %d bytes exceeds %d", len(frame), limit)}
	}
	if !utf8.Valid(frame) {
		return nil, &DecodeError{CodeBadMessage, errors.New("frame is not UTF-8")}
	}
	var env envelope
	if err := strictUnmarshal(frame, &env); err != nil {
		return nil, &DecodeError{CodeBadMessage, fmt.Errorf("envelope: %w", err)}
	}
	if env.V != Version {
		return nil, &DecodeError{CodeUnsupportedVersion, fmt.Errorf("version %d, this side speaks %d", env.V, Version)}
	}
	var m Message
	switch env.Type {
	case TypeHello:
		m = decodeAs[Hello](env.Body)
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
	default:
		return nil, &DecodeError{CodeUnexpectedMessage, fmt.Errorf("unknown message type %q", env.Type)}
	}
	if f, ok := m.(failed); ok {
		return nil, &DecodeError{CodeBadMessage, fmt.Errorf("%s body: %w", env.Type, f.err)}
	}
	if err := m.validate(); err != nil {
		return nil, &DecodeError{CodeBadMessage, fmt.Errorf("%s: %w", env.Type, err)}
	}
	return m, nil
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
	for _, m := range h.Municipalities {
		if err := lgcode.Validate(m.Code); err != nil {
			return err
		}
		if m.NameJa == "" || m.NameEn == "" {
			return fmt.Errorf("municipality %s needs names in both languages", m.Code)
		}
	}
	for _, k := range h.Kinds {
		if !certificate.Kind(k).Valid() {
			return fmt.Errorf("unknown kind %q", k)
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
	c := m.Card
	for name, f := range map[string][]byte{"myNumber": c.MyNumber, "fourItems": c.FourItems, "signature": c.Signature, "certificate": c.Certificate} {
		if len(f) == 0 || len(f) > 4096 {
			return fmt.Errorf("card.%s must hold 1-4096 bytes", name)
		}
	}
	return nil
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
		return fmt.Errorf("outcome %q: want printed, failed, refused or cancelled", m.Outcome)
	}
	if m.Reason != "" && !m.Reason.Known() {
		return fmt.Errorf("unknown reason %q", m.Reason)
	}
	return nil
}

func (m Ack) validate() error { return validRequestID(m.RequestID) }

func (m Status) validate() error {
	if len(m.Reader) > 32 || len(m.Printer) > 32 || len(m.State) > 32 {
		return errors.New("status fields are at most 32 bytes")
	}
	return nil
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
	return nil
}
