package store

import (
	"context"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// RevocationStore keeps revoked certificate IDs for the SMART Health Card
// revocation lists (<iss>/.well-known/crl/<kid>.json), one list per key.
type RevocationStore interface {
	// RevokeCertificate records a revocation; ErrExists if the certificate
	// ID is already revoked.
	RevokeCertificate(ctx context.Context, r Revocation) error
	// Revocation returns the revocation of a certificate ID, or
	// ErrNotFound when it is not revoked.
	Revocation(ctx context.Context, certificateID string) (Revocation, error)
	// Revocations lists revocations of certificates signed by kid ("" for
	// all), ordered by revocation time then certificate ID.
	Revocations(ctx context.Context, kid string) ([]Revocation, error)
}

// Revocation is one revoked certificate.
type Revocation struct {
	CertificateID string `json:"certificateId"`
	// KID is the key that signed the certificate's SMART Health Card; the
	// revocation goes into that key's list.
	KID       string    `json:"kid"`
	RevokedAt time.Time `json:"revokedAt"`
	// Reason is a short code (e.g. "misprint", "holder_request",
	// "key_compromise"); never free text about the holder.
	Reason string `json:"reason"`
}

// Validate checks the revocation's fields.
func (r *Revocation) Validate() error {
	switch {
	case !isIdent(r.CertificateID, certificate.MaxIDLen):
		return invalid("revocation.certificateId", "must be 1-12 characters of [A-Za-z0-9._:-]")
	case !isIdent(r.KID, 128):
		return invalid("revocation.kid", "must be 1-128 characters of [A-Za-z0-9._:-]")
	case r.RevokedAt.IsZero():
		return invalid("revocation.revokedAt", "is required")
	case !isEventWord(r.Reason, 64):
		return invalid("revocation.reason", "must be a code of 1-64 characters of [a-z0-9_.]")
	}
	return nil
}
