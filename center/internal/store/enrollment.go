package store

import (
	"context"
	"time"
)

// EnrollmentStore keeps the one-time codes with which a kiosk enrolls
// itself: the kiosk makes its own key, sends a certificate signing request
// with the code the operator gave the store, and the center enrolls it.
// Only the code's SHA-256 is kept, so a copy of the database does not give
// away a usable code.
type EnrollmentStore interface {
	// PutEnrollmentCode records a code for a kiosk that is not enrolled
	// yet. It replaces an earlier code for the same kiosk ID (an operator
	// issuing a new code voids the old one). ErrExists when the kiosk ID is
	// already enrolled; ErrInvalid when Validate fails.
	PutEnrollmentCode(ctx context.Context, c EnrollmentCode) error
	// RedeemEnrollmentCode spends the code of kioskID whose SHA-256 is
	// codeHash and enrolls the kiosk, in one transaction, with the details
	// recorded with the code, the given certificate and EnrolledAt = at.
	// It returns the enrolled kiosk. Errors:
	//   - ErrNotFound: no code for kioskID, or a wrong code. A wrong code
	//     counts as a failed attempt, and after MaxEnrollmentAttempts the
	//     code is void (ErrUsed from then on).
	//   - ErrUsed: the code was spent or voided.
	//   - ErrExpired: at is not before the code's Expires.
	//   - ErrExists: the certificate fingerprint is already enrolled.
	RedeemEnrollmentCode(ctx context.Context, kioskID, codeHash string, cert KioskCertificate, at time.Time) (Kiosk, error)
}

// MaxEnrollmentAttempts is how many wrong codes a kiosk ID may be tried
// with before its code is void.
const MaxEnrollmentAttempts = 5

// EnrollmentCode is a one-time enrollment code as the store keeps it.
type EnrollmentCode struct {
	// Kiosk holds the kiosk's details (ID, store, chain, prefecture,
	// region); its certificate fields and times are ignored.
	Kiosk Kiosk `json:"kiosk"`
	// CodeHash is the SHA-256 of the code, 64 lowercase hex digits.
	CodeHash string    `json:"codeHash"`
	Created  time.Time `json:"created"`
	// Expires is when the code stops working (short-lived: hours or days).
	Expires time.Time `json:"expires"`
	// UsedAt is when the code was spent (zero while unused); set by the
	// store.
	UsedAt time.Time `json:"usedAt,omitzero"`
	// Attempts counts wrong codes tried for this kiosk ID; set by the store.
	Attempts int `json:"attempts,omitempty"`
}

// Validate checks the fields a caller supplies to PutEnrollmentCode.
func (c *EnrollmentCode) Validate() error {
	k := c.Kiosk
	// The certificate is not known yet: check everything else.
	k.CertSerial, k.CertSHA256, k.EnrolledAt = "1", zeroFingerprint, c.Created
	if err := k.Validate(); err != nil {
		return err
	}
	switch {
	case !isLowerHex(c.CodeHash, 64):
		return invalid("enrollmentCode.codeHash", "must be 64 lowercase hex digits (SHA-256 of the code)")
	case c.Created.IsZero():
		return invalid("enrollmentCode.created", "is required")
	case !c.Expires.After(c.Created):
		return invalid("enrollmentCode.expires", "must be after created")
	}
	return nil
}

const zeroFingerprint = "0000000000000000000000000000000000000000000000000000000000000000"

// KioskCertificate names a kiosk's client certificate in the registry.
type KioskCertificate struct {
	// Serial is the serial number in lowercase hex, 1-40 digits.
	Serial string `json:"serial"`
	// SHA256 is the SHA-256 of the DER certificate, 64 lowercase hex digits.
	SHA256 string `json:"sha256"`
}

// Validate checks the fields.
func (c KioskCertificate) Validate() error {
	k := Kiosk{CertSerial: c.Serial, CertSHA256: c.SHA256}
	switch {
	case len(k.CertSerial) > 40 || !isLowerHexVar(k.CertSerial):
		return invalid("kiosk.certSerial", "must be 1-40 lowercase hex digits")
	case !isLowerHex(k.CertSHA256, 64):
		return invalid("kiosk.certSha256", "must be 64 lowercase hex digits (SHA-256 of the DER certificate)")
	}
	return nil
}
