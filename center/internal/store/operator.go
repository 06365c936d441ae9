package store

import (
	"context"
	"fmt"
	"time"

	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// OperatorStore keeps the operations team's individual accounts and their
// API tokens (brief §2: access by individual user ID). What the secrets
// are is not the store's business: it keeps a password hash string and a
// sealed second-factor secret as opaque values, and only the SHA-256 of
// an API token, never the token.
type OperatorStore interface {
	// CreateOperator adds an account. ErrExists when the ID is taken,
	// ErrInvalid when Validate fails.
	CreateOperator(ctx context.Context, o Operator) error
	// Operator returns the account with the given ID, or ErrNotFound.
	Operator(ctx context.Context, id string) (Operator, error)
	// ListOperators returns every account ordered by ID.
	ListOperators(ctx context.Context) ([]Operator, error)
	// UpdateOperator changes an account atomically: it reads the account,
	// calls change on it and writes the result in one transaction, so
	// concurrent changes (two failed logins at once) are never lost.
	// change may run more than once and must only modify its argument; an
	// error from it is returned (wrapped) and nothing is written. The ID
	// and Created cannot change (ErrInvalid), and the result must pass
	// Validate. It returns the account as written; ErrNotFound when the
	// ID is unknown.
	UpdateOperator(ctx context.Context, id string, change func(*Operator) error) (Operator, error)

	// PutAPIToken records a new token. ErrExists when its ID or hash is
	// taken, ErrNotFound when its operator does not exist, ErrInvalid when
	// Validate fails.
	PutAPIToken(ctx context.Context, t APIToken) error
	// APITokenByHash returns the token whose SHA-256 (lowercase hex) is
	// given, revoked or not (the caller checks), or ErrNotFound.
	APITokenByHash(ctx context.Context, sha256Hex string) (APIToken, error)
	// ListAPITokens returns an operator's tokens ("" for every operator's),
	// ordered by creation time then ID.
	ListAPITokens(ctx context.Context, operator string) ([]APIToken, error)
	// RevokeAPIToken marks a token revoked at the given time. ErrNotFound
	// for an unknown ID, ErrTransition when it is already revoked.
	RevokeAPIToken(ctx context.Context, id string, at time.Time) error
}

// OperatorRole says what an operator may do (center/internal/opauth has
// the table of permissions).
type OperatorRole string

// Operator roles.
const (
	// RoleViewer sees every page and changes nothing.
	RoleViewer OperatorRole = "viewer"
	// RoleOperator also enrolls, suspends and resumes kiosks, switches
	// municipalities' participation, imports records and revokes
	// certificates.
	RoleOperator OperatorRole = "operator"
	// RoleAdministrator may do everything, including revoking kiosks,
	// rotating keys, deleting records and managing operators.
	RoleAdministrator OperatorRole = "administrator"
	// RoleMunicipality is a municipality's own staff: it sees its own
	// municipality's page, audit events and settlement, nothing else.
	RoleMunicipality OperatorRole = "municipality"
)

// Valid reports whether r is a known role.
func (r OperatorRole) Valid() bool {
	switch r {
	case RoleViewer, RoleOperator, RoleAdministrator, RoleMunicipality:
		return true
	}
	return false
}

// Operator is one person's account.
type Operator struct {
	// ID is the operator ID recorded in audit events: 1-64 characters of
	// [A-Za-z0-9._:-].
	ID   string       `json:"id"`
	Role OperatorRole `json:"role"`
	// Municipality is the 6-digit code a RoleMunicipality account is
	// limited to; empty for every other role.
	Municipality string `json:"municipality,omitempty"`
	// PasswordHash is the encoded password hash (PHC string format, e.g.
	// "$argon2id$v=19$..."), 1-256 bytes of printable ASCII; empty for an
	// account that cannot log in to the console (API tokens only).
	PasswordHash string `json:"passwordHash,omitempty"`
	// TOTPSecret is the sealed second-factor secret (opaque, at most 256
	// bytes); required with a password.
	TOTPSecret []byte `json:"totpSecret,omitempty"`
	// Disabled accounts can neither log in nor use their tokens.
	Disabled bool      `json:"disabled,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	// FailedLogins counts consecutive failed logins; LockedUntil refuses
	// logins until then (throttling).
	FailedLogins int       `json:"failedLogins,omitempty"`
	LockedUntil  time.Time `json:"lockedUntil,omitzero"`
	LastLogin    time.Time `json:"lastLogin,omitzero"`
	// LastTOTPStep is the time step of the last accepted one-time code,
	// so a code is accepted at most once.
	LastTOTPStep int64 `json:"lastTotpStep,omitempty"`
	// SessionsNotBefore ends every console session started before it
	// (logout everywhere, a role change, a disabled account).
	SessionsNotBefore time.Time `json:"sessionsNotBefore,omitzero"`
}

// Validate checks every field.
func (o *Operator) Validate() error {
	switch {
	case !isIdent(o.ID, 64):
		return invalid("operator.id", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case !o.Role.Valid():
		return invalid("operator.role", "must be viewer, operator, administrator or municipality")
	case o.Role == RoleMunicipality && o.Municipality == "":
		return invalid("operator.municipality", "is required for the municipality role")
	case o.Role != RoleMunicipality && o.Municipality != "":
		return invalid("operator.municipality", "is only for the municipality role")
	case len(o.PasswordHash) > 256 || !isPrintableASCII(o.PasswordHash):
		return invalid("operator.passwordHash", "must be at most 256 bytes of printable ASCII")
	case len(o.TOTPSecret) > 256:
		return invalid("operator.totpSecret", "must be at most 256 bytes")
	case o.PasswordHash != "" && len(o.TOTPSecret) == 0:
		return invalid("operator.totpSecret", "is required with a password (second factor)")
	case o.Created.IsZero():
		return invalid("operator.created", "is required")
	case o.FailedLogins < 0:
		return invalid("operator.failedLogins", "must not be negative")
	case o.LastTOTPStep < 0:
		return invalid("operator.lastTotpStep", "must not be negative")
	}
	if o.Municipality != "" {
		if err := lgcode.Validate(o.Municipality); err != nil {
			return fmt.Errorf("%w: operator.municipality: %w", ErrInvalid, err)
		}
	}
	return nil
}

// CanLogIn reports whether the account has console credentials.
func (o *Operator) CanLogIn() bool { return o.PasswordHash != "" && !o.Disabled }

// NormaliseOperator applies the store's time precision to every time field.
// Implementations call it on write.
func NormaliseOperator(o *Operator) {
	o.Created, o.Updated = Time(o.Created), Time(o.Updated)
	o.LockedUntil, o.LastLogin = Time(o.LockedUntil), Time(o.LastLogin)
	o.SessionsNotBefore = Time(o.SessionsNotBefore)
}

// APIToken is a bearer token of the operations API, bound to one operator:
// the API acts as that operator, with that operator's role.
type APIToken struct {
	// ID names the token in lists and audit events (1-64 of
	// [A-Za-z0-9._:-]); it is not the secret.
	ID       string `json:"id"`
	Operator string `json:"operator"`
	// SHA256 is the SHA-256 of the token, 64 lowercase hex digits. The
	// token itself is shown once, when issued, and never stored.
	SHA256 string `json:"sha256"`
	// Label says what the token is for (1-64 of [A-Za-z0-9._:-]).
	Label   string    `json:"label"`
	Created time.Time `json:"created"`
	// Expires, when set, ends the token.
	Expires time.Time `json:"expires,omitzero"`
	// Revoked is when the token was revoked (zero: not revoked).
	Revoked time.Time `json:"revoked,omitzero"`
}

// Validate checks the fields a caller supplies to PutAPIToken.
func (t *APIToken) Validate() error {
	switch {
	case !isIdent(t.ID, 64):
		return invalid("apiToken.id", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case !isIdent(t.Operator, 64):
		return invalid("apiToken.operator", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case !isLowerHex(t.SHA256, 64):
		return invalid("apiToken.sha256", "must be 64 lowercase hex digits")
	case !isIdent(t.Label, 64):
		return invalid("apiToken.label", "must be 1-64 characters of [A-Za-z0-9._:-]")
	case t.Created.IsZero():
		return invalid("apiToken.created", "is required")
	case !t.Expires.IsZero() && !t.Expires.After(t.Created):
		return invalid("apiToken.expires", "must be after created")
	case !t.Revoked.IsZero():
		return invalid("apiToken.revoked", "must be zero for a new token (use RevokeAPIToken)")
	}
	return nil
}

// Usable reports whether the token may be used at time now.
func (t *APIToken) Usable(now time.Time) bool {
	return t.Revoked.IsZero() && (t.Expires.IsZero() || now.Before(t.Expires))
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
