package admin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Accounts is the management of operator accounts and their API tokens, as
// the console's operators page and the `issuance-center operator` commands
// call it (through the operations API, or on a stopped center's files).
// The caller checks that the actor may manage operators; the service
// records every change with the actor.
type Accounts interface {
	AddOperator(ctx context.Context, a Actor, n NewOperator) (OperatorCreated, error)
	ListOperators(ctx context.Context) ([]OperatorInfo, error)
	ChangeOperator(ctx context.Context, a Actor, id string, c OperatorChange) (OperatorInfo, error)
	ResetCredentials(ctx context.Context, a Actor, id, password string) (OperatorCreated, error)
	IssueAPIToken(ctx context.Context, a Actor, operator, label string, ttl time.Duration) (IssuedToken, error)
	ListAPITokens(ctx context.Context, operator string) ([]store.APIToken, error)
	RevokeAPIToken(ctx context.Context, a Actor, id string) error
}

var _ Accounts = (*Service)(nil)

// NewOperator describes an account to create.
type NewOperator struct {
	ID           string             `json:"id"`
	Role         store.OperatorRole `json:"role"`
	Municipality string             `json:"municipality,omitempty"`
	// Password is the initial password; empty makes one (returned once).
	Password string `json:"password,omitempty"`
	// TokenOnly makes an account without console login (scripts).
	TokenOnly bool `json:"tokenOnly,omitempty"`
}

// OperatorInfo is an account without its secrets.
type OperatorInfo struct {
	ID           string             `json:"id"`
	Role         store.OperatorRole `json:"role"`
	Municipality string             `json:"municipality,omitempty"`
	ConsoleLogin bool               `json:"consoleLogin"`
	Disabled     bool               `json:"disabled,omitempty"`
	Created      time.Time          `json:"created"`
	LastLogin    time.Time          `json:"lastLogin,omitzero"`
	LockedUntil  time.Time          `json:"lockedUntil,omitzero"`
}

// Info returns the account without its secrets.
func Info(o store.Operator) OperatorInfo {
	return OperatorInfo{ID: o.ID, Role: o.Role, Municipality: o.Municipality, ConsoleLogin: o.PasswordHash != "",
		Disabled: o.Disabled, Created: o.Created, LastLogin: o.LastLogin, LockedUntil: o.LockedUntil}
}

// OperatorCreated is a new account and what its owner needs to log in:
// shown once, never stored in the clear.
type OperatorCreated struct {
	Operator OperatorInfo `json:"operator"`
	// Password is set when the service made it.
	Password string `json:"password,omitempty"`
	// TOTPSecret and TOTPURI enrol the second factor in an authenticator
	// app (the URI as a QR code, or the secret typed in).
	TOTPSecret string `json:"totpSecret,omitempty"`
	TOTPURI    string `json:"totpUri,omitempty"`
}

// OperatorChange changes an account; nil fields stay as they are.
type OperatorChange struct {
	Role         *store.OperatorRole `json:"role,omitempty"`
	Municipality *string             `json:"municipality,omitempty"`
	Disabled     *bool               `json:"disabled,omitempty"`
	// Unlock clears a lockout after failed logins.
	Unlock bool `json:"unlock,omitempty"`
}

// IssuedToken is a new API token: the secret is shown once.
type IssuedToken struct {
	Token  string         `json:"token"`
	Record store.APIToken `json:"record"`
}

// ErrNoOperatorKey means the service was built without the operator key
// that seals second factors.
var ErrNoOperatorKey = errors.New("admin: no operator key (keys/operators.key) to seal second factors with")

// ErrOwnAccount refuses changing one's own role or disabling oneself, so
// an administrator cannot lock the team out by mistake.
var ErrOwnAccount = errors.New("admin: you cannot change your own role or disable your own account; ask another administrator")

// SetPasswordParams sets the Argon2id parameters new passwords are hashed
// with (tests use cheap ones; each hash records its own).
func (s *Service) SetPasswordParams(p opauth.Params) { s.cfg.PasswordParams = p }

func (s *Service) params() opauth.Params {
	if s.cfg.PasswordParams == (opauth.Params{}) {
		return opauth.DefaultParams
	}
	return s.cfg.PasswordParams
}

// MakePassword returns a random password of 20 characters from an
// alphabet without look-alikes.
func MakePassword() (string, error) {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", err
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b), nil
}

// credentials sets a password (made when empty) and a new second factor on o.
func (s *Service) credentials(o *store.Operator, password string) (OperatorCreated, error) {
	if s.cfg.Sealer == nil {
		return OperatorCreated{}, ErrNoOperatorKey
	}
	var out OperatorCreated
	if password == "" {
		var err error
		if password, err = MakePassword(); err != nil {
			return OperatorCreated{}, err
		}
		out.Password = password
	}
	cred, err := opauth.NewCredentials(o.ID, password, s.params(), s.cfg.Sealer)
	if err != nil {
		return OperatorCreated{}, err
	}
	o.PasswordHash, o.TOTPSecret, o.LastTOTPStep = cred.PasswordHash, cred.TOTPSecret, 0
	out.TOTPSecret, out.TOTPURI = cred.Enrolment.Secret, cred.Enrolment.URI
	return out, nil
}

// AddOperator creates an account: with console login (a password and a
// TOTP second factor, returned once) unless TokenOnly.
func (s *Service) AddOperator(ctx context.Context, a Actor, n NewOperator) (OperatorCreated, error) {
	if err := checkActor(a); err != nil {
		return OperatorCreated{}, err
	}
	now := s.cfg.Now()
	o := store.Operator{ID: n.ID, Role: n.Role, Municipality: n.Municipality, Created: now, Updated: now}
	if err := o.Validate(); err != nil {
		return OperatorCreated{}, err
	}
	if _, err := s.cfg.Store.Operator(ctx, n.ID); err == nil {
		return OperatorCreated{}, fmt.Errorf("%w: operator %s", store.ErrExists, n.ID)
	}
	var out OperatorCreated
	if !n.TokenOnly {
		var err error
		if out, err = s.credentials(&o, n.Password); err != nil {
			return OperatorCreated{}, err
		}
	}
	if err := s.cfg.Store.CreateOperator(ctx, o); err != nil {
		return OperatorCreated{}, err
	}
	out.Operator = Info(o)
	return out, s.audit(ctx, a, store.Event{Type: store.EventOperatorAdded, Object: o.ID, Municipality: o.Municipality, Result: string(o.Role)})
}

// ListOperators returns every account, without secrets.
func (s *Service) ListOperators(ctx context.Context) ([]OperatorInfo, error) {
	os, err := s.cfg.Store.ListOperators(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]OperatorInfo, len(os))
	for i, o := range os {
		out[i] = Info(o)
	}
	return out, nil
}

// ChangeOperator changes an account's role, municipality or state. A
// change of role and a disabled account end the account's console
// sessions.
func (s *Service) ChangeOperator(ctx context.Context, a Actor, id string, c OperatorChange) (OperatorInfo, error) {
	if err := checkActor(a); err != nil {
		return OperatorInfo{}, err
	}
	if id == a.Operator && (c.Role != nil || c.Disabled != nil && *c.Disabled) {
		return OperatorInfo{}, ErrOwnAccount
	}
	now := s.cfg.Now()
	result := "changed"
	o, err := s.cfg.Store.UpdateOperator(ctx, id, func(o *store.Operator) error {
		if c.Role != nil && *c.Role != o.Role {
			o.Role, o.SessionsNotBefore = *c.Role, now
			if o.Role != store.RoleMunicipality {
				o.Municipality = ""
			}
		}
		if c.Municipality != nil {
			o.Municipality = *c.Municipality
		}
		if c.Disabled != nil {
			o.Disabled = *c.Disabled
			if o.Disabled {
				o.SessionsNotBefore, result = now, "disabled"
			} else {
				result = "enabled"
			}
		}
		if c.Unlock {
			o.LockedUntil, o.FailedLogins = time.Time{}, 0
		}
		o.Updated = now
		return nil
	})
	if err != nil {
		return OperatorInfo{}, err
	}
	if c.Role != nil {
		result = "role_" + string(o.Role)
	}
	return Info(o), s.audit(ctx, a, store.Event{Type: store.EventOperatorChanged, Object: id, Municipality: o.Municipality, Result: result})
}

// ResetCredentials gives an account a new password (made when empty) and
// second factor, returned once, and ends its sessions.
func (s *Service) ResetCredentials(ctx context.Context, a Actor, id, password string) (OperatorCreated, error) {
	if err := checkActor(a); err != nil {
		return OperatorCreated{}, err
	}
	probe := store.Operator{ID: id}
	out, err := s.credentials(&probe, password)
	if err != nil {
		return OperatorCreated{}, err
	}
	now := s.cfg.Now()
	o, err := s.cfg.Store.UpdateOperator(ctx, id, func(o *store.Operator) error {
		o.PasswordHash, o.TOTPSecret, o.LastTOTPStep = probe.PasswordHash, probe.TOTPSecret, 0
		o.SessionsNotBefore, o.Updated, o.LockedUntil, o.FailedLogins = now, now, time.Time{}, 0
		return nil
	})
	if err != nil {
		return OperatorCreated{}, err
	}
	out.Operator = Info(o)
	return out, s.audit(ctx, a, store.Event{Type: store.EventOperatorChanged, Object: id, Result: "credentials_reset"})
}

// MaxTokenTTL bounds an API token's life; zero TTL means this.
const MaxTokenTTL = 366 * 24 * time.Hour

// IssueAPIToken makes an API token for an operator. The token is returned
// once; the store keeps its hash.
func (s *Service) IssueAPIToken(ctx context.Context, a Actor, operator, label string, ttl time.Duration) (IssuedToken, error) {
	if err := checkActor(a); err != nil {
		return IssuedToken{}, err
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		ttl = MaxTokenTTL
	}
	tok, id, hash, err := opauth.NewToken()
	if err != nil {
		return IssuedToken{}, err
	}
	now := s.cfg.Now()
	rec := store.APIToken{ID: id, Operator: operator, SHA256: hash, Label: label, Created: now, Expires: now.Add(ttl)}
	if err := s.cfg.Store.PutAPIToken(ctx, rec); err != nil {
		return IssuedToken{}, err
	}
	return IssuedToken{Token: tok, Record: rec}, s.audit(ctx, a, store.Event{Type: store.EventAPITokenIssued, Object: id, Result: "ok"})
}

// ListAPITokens lists an operator's tokens ("" for all), without secrets.
func (s *Service) ListAPITokens(ctx context.Context, operator string) ([]store.APIToken, error) {
	return s.cfg.Store.ListAPITokens(ctx, operator)
}

// RevokeAPIToken revokes a token at once.
func (s *Service) RevokeAPIToken(ctx context.Context, a Actor, id string) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if err := s.cfg.Store.RevokeAPIToken(ctx, id, s.cfg.Now()); err != nil {
		return err
	}
	return s.audit(ctx, a, store.Event{Type: store.EventAPITokenRevoked, Object: id, Result: "revoked"})
}

// Session and export events the console records through Audit.
var sessionEvents = map[store.EventType]bool{
	store.EventOperatorLogin: true, store.EventOperatorLogout: true,
	store.EventAuditExported: true, store.EventSettlementExport: true,
}

// Audit records what an operator did that changes nothing in the center:
// a login (a failed one names the account tried in Object and no
// operator), a logout, an export of audit events or settlement.
func (s *Service) Audit(ctx context.Context, a Actor, e store.Event) error {
	if !sessionEvents[e.Type] {
		return fmt.Errorf("admin: %s is not a session or export event", e.Type)
	}
	if a.Operator != "" || e.Type != store.EventOperatorLogin {
		if err := checkActor(a); err != nil {
			return err
		}
	}
	return s.audit(ctx, a, e)
}
