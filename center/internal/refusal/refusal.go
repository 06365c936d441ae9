// Package refusal is the one error type the center's request path hands to
// its edges: a public protocol code, the part a kiosk and its resident may
// know, wrapping the internal cause, the part that stays in the center's
// logs. It plays the role of tailscale's vizerror: whatever wraps a
// refusal, only its code (and a detail its constructor declared public)
// crosses to a kiosk; the cause's text never does.
//
//	return refusal.New(protocol.CodeNoRecord, err)          // err stays internal
//	...
//	c.send(refusal.Public(requestID, err))                  // at the websocket edge only
//
// An error without a refusal in its chain is an internal error: Public maps
// it to protocol.CodeInternal with no detail.
package refusal

import (
	"errors"
	"fmt"

	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Error is a refusal: a public code and an internal cause.
type Error struct {
	code   protocol.Code
	detail string // public: a constant naming what failed, never a value
	cause  error
	// auditType, when set, is the audit event type the refusal is recorded
	// under instead of "refused": a code the municipality reads and the
	// kiosk never sees (why a resident was sent to the counter).
	auditType string
}

// Internal returns a refusal whose public code is code but whose audit
// event records auditType (a code of [a-z0-9_.], no personal data): the
// municipality can tell the reasons apart; the kiosk, and whoever stands
// beside the resident, cannot.
func Internal(code protocol.Code, auditType string, cause error) error {
	return &Error{code: code, cause: cause, auditType: auditType}
}

// AuditType returns the audit event type of the first refusal in err's
// chain that names one, or "".
func AuditType(err error) string {
	var r *Error
	if errors.As(err, &r) {
		return r.auditType
	}
	return ""
}

// New returns a refusal with code, wrapping cause (which may be nil).
func New(code protocol.Code, cause error) error {
	return &Error{code: code, cause: cause}
}

// WithDetail returns a refusal whose detail is shown to the kiosk's
// operators (in the error frame's detail). detail must be a constant text
// naming the check or field that failed, never a value a kiosk sent or
// anything read from a record.
func WithDetail(code protocol.Code, detail string, cause error) error {
	return &Error{code: code, detail: detail, cause: cause}
}

// Error describes the refusal for the center's logs, cause included.
func (e *Error) Error() string {
	msg := "refused: " + string(e.code)
	if e.detail != "" {
		msg += " (" + e.detail + ")"
	}
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.cause }

// Code returns the public code.
func (e *Error) Code() protocol.Code { return e.code }

// Detail returns the public detail ("" when none was declared).
func (e *Error) Detail() string { return e.detail }

// CodeOf returns the code of the first refusal in err's chain, or
// protocol.CodeInternal and false when there is none.
func CodeOf(err error) (protocol.Code, bool) {
	var r *Error
	if errors.As(err, &r) {
		return r.code, true
	}
	return protocol.CodeInternal, false
}

// Public returns the protocol error a kiosk receives for err: the
// refusal's code with its standard bilingual messages and public detail,
// or internal_error for anything else. It never includes a cause's text.
func Public(requestID string, err error) *protocol.Error {
	var r *Error
	if errors.As(err, &r) {
		return protocol.NewError(requestID, r.code, r.detail)
	}
	return protocol.NewError(requestID, protocol.CodeInternal, "")
}

// Retryable reports whether retrying the same request may succeed: the
// code's rule for a refusal, true for internal errors.
func Retryable(err error) bool {
	code, _ := CodeOf(err)
	return code.Retryable()
}

// Errorf is New with a formatted internal cause.
func Errorf(code protocol.Code, format string, args ...any) error {
	return New(code, fmt.Errorf(format, args...))
}
