package opauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Throttling limits.
const (
	MaxFailures       = 5
	LockoutPeriod     = 15 * time.Minute
	MaxSourceFailures = 20
	SourceWindow      = 15 * time.Minute
)

// Authenticator logs operators in and checks API tokens.
type Authenticator struct {
	Store  store.OperatorStore
	Sealer *Sealer
	Now    func() time.Time
	// Params are what new accounts are hashed with; a login for an unknown
	// account verifies a dummy hash made with them, so it takes as long as
	// a real one. Zero means DefaultParams.
	Params Params

	dummyOnce sync.Once
	dummy     string
	mu        sync.Mutex
	sources   map[string][]time.Time // failed logins per source address
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// sourceBlocked reports whether source has too many recent failures, and
// forgets failures older than the window.
func (a *Authenticator) sourceBlocked(source string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	fs := a.sources[source]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= SourceWindow {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(a.sources, source)
	} else {
		a.sources[source] = fs
	}
	return len(fs) >= MaxSourceFailures
}

func (a *Authenticator) sourceFailed(source string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sources == nil {
		a.sources = map[string][]time.Time{}
	}
	// Bound the memory an address-spraying attacker can take.
	if len(a.sources) > 100000 {
		a.sources = map[string][]time.Time{}
	}
	a.sources[source] = append(a.sources[source], now)
}

func (a *Authenticator) dummyHash() string {
	a.dummyOnce.Do(func() {
		p := a.Params
		if p == (Params{}) {
			p = DefaultParams
		}
		var err error
		if a.dummy, err = HashPassword("not a password of anyone", p); err != nil {
			panic("opauth: " + err.Error())
		}
	})
	return a.dummy
}

// Login checks an operator's password and one-time code. On success it
// records the login (and the code's step, so the code cannot be used
// again) and returns the account. Failures are ErrThrottled, ErrLocked,
// ErrDisabled or ErrBadCredentials; a wrong password or code counts
// towards the account's lockout and the source's throttling.
func (a *Authenticator) Login(ctx context.Context, id, password, code, source string) (store.Operator, error) {
	now := a.now()
	if a.sourceBlocked(source, now) {
		return store.Operator{}, ErrThrottled
	}
	o, err := a.Store.Operator(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid) {
		return store.Operator{}, err
	}
	if err != nil || !o.CanLogIn() {
		VerifyPassword(a.dummyHash(), password)
		a.sourceFailed(source, now)
		if err == nil && o.Disabled {
			return store.Operator{}, ErrDisabled
		}
		return store.Operator{}, ErrBadCredentials
	}
	if now.Before(o.LockedUntil) {
		a.sourceFailed(source, now)
		return store.Operator{}, ErrLocked
	}
	pwOK, err := VerifyPassword(o.PasswordHash, password)
	if err != nil {
		return store.Operator{}, fmt.Errorf("opauth: operator %s: %w", id, err)
	}
	var step int64
	codeOK := false
	if pwOK {
		secret, err := a.Sealer.Open(o.ID, o.TOTPSecret)
		if err != nil {
			return store.Operator{}, err
		}
		step, codeOK = checkCode(secret, code, now, o.LastTOTPStep)
	}
	if !pwOK || !codeOK {
		a.sourceFailed(source, now)
		_, err := a.Store.UpdateOperator(ctx, id, func(o *store.Operator) error {
			o.FailedLogins++
			if o.FailedLogins >= MaxFailures {
				o.LockedUntil, o.FailedLogins = now.Add(LockoutPeriod), 0
			}
			return nil
		})
		if err != nil {
			return store.Operator{}, err
		}
		return store.Operator{}, ErrBadCredentials
	}
	errReused := errors.New("code already used")
	o, err = a.Store.UpdateOperator(ctx, id, func(o *store.Operator) error {
		if step <= o.LastTOTPStep {
			return errReused // another login used this code meanwhile
		}
		o.LastTOTPStep, o.FailedLogins, o.LockedUntil, o.LastLogin = step, 0, time.Time{}, now
		return nil
	})
	if errors.Is(err, errReused) {
		a.sourceFailed(source, now)
		return store.Operator{}, ErrBadCredentials
	}
	if err != nil {
		return store.Operator{}, err
	}
	return o, nil
}

// ErrBadToken means an API token is unknown, revoked, expired, or its
// operator is disabled.
var ErrBadToken = errors.New("opauth: operator token unknown, revoked or expired")

// AuthenticateToken returns the operator a bearer token acts as.
func (a *Authenticator) AuthenticateToken(ctx context.Context, token string) (store.Operator, store.APIToken, error) {
	if len(token) < 16 || len(token) > 128 {
		return store.Operator{}, store.APIToken{}, ErrBadToken
	}
	t, err := a.Store.APITokenByHash(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return store.Operator{}, store.APIToken{}, ErrBadToken
	}
	if err != nil {
		return store.Operator{}, store.APIToken{}, err
	}
	if !t.Usable(a.now()) {
		return store.Operator{}, store.APIToken{}, ErrBadToken
	}
	o, err := a.Store.Operator(ctx, t.Operator)
	if errors.Is(err, store.ErrNotFound) || err == nil && o.Disabled {
		return store.Operator{}, store.APIToken{}, ErrBadToken
	}
	if err != nil {
		return store.Operator{}, store.APIToken{}, err
	}
	return o, t, nil
}

// Credentials are a new account's password hash and sealed second factor,
// with the enrolment to hand to the operator.
type Credentials struct {
	PasswordHash string
	TOTPSecret   []byte
	Enrolment    Enrolment
}

// NewCredentials hashes a password and makes a sealed second factor for
// an operator.
func NewCredentials(operatorID, password string, p Params, s *Sealer) (Credentials, error) {
	if err := CheckPassword(password); err != nil {
		return Credentials{}, err
	}
	hash, err := HashPassword(password, p)
	if err != nil {
		return Credentials{}, err
	}
	en, err := NewTOTP(operatorID)
	if err != nil {
		return Credentials{}, err
	}
	sealed, err := s.Seal(operatorID, en.Secret)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{PasswordHash: hash, TOTPSecret: sealed, Enrolment: en}, nil
}
