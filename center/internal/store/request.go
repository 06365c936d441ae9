package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// RequestRegister holds every kiosk request from its claim to its
// settlement, so that "one request, one certificate, one settlement" is
// enforced by the store itself: across restarts, and across center
// instances sharing one store. Each method that changes a request appends
// the request's audit events in the same transaction, so the register and
// the audit log never disagree, and an event is durable exactly when the
// state change it records is.
//
// A request moves claimed → issued → settled, or claimed → refused.
// Releasing a claim (a retryable failure) deletes it, so a retry of the same
// request ID runs again.
type RequestRegister interface {
	// ClaimRequest registers a new request (State RequestClaimed, Attempt 1)
	// and appends its events (the "requested" event) in one transaction.
	//
	// When the ID is already registered nothing is written and the
	// registered request is returned with an error wrapping ErrExists: the
	// caller compares kiosk and fingerprint and replays, waits or refuses.
	// The one exception is a claim still in RequestClaimed whose ClaimedAt
	// is before staleBefore: its issuance died with its process, so the
	// claim is taken over (Attempt incremented, ClaimedAt and events
	// written) and returned without error. A zero staleBefore never takes
	// over.
	ClaimRequest(ctx context.Context, r Request, staleBefore time.Time, events ...Event) (Request, error)
	// FinishRequest ends the issuance of a claimed request: State
	// RequestIssued (with the certificate IDs and the sealed replay) or
	// RequestRefused (with the refusal code), or RequestReleased, which
	// deletes the claim. Its events are appended in the same transaction.
	// It fails with ErrNotFound for an unknown ID and with ErrTransition
	// when the request is no longer claimed by this attempt (it was taken
	// over): the caller must then not hand out what it built.
	FinishRequest(ctx context.Context, id string, attempt int, f RequestFinish, events ...Event) (Request, error)
	// SettleRequest records the kiosk's outcome for an issued request
	// exactly once: it marks the request settled with the outcome, drops
	// its replay and appends ev, in one transaction. ErrNotFound when the
	// request is unknown or belongs to another kiosk, ErrTransition when it
	// is not issued, ErrSettled (with the request, unchanged) when an
	// outcome was already recorded.
	SettleRequest(ctx context.Context, id, kioskID, outcome string, at time.Time, ev Event) (Request, error)
	// Request returns the registered request, or ErrNotFound.
	Request(ctx context.Context, id string) (Request, error)
	// ExpireRequests drops the replay of requests finished before
	// replayBefore and deletes requests claimed before forgetBefore. It
	// returns how many requests it deleted.
	ExpireRequests(ctx context.Context, replayBefore, forgetBefore time.Time) (int, error)
}

// ErrSettled means an outcome was already recorded for the request.
var ErrSettled = errors.New("store: request already settled")

// RequestState says where a request is in its life.
type RequestState string

// Request states.
const (
	// RequestClaimed: an issuance is running (or died; see ClaimRequest).
	RequestClaimed RequestState = "claimed"
	// RequestIssued: a certificate was issued and handed out; the replay
	// answers a retry until the outcome is settled or the replay expires.
	RequestIssued RequestState = "issued"
	// RequestRefused: a check refused the request; a retry gets the same
	// refusal.
	RequestRefused RequestState = "refused"
	// RequestSettled: the kiosk reported the outcome.
	RequestSettled RequestState = "settled"
	// RequestReleased is not stored: FinishRequest with it deletes the
	// claim after a retryable failure.
	RequestReleased RequestState = "released"
)

// Request is one kiosk request in the register. Like Event it has no field
// for personal data: the fingerprint is a digest of what was asked (with
// the card data's digest), and the replay is sealed by the caller under a
// key the center does not keep (docs/PROTOCOL.md).
type Request struct {
	ID      string `json:"id"`
	KioskID string `json:"kioskId"`
	// Fingerprint is 64 lowercase hex digits identifying what the request
	// asked for; a retry must carry the same.
	Fingerprint  string           `json:"fingerprint"`
	Municipality string           `json:"municipality"`
	Kind         certificate.Kind `json:"kind"`
	Copies       int              `json:"copies"`

	// Set by the store and FinishRequest/SettleRequest.
	State   RequestState `json:"state"`
	Attempt int          `json:"attempt"`
	// Code is the refusal's protocol code for RequestRefused.
	Code string `json:"code,omitempty"`
	// CertificateIDs are the issued certificates' IDs.
	CertificateIDs []string `json:"certificateIds,omitempty"`
	// Outcome is the settled outcome (printed, failed, refused, cancelled).
	Outcome    string    `json:"outcome,omitempty"`
	ClaimedAt  time.Time `json:"claimedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	SettledAt  time.Time `json:"settledAt,omitzero"`
	// Replay is the sealed answer for retries; opaque to the store, at most
	// MaxReplay bytes. Dropped on settlement and by ExpireRequests.
	Replay []byte `json:"-"`
}

// RequestFinish is how an issuance ended.
type RequestFinish struct {
	State          RequestState // RequestIssued, RequestRefused or RequestReleased
	Code           string       // refusal code, for RequestRefused
	CertificateIDs []string     // for RequestIssued
	Replay         []byte       // for RequestIssued
	At             time.Time
}

// MaxReplay bounds Request.Replay (two signed certificates are about 20 KiB).
const MaxReplay = 256 << 10

// Validate checks the fields a caller supplies to ClaimRequest.
func (r *Request) Validate() error {
	switch {
	case !isIdent(r.ID, 64):
		return invalid("request.id", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case !isIdent(r.KioskID, 64):
		return invalid("request.kioskId", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case !isLowerHex(r.Fingerprint, 64):
		return invalid("request.fingerprint", "must be 64 lowercase hex digits")
	case r.Kind != "" && !r.Kind.Valid():
		return invalid("request.kind", "must be domestic or overseas")
	case r.Copies < 0 || r.Copies > MaxCopies:
		return invalid("request.copies", fmt.Sprintf("must be 0-%d", MaxCopies))
	case r.ClaimedAt.IsZero():
		return invalid("request.claimedAt", "is required")
	}
	if r.Municipality != "" {
		// A kiosk may name a code that does not exist; the request is then
		// refused, but the claim still records what was asked.
		if err := lgcode.Validate(r.Municipality); err != nil {
			return fmt.Errorf("%w: request.municipality: %w", ErrInvalid, err)
		}
	}
	return nil
}

// Validate checks a finish.
func (f *RequestFinish) Validate() error {
	switch f.State {
	case RequestIssued:
		if len(f.CertificateIDs) == 0 {
			return invalid("finish.certificateIds", "are required for an issued request")
		}
		for _, id := range f.CertificateIDs {
			if !isIdent(id, certificate.MaxIDLen) {
				return invalid("finish.certificateIds", "must be 1-12 characters of [A-Za-z0-9._:-]")
			}
		}
		if len(f.Replay) > MaxReplay {
			return invalid("finish.replay", fmt.Sprintf("must be at most %d bytes", MaxReplay))
		}
	case RequestRefused:
		if !isEventWord(f.Code, 64) {
			return invalid("finish.code", "must be 1-64 characters of [a-z0-9_.]")
		}
	case RequestReleased:
	default:
		return invalid("finish.state", "must be issued, refused or released")
	}
	if f.At.IsZero() {
		return invalid("finish.at", "is required")
	}
	return nil
}

// ValidateOutcome checks a settlement's outcome word.
func ValidateOutcome(outcome string) error {
	if !isEventWord(outcome, 32) {
		return invalid("request.outcome", "must be 1-32 characters of [a-z0-9_.]")
	}
	return nil
}
