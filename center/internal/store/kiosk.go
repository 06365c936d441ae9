package store

import (
	"context"
	"time"
)

// KioskStore keeps the enrolled kiosks and their status.
type KioskStore interface {
	// EnrollKiosk adds a kiosk with status KioskActive. It fails with
	// ErrExists when the ID or the certificate fingerprint is already
	// enrolled, and with ErrInvalid when Validate fails. Status, reason,
	// status time and last-seen are set by the store from EnrolledAt.
	EnrollKiosk(ctx context.Context, k Kiosk) error
	// Kiosk returns the kiosk with the given ID, or ErrNotFound.
	Kiosk(ctx context.Context, id string) (Kiosk, error)
	// KioskByCertificate returns the kiosk whose client certificate has
	// the given SHA-256 fingerprint (lowercase hex), or ErrNotFound. The
	// center uses it to authenticate a mutually authenticated connection;
	// it returns the kiosk whatever its status, so the caller must check
	// Status is KioskActive before serving it.
	KioskByCertificate(ctx context.Context, sha256Hex string) (Kiosk, error)
	// ListKiosks returns all kiosks ordered by ID.
	ListKiosks(ctx context.Context) ([]Kiosk, error)
	// QueryKiosks returns one page of the kiosks matching q, ordered by
	// ID, and how many match in all (kioskquery.go). It answers without
	// reading every kiosk's record, so a console page stays fast with tens
	// of thousands of kiosks.
	QueryKiosks(ctx context.Context, q KioskQuery) (KioskPage, error)
	// SetKioskStatus changes a kiosk's status. Suspended and revoked need a
	// reason. A revoked kiosk stays revoked (ErrTransition): enroll the
	// replacement under a new ID with a new certificate.
	SetKioskStatus(ctx context.Context, id string, status KioskStatus, reason string, at time.Time) error
	// TouchKiosk records that the kiosk was seen at the given time. The
	// last-seen time only moves forward; an older time is ignored.
	TouchKiosk(ctx context.Context, id string, at time.Time) error
	// RenewKioskCertificate records a new client certificate for an active
	// kiosk (renewal before expiry): the kiosk's CertSerial and CertSHA256
	// become the new ones. The previous certificate stays known to
	// KioskByCertificate, so a kiosk that lost the answer can still
	// connect with it until it expires (the TLS handshake checks expiry).
	// ErrNotFound for an unknown kiosk, ErrTransition for one that is not
	// active, ErrExists when the fingerprint belongs to another kiosk,
	// ErrInvalid when the certificate fields are malformed.
	RenewKioskCertificate(ctx context.Context, id string, cert KioskCertificate, at time.Time) error
}

// KioskStatus says whether a kiosk may request certificates.
type KioskStatus string

// Kiosk statuses.
const (
	// KioskActive kiosks may connect and request certificates.
	KioskActive KioskStatus = "active"
	// KioskSuspended kiosks are refused until reactivated (maintenance,
	// investigation).
	KioskSuspended KioskStatus = "suspended"
	// KioskRevoked kiosks are refused for good; their client certificate
	// is no longer trusted.
	KioskRevoked KioskStatus = "revoked"
)

// Valid reports whether s is a known status.
func (s KioskStatus) Valid() bool {
	return s == KioskActive || s == KioskSuspended || s == KioskRevoked
}

// Kiosk is one enrolled kiosk terminal in a store.
type Kiosk struct {
	// ID is the kiosk's identifier, also the subject of its client
	// certificate: 1-64 characters of [A-Za-z0-9._:-].
	ID string `json:"id"`
	// StoreName is the store's display name (店舗名), at most 200 bytes.
	StoreName string `json:"storeName"`
	// StoreCode is the chain's code for the store, 1-32 of [A-Za-z0-9._:-].
	StoreCode string `json:"storeCode"`
	// Chain is the retail chain, 1-64 of [A-Za-z0-9._:-] (e.g. "seven").
	Chain string `json:"chain"`
	// Prefecture is the two-digit prefecture code, "01" to "47".
	Prefecture string `json:"prefecture"`
	// Region is the operator's grouping of stores, at most 64 bytes
	// (e.g. "hokkaido"); may be empty.
	Region string `json:"region,omitempty"`
	// CertSerial is the client certificate's serial number in lowercase
	// hex (as serial.Text(16) gives it), 1-40 digits.
	CertSerial string `json:"certSerial"`
	// CertSHA256 is the SHA-256 of the client certificate's DER encoding,
	// 64 lowercase hex digits.
	CertSHA256 string `json:"certSha256"`
	// EnrolledAt is when the kiosk was enrolled.
	EnrolledAt time.Time `json:"enrolledAt"`

	// Status, StatusReason and StatusAt are kept by the store.
	Status       KioskStatus `json:"status"`
	StatusReason string      `json:"statusReason,omitempty"`
	StatusAt     time.Time   `json:"statusAt"`
	// LastSeen is the latest time passed to TouchKiosk (zero if never).
	LastSeen time.Time `json:"lastSeen,omitempty"`
}

// Validate checks the fields a caller supplies to EnrollKiosk.
func (k *Kiosk) Validate() error {
	switch {
	case !isIdent(k.ID, 64):
		return invalid("kiosk.id", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case k.StoreName == "" || !isText(k.StoreName, 200):
		return invalid("kiosk.storeName", "must be 1-200 bytes of text without control characters")
	case !isIdent(k.StoreCode, 32):
		return invalid("kiosk.storeCode", "must be 1-32 characters of [A-Za-z0-9._:-]")
	case !isIdent(k.Chain, 64):
		return invalid("kiosk.chain", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case !validPrefecture(k.Prefecture):
		return invalid("kiosk.prefecture", "must be a two-digit prefecture code 01-47")
	case !isText(k.Region, 64):
		return invalid("kiosk.region", "must be at most 64 bytes of text")
	case len(k.CertSerial) > 40 || !isLowerHexVar(k.CertSerial):
		return invalid("kiosk.certSerial", "must be 1-40 lowercase hex digits")
	case !isLowerHex(k.CertSHA256, 64):
		return invalid("kiosk.certSha256", "must be 64 lowercase hex digits (SHA-256 of the DER certificate)")
	case k.EnrolledAt.IsZero():
		return invalid("kiosk.enrolledAt", "is required")
	}
	return nil
}

// CheckKioskStatusChange reports whether a kiosk may move from one status to
// another with the given reason. Implementations call it so every store
// enforces the same rules.
func CheckKioskStatusChange(from, to KioskStatus, reason string) error {
	switch {
	case !to.Valid():
		return invalid("kiosk.status", "must be active, suspended or revoked")
	case !isText(reason, 200):
		return invalid("kiosk.statusReason", "must be at most 200 bytes of text")
	case to != KioskActive && reason == "":
		return invalid("kiosk.statusReason", "is required to suspend or revoke a kiosk")
	case from == KioskRevoked:
		return ErrTransition
	}
	return nil
}

func validPrefecture(p string) bool {
	if !isDigits(p, 2) {
		return false
	}
	n := int(p[0]-'0')*10 + int(p[1]-'0')
	return n >= 1 && n <= 47
}

func isLowerHexVar(s string) bool {
	return s != "" && isLowerHex(s, len(s))
}
