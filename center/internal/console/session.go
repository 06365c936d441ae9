package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// authenticate finds the request's session and its operator, or sends the
// browser to the login page (saying why when the session expired).
func (c *Console) authenticate(w http.ResponseWriter, r *http.Request) (*request, bool) {
	q := &request{lang: langOf(r)}
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		c.toLogin(w, r, "")
		return nil, false
	}
	now := c.now()
	key := sessionKey(ck.Value)
	c.sessions.mu.Lock()
	s := c.sessions.m[key]
	expired := s != nil && (now.Sub(s.lastSeen) >= c.cfg.SessionIdle || now.Sub(s.created) >= c.cfg.SessionMax)
	if expired {
		delete(c.sessions.m, key)
	} else if s != nil {
		s.lastSeen = now
	}
	var sc session
	if s != nil {
		sc = *s
	}
	c.sessions.mu.Unlock()
	if s == nil || expired {
		setCookie(w, SessionCookie, "", -1)
		reason := ""
		if expired {
			reason = "expired"
		}
		c.toLogin(w, r, reason)
		return nil, false
	}
	// The account is read on every request: a disabled account, a new
	// role or reset credentials take effect at once.
	op, err := c.cfg.Store.Operator(r.Context(), sc.operator)
	if err != nil || op.Disabled || !op.CanLogIn() || sc.created.Before(op.SessionsNotBefore) {
		c.endSession(key)
		setCookie(w, SessionCookie, "", -1)
		c.toLogin(w, r, "ended")
		return nil, false
	}
	q.op, q.sess = op, &sc
	return q, true
}

func (c *Console) endSession(key string) {
	c.sessions.mu.Lock()
	delete(c.sessions.m, key)
	c.sessions.mu.Unlock()
}

func (c *Console) toLogin(w http.ResponseWriter, r *http.Request, reason string) {
	if r.Method != http.MethodGet || r.Header.Get("Accept") == "text/event-stream" {
		http.Error(w, "login required / ログインしてください", http.StatusUnauthorized)
		return
	}
	to := "/login"
	if reason != "" {
		to += "?reason=" + reason
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// loginPage shows the login form with a fresh login CSRF token (double
// submit: a cookie and the same value in the form).
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.showLogin(w, r, http.StatusOK, r.URL.Query().Get("reason"))
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, reason string) {
	tok := randomToken()
	setCookie(w, LoginCookie, tok, 600)
	q := &request{lang: langOf(r)}
	w.WriteHeader(status)
	c.render(w, r, q, "login", map[string]any{"LoginToken": tok, "Reason": reason})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused / 別のサイトからの要求は受け付けません", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	ck, err := r.Cookie(LoginCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue("login_token"))) != 1 {
		c.showLogin(w, r, http.StatusForbidden, "stale")
		return
	}
	id, source := r.PostFormValue("operator"), sourceOf(r)
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	op, err := c.cfg.Auth.Login(ctx, id, r.PostFormValue("password"), r.PostFormValue("code"), source)
	if err != nil {
		result := "bad_credentials"
		switch {
		case errors.Is(err, opauth.ErrLocked):
			result = "locked"
		case errors.Is(err, opauth.ErrThrottled):
			result = "throttled"
		case errors.Is(err, opauth.ErrDisabled):
			result = "disabled"
		case !errors.Is(err, opauth.ErrBadCredentials):
			c.cfg.Log.Error("console: login failed", "err", err)
			result = "error"
		}
		ev := store.Event{Type: store.EventOperatorLogin, Result: result}
		if probe := (store.Event{Time: time.Now(), Type: store.EventOperatorLogin, Object: id}); probe.Validate() == nil {
			ev.Object = id // the account tried, when it is a well-formed ID
		}
		if err := c.cfg.Admin.Audit(ctx, admin.Actor{Source: source}, ev); err != nil {
			c.cfg.Log.Error("console: audit a failed login", "err", err)
		}
		reason := "failed"
		if result == "locked" || result == "throttled" {
			reason = result
		}
		c.showLogin(w, r, http.StatusUnauthorized, reason)
		return
	}
	now := c.now()
	cookie := randomToken()
	c.sessions.mu.Lock()
	c.sessions.m[sessionKey(cookie)] = &session{operator: op.ID, csrf: randomToken(), created: now, lastSeen: now, source: source}
	c.sessions.mu.Unlock()
	setCookie(w, SessionCookie, cookie, 0)
	setCookie(w, LoginCookie, "", -1)
	if err := c.cfg.Admin.Audit(ctx, admin.Actor{Operator: op.ID, Source: source}, store.Event{Type: store.EventOperatorLogin, Object: op.ID, Municipality: op.Municipality, Result: "ok"}); err != nil {
		c.cfg.Log.Error("console: audit a login", "err", err)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, q *request) {
	if ck, err := r.Cookie(SessionCookie); err == nil {
		c.endSession(sessionKey(ck.Value))
	}
	setCookie(w, SessionCookie, "", -1)
	if err := c.cfg.Admin.Audit(r.Context(), q.actor(r), store.Event{Type: store.EventOperatorLogout, Object: q.op.ID, Result: "ok"}); err != nil {
		c.cfg.Log.Error("console: audit a logout", "err", err)
	}
	http.Redirect(w, r, "/login?reason=logout", http.StatusSeeOther)
}

// setLang switches the console's language (a preference, not a change to
// the center).
func (c *Console) setLang(w http.ResponseWriter, r *http.Request) {
	lang := r.PathValue("lang")
	if lang != "ja" && lang != "en" {
		lang = "ja"
	}
	setCookie(w, LangCookie, lang, 365*24*3600)
	back := r.URL.Query().Get("back")
	if back == "" || back[0] != '/' || len(back) > 1 && (back[1] == '/' || back[1] == '\\') {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

func langOf(r *http.Request) string {
	if ck, err := r.Cookie(LangCookie); err == nil && ck.Value == "en" {
		return "en"
	}
	return "ja"
}

func (c *Console) home(w http.ResponseWriter, r *http.Request, q *request) {
	to := "/kiosks"
	if !opauth.Allowed(q.op.Role, opauth.ViewAll) {
		to = "/municipalities"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}
