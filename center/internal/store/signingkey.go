package store

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"time"
)

// SigningKeyStore keeps metadata and public keys of the center's signing
// keys, so the JWKS and the VDS-NC signer certificates can be published and
// retired keys kept while their certificates matter. The private keys are
// crypto.Signers held elsewhere (file or HSM); they never come here.
type SigningKeyStore interface {
	// PutSigningKey records a new key; ErrExists if the key ID is taken,
	// ErrInvalid if Validate fails (including any private key material).
	PutSigningKey(ctx context.Context, k SigningKey) error
	// SigningKey returns the key with the given key ID, or ErrNotFound.
	SigningKey(ctx context.Context, kid string) (SigningKey, error)
	// ListSigningKeys returns the keys for a purpose ("" for all), ordered
	// by creation time then key ID.
	ListSigningKeys(ctx context.Context, purpose KeyPurpose) ([]SigningKey, error)
	// SetSigningKeyStatus moves a key forward: active → retired →
	// withdrawn, or active → withdrawn. Any other change is ErrTransition.
	SetSigningKeyStatus(ctx context.Context, kid string, status KeyStatus, at time.Time) error
}

// KeyPurpose says which credential a key signs.
type KeyPurpose string

// Key purposes.
const (
	PurposeSHC   KeyPurpose = "shc"   // SMART Health Card JWS (ES256)
	PurposeVDSNC KeyPurpose = "vdsnc" // ICAO VDS-NC barcode signer (ES256)
	PurposeAudit KeyPurpose = "audit" // audit-log checkpoints (ECDSA P-256), apart from the certificate keys
	// PurposeKioskCA is the center's online kiosk issuing CA: it signs
	// kiosk client certificates at enrollment and renewal, and is itself
	// certified by the offline kiosk CA. PublicKey holds its certificate.
	PurposeKioskCA KeyPurpose = "kioskca"
)

// Valid reports whether p is a known purpose.
func (p KeyPurpose) Valid() bool {
	return p == PurposeSHC || p == PurposeVDSNC || p == PurposeAudit || p == PurposeKioskCA
}

// KeyStatus is where a key is in its life.
type KeyStatus string

// Key statuses, in the only order a key may pass through them.
const (
	// KeyActive keys sign new certificates and are published.
	KeyActive KeyStatus = "active"
	// KeyRetired keys sign nothing new but stay published, so
	// certificates they signed still verify.
	KeyRetired KeyStatus = "retired"
	// KeyWithdrawn keys are no longer published (compromise, or their
	// certificates no longer matter).
	KeyWithdrawn KeyStatus = "withdrawn"
)

func (s KeyStatus) rank() int {
	switch s {
	case KeyActive:
		return 1
	case KeyRetired:
		return 2
	case KeyWithdrawn:
		return 3
	}
	return 0
}

// Valid reports whether s is a known status.
func (s KeyStatus) Valid() bool { return s.rank() > 0 }

// Published reports whether keys with this status belong in the published
// key set (JWKS, signer certificate list).
func (s KeyStatus) Published() bool { return s == KeyActive || s == KeyRetired }

// KeyFormat is the encoding of SigningKey.PublicKey.
type KeyFormat string

// Key formats.
const (
	// FormatJWK is a single JSON Web Key (RFC 7517) without private members.
	FormatJWK KeyFormat = "jwk"
	// FormatPEM is one or more PEM blocks of type PUBLIC KEY or CERTIFICATE
	// (e.g. the VDS-NC barcode signer certificate and its chain).
	FormatPEM KeyFormat = "pem"
)

// Label returns where the key source keeps the private half.
func (k *SigningKey) Label() string {
	if k.KeyLabel != "" {
		return k.KeyLabel
	}
	return k.KID
}

// SigningKey is the public half and the metadata of one signing key.
type SigningKey struct {
	// KID is the key ID: for SHC the RFC 7638 thumbprint; 1-128 characters
	// of [A-Za-z0-9._:-].
	KID       string     `json:"kid"`
	Purpose   KeyPurpose `json:"purpose"`
	Format    KeyFormat  `json:"format"`
	PublicKey []byte     `json:"publicKey"`
	// KeyLabel names the private half in the center's key source (a file
	// name, a PKCS#11 object label); empty means the KID. It is a name,
	// never key material: 1-128 characters of [A-Za-z0-9._:-].
	KeyLabel string    `json:"keyLabel,omitempty"`
	Created  time.Time `json:"created"`
	// NotAfter is when the key stops signing (rotate at least yearly).
	NotAfter time.Time `json:"notAfter"`
	// Status and StatusAt: PutSigningKey requires KeyActive (StatusAt
	// defaults to Created); later changes go through SetSigningKeyStatus.
	Status   KeyStatus `json:"status"`
	StatusAt time.Time `json:"statusAt"`
}

// Validate checks the metadata and that PublicKey parses as the stated
// format and holds no private key material.
func (k *SigningKey) Validate() error {
	switch {
	case !isIdent(k.KID, 128):
		return invalid("signingKey.kid", "must be 1-128 characters of [A-Za-z0-9._:-]")
	case !k.Purpose.Valid():
		return invalid("signingKey.purpose", "must be shc, vdsnc, audit or kioskca")
	case k.KeyLabel != "" && !isIdent(k.KeyLabel, 128):
		return invalid("signingKey.keyLabel", "must be 1-128 characters of [A-Za-z0-9._:-]")
	case k.Created.IsZero():
		return invalid("signingKey.created", "is required")
	case !k.NotAfter.After(k.Created):
		return invalid("signingKey.notAfter", "must be after created")
	case !k.Status.Valid():
		return invalid("signingKey.status", "must be active, retired or withdrawn")
	case len(k.PublicKey) > 16<<10:
		return invalid("signingKey.publicKey", "must be at most 16 KiB")
	}
	switch k.Format {
	case FormatJWK:
		return checkPublicJWK(k.PublicKey)
	case FormatPEM:
		return checkPublicPEM(k.PublicKey)
	}
	return invalid("signingKey.format", "must be jwk or pem")
}

// CheckKeyStatusChange reports whether a key may move between statuses.
func CheckKeyStatusChange(from, to KeyStatus) error {
	if !to.Valid() {
		return invalid("signingKey.status", "must be active, retired or withdrawn")
	}
	if to.rank() <= from.rank() {
		return ErrTransition
	}
	return nil
}

// privateJWKMembers are the JWK members (RFC 7518 §6) that carry private or
// secret key material.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

func checkPublicJWK(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return invalid("signingKey.publicKey", "is not a JSON object (JWK)")
	}
	for _, name := range privateJWKMembers {
		if _, ok := m[name]; ok {
			return invalid("signingKey.publicKey", "holds private key material (JWK member \""+name+"\"); store only the public key")
		}
	}
	var kty string
	if err := json.Unmarshal(m["kty"], &kty); err != nil || kty == "" {
		return invalid("signingKey.publicKey", "has no \"kty\" (not a JWK)")
	}
	return nil
}

func checkPublicPEM(b []byte) error {
	rest := b
	n := 0
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		n++
		switch blk.Type {
		case "PUBLIC KEY":
			if _, err := x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
				return invalid("signingKey.publicKey", "has a PUBLIC KEY block that does not parse")
			}
		case "CERTIFICATE":
			if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
				return invalid("signingKey.publicKey", "has a CERTIFICATE block that does not parse")
			}
		default:
			// Refuse anything else, above all "PRIVATE KEY", "EC PRIVATE
			// KEY" and "RSA PRIVATE KEY": private keys never come here.
			return invalid("signingKey.publicKey", "has a PEM block that is not PUBLIC KEY or CERTIFICATE; store only public keys")
		}
	}
	if n == 0 {
		return invalid("signingKey.publicKey", "has no PEM block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return invalid("signingKey.publicKey", "has data after the last PEM block")
	}
	return nil
}
