// Package store defines what the issuance center keeps about its own
// operation: enrolled kiosks, municipalities and whether they offer kiosk
// issuance, the public halves of the signing keys, the append-only audit and
// settlement events, the revoked certificate IDs for the SMART Health Card
// revocation lists, and the register of kiosk requests that makes one
// request yield at most one certificate and one settlement.
//
// The interfaces are shaped by what the center needs, not by one database:
// boltstore implements them on a bbolt file today, and a PostgreSQL
// implementation must fit them unchanged. Both run the same conformance
// suite in storetest, so behaviour the center relies on (sentinel errors,
// ordering, status rules, time precision) is pinned down in one place.
//
// # What is not here
//
// Vaccination records live in center/internal/records, separated per
// municipality and encrypted. Nothing in this package has a field for
// personal data: no My Number, name, birth date, address or passport number,
// and the audit event has no free-text field where one could slip in. Private
// keys are never stored here either: a SigningKey whose key material holds a
// private part is refused with ErrInvalid.
//
// # Conventions every implementation follows
//
//   - Times are stored in UTC with microsecond precision (what PostgreSQL's
//     timestamptz holds); values are truncated on write with Time, so a
//     value read back equals the value written after truncation.
//   - Lists are ordered: kiosks by ID, municipalities by code, signing keys
//     by creation time then key ID, events by time then sequence number,
//     revocations by revocation time then certificate ID.
//   - Every method checks its context before touching storage and while
//     iterating; a cancelled context returns the context's error.
//   - The store never reads the clock: callers pass the times (the center
//     injects its clock), so tests control time.
//   - Errors wrap the sentinel errors below and carry the "store:" prefix;
//     test them with errors.Is.
package store

import (
	"errors"
	"time"
)

// Store is everything the center keeps about its own operation.
type Store interface {
	KioskStore
	MunicipalityStore
	SigningKeyStore
	AuditLog
	RevocationStore
	RequestRegister
	OperatorStore
	EnrollmentStore
	// Close releases the underlying database. Further calls fail.
	Close() error
}

// Errors every implementation returns (wrapped), grouped by cause.
var (
	// ErrNotFound means the kiosk, municipality, key or revocation asked
	// for does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists means an insert collided with an existing entry (same
	// kiosk ID or certificate fingerprint, same key ID, same certificate ID).
	ErrExists = errors.New("store: already exists")
	// ErrInvalid means a value failed validation before it was written;
	// the message names the field, never its value.
	ErrInvalid = errors.New("store: invalid value")
	// ErrTransition means a status change is not allowed from the current
	// status (a revoked kiosk cannot be reactivated, a withdrawn key cannot
	// be republished).
	ErrTransition = errors.New("store: status change not allowed")
	// ErrUsed means a one-time enrollment code was already spent (or
	// voided after too many wrong attempts).
	ErrUsed = errors.New("store: already used")
	// ErrExpired means a one-time enrollment code is past its expiry.
	ErrExpired = errors.New("store: expired")
	// ErrUnavailable means the database could not be reached (down,
	// restarting, failing over): nothing was written, and the same call
	// may succeed later. The center answers "unavailable" and the kiosk
	// retries. The embedded store never returns it.
	ErrUnavailable = errors.New("store: database unavailable")
)

// Precision is the time precision every implementation keeps.
const Precision = time.Microsecond

// Time normalises t to what every implementation stores: UTC, truncated to
// Precision. Implementations call it on write; callers may call it to
// compare values they wrote with values read back.
func Time(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(Precision)
}
