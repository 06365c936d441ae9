package opauth

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
)

// cheap keeps the tests fast; the format and the code path are the same.
var cheap = Params{Time: 1, Memory: 1024, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Errorf("hash %q is not an argon2id PHC string with its parameters", h)
	}
	h2, _ := HashPassword("correct horse battery", cheap)
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	tests := []struct {
		name, hash, pw string
		ok             bool
		bad            bool
	}{
		{"right", h, "correct horse battery", true, false},
		{"wrong", h, "correct horse batterY", false, false},
		{"empty", h, "", false, false},
		{"not argon2id", strings.Replace(h, "argon2id", "argon2i", 1), "correct horse battery", false, true},
		{"huge memory", strings.Replace(h, "m=1024", "m=99999999", 1), "correct horse battery", false, true},
		{"garbage", "$argon2id$v=19$m=1,t=1,p=1$!!$!!", "x", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := VerifyPassword(tc.hash, tc.pw)
			if ok != tc.ok || (err != nil) != tc.bad {
				t.Errorf("VerifyPassword = %v, %v; want %v, error %v", ok, err, tc.ok, tc.bad)
			}
		})
	}
	if err := CheckPassword("short"); !errors.Is(err, ErrWeakPassword) {
		t.Errorf("CheckPassword(short) = %v", err)
	}
}

func TestTOTP(t *testing.T) {
	en, err := NewTOTP("op-suzuki")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(en.URI, "otpauth://totp/kioskcert:op-suzuki?") || !strings.Contains(en.URI, "secret="+en.Secret) {
		t.Errorf("URI %q", en.URI)
	}
	now := time.Unix(1_700_000_000, 0)
	step := now.Unix() / 30
	code := func(at time.Time) string {
		c, err := Code(en.Secret, at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name     string
		code     string
		lastStep int64
		want     int64
		ok       bool
	}{
		{"now", code(now), 0, step, true},
		{"previous step", code(now.Add(-30 * time.Second)), 0, step - 1, true},
		{"next step", code(now.Add(30 * time.Second)), 0, step + 1, true},
		{"two steps old", code(now.Add(-60 * time.Second)), 0, 0, false},
		{"already used", code(now), step, 0, false},
		{"wrong", "000000", 0, 0, false},
		{"not six digits", "12345", 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := checkCode(en.Secret, tc.code, now, tc.lastStep)
			if ok != tc.ok || (ok && got != tc.want) {
				// A wrong code may collide with a right one once in a million.
				t.Errorf("checkCode = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSealer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", OperatorKeyFile)
	s, err := LoadOrCreateSealer(path)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal("op-a", "JBSWY3DPEHPK3PXP")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "JBSWY3DPEHPK3PXP") {
		t.Fatal("the sealed secret holds the secret in the clear")
	}
	again, err := LoadOrCreateSealer(path) // the same key, read back
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open("op-a", sealed); err != nil || got != "JBSWY3DPEHPK3PXP" {
		t.Errorf("Open = %q, %v", got, err)
	}
	if _, err := again.Open("op-b", sealed); err == nil {
		t.Error("a secret sealed for op-a opened for op-b")
	}
}

type fixture struct {
	auth   *Authenticator
	store  store.Store
	now    time.Time
	secret string
	mu     sync.Mutex
}

func (f *fixture) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newFixture(t *testing.T) *fixture {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: st, now: time.Date(2024, 4, 1, 9, 0, 0, 0, time.UTC)}
	f.auth = &Authenticator{Store: st, Sealer: sealer, Now: f.clock, Params: cheap}
	cred, err := NewCredentials("op-a", "a long passphrase", cheap, sealer)
	if err != nil {
		t.Fatal(err)
	}
	f.secret = cred.Enrolment.Secret
	err = st.CreateOperator(context.Background(), store.Operator{ID: "op-a", Role: store.RoleOperator,
		PasswordHash: cred.PasswordHash, TOTPSecret: cred.TOTPSecret, Created: f.now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) code(t *testing.T) string {
	c, err := Code(f.secret, f.clock())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLogin(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.auth.Login(ctx, "op-a", "a long passphrase", "000000", "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("wrong code: %v", err)
	}
	if _, err := f.auth.Login(ctx, "op-a", "wrong passphrase!", f.code(t), "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := f.auth.Login(ctx, "nobody", "a long passphrase", f.code(t), "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("unknown account: %v", err)
	}
	o, err := f.auth.Login(ctx, "op-a", "a long passphrase", f.code(t), "192.0.2.1")
	if err != nil || o.ID != "op-a" || o.FailedLogins != 0 || !o.LastLogin.Equal(f.now) {
		t.Fatalf("right login: %+v, %v", o, err)
	}
	// The same code again (a replay) is refused.
	if _, err := f.auth.Login(ctx, "op-a", "a long passphrase", f.code(t), "192.0.2.2"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("replayed code: %v", err)
	}
}

func TestLoginLockout(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for i := range MaxFailures {
		if _, err := f.auth.Login(ctx, "op-a", "wrong passphrase!", f.code(t), "192.0.2.9"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// Locked: even the right credentials are refused, from anywhere.
	if _, err := f.auth.Login(ctx, "op-a", "a long passphrase", f.code(t), "198.51.100.1"); !errors.Is(err, ErrLocked) {
		t.Errorf("locked account: %v", err)
	}
	f.advance(LockoutPeriod + time.Minute)
	if _, err := f.auth.Login(ctx, "op-a", "a long passphrase", f.code(t), "198.51.100.1"); err != nil {
		t.Errorf("after the lockout: %v", err)
	}
}

func TestLoginSourceThrottled(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for range MaxSourceFailures {
		f.auth.Login(ctx, "nobody", "whatever it is", "123456", "203.0.113.7")
	}
	if _, err := f.auth.Login(ctx, "op-a", "a long passphrase", f.code(t), "203.0.113.7"); !errors.Is(err, ErrThrottled) {
		t.Errorf("throttled source: %v", err)
	}
	if _, err := f.auth.Login(ctx, "op-a", "a long passphrase", f.code(t), "203.0.113.8"); err != nil {
		t.Errorf("another source: %v", err)
	}
	f.advance(SourceWindow)
	f.advance(time.Minute)
	if _, err := f.auth.Login(ctx, "op-a", "a long passphrase", f.code(t), "203.0.113.7"); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	tok, id, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.PutAPIToken(ctx, store.APIToken{ID: id, Operator: "op-a", SHA256: hash, Label: "cli", Created: f.now}); err != nil {
		t.Fatal(err)
	}
	o, _, err := f.auth.AuthenticateToken(ctx, tok)
	if err != nil || o.ID != "op-a" {
		t.Errorf("AuthenticateToken = %v, %v", o.ID, err)
	}
	if _, _, err := f.auth.AuthenticateToken(ctx, tok+"x"); !errors.Is(err, ErrBadToken) {
		t.Errorf("wrong token: %v", err)
	}
	if err := f.store.RevokeAPIToken(ctx, id, f.now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.auth.AuthenticateToken(ctx, tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("revoked token: %v", err)
	}
}

func TestPermissions(t *testing.T) {
	tests := []struct {
		role store.OperatorRole
		a    Action
		want bool
	}{
		{store.RoleViewer, ViewAll, true},
		{store.RoleViewer, ManageKiosks, false},
		{store.RoleViewer, RotateKeys, false},
		{store.RoleOperator, ManageKiosks, true},
		{store.RoleOperator, RevokeKiosks, false},
		{store.RoleOperator, RotateKeys, false},
		{store.RoleAdministrator, RotateKeys, true},
		{store.RoleAdministrator, ManageOperators, true},
		{store.RoleMunicipality, ViewAll, false},
		{store.RoleMunicipality, ViewOwnMunicipality, true},
		{store.RoleMunicipality, OwnTokens, false},
		{"unknown", ViewAll, false},
	}
	for _, tc := range tests {
		if got := Allowed(tc.role, tc.a); got != tc.want {
			t.Errorf("Allowed(%s, %s) = %v, want %v", tc.role, tc.a, got, tc.want)
		}
	}
	m := &store.Operator{Role: store.RoleMunicipality, Municipality: "012041"}
	if !CanView(m, "012041") || CanView(m, "011002") || CanView(m, "") {
		t.Error("a municipality operator sees other municipalities")
	}
}
