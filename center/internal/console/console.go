// Package console is the operations team's web console: server-rendered
// pages (html/template, a little JavaScript, every asset embedded, nothing
// fetched from the internet) in Japanese and English, served over HTTPS on
// its own listener, never on the kiosk endpoint.
//
// # Who may do what
//
// Operators log in with their own account: password and TOTP code
// (center/internal/opauth, which also throttles failed logins per account
// and per address). A session lives in a cookie named with the __Host-
// prefix (Secure, HttpOnly, SameSite=Strict, Path=/), ends after
// SessionIdle without a request, SessionMax after login, at logout, and
// when the account is disabled, its role changes or its credentials are
// reset. Every page checks the operator's role (opauth.Allowed); a
// municipality's staff see their own municipality's page, audit events and
// settlement only.
//
// # Changes
//
// Every change is a POST carrying the session's CSRF token (a hidden form
// field, or the X-CSRF-Token header from script), from the console's own
// origin (Origin and Sec-Fetch-Site are checked when the browser sends
// them). Changes that matter ask for confirmation on a page of their own,
// so they work without JavaScript. Each goes through admin.Service — the
// same procedure the operations API and the CLI call — with the logged-in
// operator and the request's address as the actor, so each leaves an audit
// event naming the operator, the action, the object and the source.
// Nothing a client sends names the operator.
//
// # Pages
//
// kiosks (search, health, enrol with a bundle to download, suspend, resume,
// revoke), municipalities (participation, record counts, last ledger
// import, import jobs with their progress, cancelling one), live (connected kiosks, issuances per minute, errors by code,
// latency, pushed by server-sent events), audit (search and CSV export,
// never by personal data: events hold none), keys (signing keys, rotation,
// the JWKS as served), revocations (feeding the SHC revocation list),
// settlement (per day and month by municipality, chain, kind and copies,
// with fees; CSV; monthly reports per municipality and per chain) and
// operators (accounts, API tokens).
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Live is the kiosk endpoint's view of connected kiosks (server.Server).
type Live interface {
	Live() []server.KioskLive
	KioskLive(id string) (server.KioskLive, bool)
	InFlight() int
}

// Config wires the console.
type Config struct {
	Store store.Store
	// Admin carries out every change (and records it).
	Admin *admin.Service
	Auth  *opauth.Authenticator
	Live  Live
	// Gatherer is the center's metrics registry, for the live page.
	Gatherer prometheus.Gatherer
	// Public fetches a path of the public issuer endpoints in process
	// (the JWKS and revocation lists exactly as served).
	Public func(ctx context.Context, path string) (int, []byte)
	// JWKSPath is the JWKS's path on the public listener; CRLPath(kid)
	// a revocation list's.
	JWKSPath      string
	CRLPath       func(kid string) string
	FeePerCopyYen int
	Kinds         []string
	MaxCopies     int
	SessionIdle   time.Duration
	SessionMax    time.Duration
	Now           func() time.Time
	Log           *slog.Logger
}

// Console serves the pages.
type Console struct {
	cfg      Config
	tmpl     map[string]*template.Template
	sessions *sessions
	live     *liveSampler
	mux      *http.ServeMux
}

// Cookie names. The __Host- prefix makes the browser refuse them unless
// Secure, Path=/ and without Domain: no other host or path can set them.
const (
	SessionCookie = "__Host-kioskcert-session"
	LoginCookie   = "__Host-kioskcert-login"
	LangCookie    = "__Host-kioskcert-lang"
)

// New returns a console.
func New(cfg Config) (*Console, error) {
	if cfg.Store == nil || cfg.Admin == nil || cfg.Auth == nil || cfg.Live == nil {
		return nil, errors.New("console: store, admin, auth and live are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 15 * time.Minute
	}
	if cfg.SessionMax <= 0 {
		cfg.SessionMax = 10 * time.Hour
	}
	if cfg.MaxCopies <= 0 {
		cfg.MaxCopies = 5
	}
	c := &Console{cfg: cfg, sessions: newSessions(), live: newLiveSampler(cfg.Gatherer, cfg.Live, cfg.Now)}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// Handler returns the console's HTTP handler.
func (c *Console) Handler() http.Handler { return c.securityHeaders(c.mux) }

// Run samples the center's metrics for the live page until ctx ends.
// The console's owner runs it and waits for it; live pages' event streams
// end when it does.
func (c *Console) Run(ctx context.Context) { c.live.run(ctx) }

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("POST /login", c.login)
	m.HandleFunc("POST /logout", c.change("", c.logout))
	m.HandleFunc("GET /lang/{lang}", c.setLang)
	m.HandleFunc("GET /{$}", c.page("", c.home))

	m.HandleFunc("GET /kiosks", c.page(opauth.ViewAll, c.kiosks))
	m.HandleFunc("GET /kiosks/{id}", c.page(opauth.ViewAll, c.kiosk))
	m.HandleFunc("POST /kiosks", c.change(opauth.ManageKiosks, c.enroll))
	m.HandleFunc("POST /kiosks/{id}/status", c.change(opauth.ManageKiosks, c.kioskStatus))
	m.HandleFunc("GET /municipalities", c.page("", c.municipalities))
	m.HandleFunc("POST /municipalities/{code}/participation", c.change(opauth.SetParticipation, c.participation))
	m.HandleFunc("POST /imports/{id}/cancel", c.change(opauth.ImportRecords, c.cancelImport))
	m.HandleFunc("GET /live", c.page(opauth.ViewAll, c.livePage))
	m.HandleFunc("GET /live/events", c.page(opauth.ViewAll, c.liveEvents))
	m.HandleFunc("GET /audit", c.page("", c.audit))
	m.HandleFunc("GET /audit.csv", c.page(opauth.ExportData, c.auditCSV))
	m.HandleFunc("GET /keys", c.page(opauth.ViewAll, c.keys))
	m.HandleFunc("POST /keys/rotate", c.change(opauth.RotateKeys, c.rotate))
	m.HandleFunc("GET /revocations", c.page(opauth.ViewAll, c.revocations))
	m.HandleFunc("POST /revocations", c.change(opauth.RevokeCertificates, c.revoke))
	m.HandleFunc("GET /settlement", c.page("", c.settlement))
	m.HandleFunc("GET /settlement.csv", c.page(opauth.ExportData, c.settlementCSV))
	m.HandleFunc("GET /settlement/report", c.page("", c.settlementReport))
	m.HandleFunc("GET /operators", c.page(opauth.OwnTokens, c.operators))
	m.HandleFunc("POST /operators", c.change(opauth.ManageOperators, c.addOperator))
	m.HandleFunc("POST /operators/{id}", c.change(opauth.ManageOperators, c.changeOperator))
	m.HandleFunc("POST /tokens", c.change(opauth.OwnTokens, c.issueToken))
	m.HandleFunc("POST /tokens/{id}/revoke", c.change(opauth.OwnTokens, c.revokeToken))
	c.mux = m
}

// securityHeaders: no framing, no sniffing, no referrers, no caching of
// pages, scripts and styles from the console only.
func (c *Console) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer browsers send
		// "Origin: null" on form posts, and the origin check needs it.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// request is what a handler knows about the request's operator.
type request struct {
	op   store.Operator
	sess *session
	lang string
}

func (q *request) actor(r *http.Request) admin.Actor {
	return admin.Actor{Operator: q.op.ID, Source: sourceOf(r)}
}

// sourceOf is the request's address, as audit events record it.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || host == "" {
		return "unknown"
	}
	return host
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, q *request)

// page serves a read-only page to a logged-in operator whose role allows
// need ("" for any operator; the handler narrows by role itself).
func (c *Console) page(need opauth.Action, f handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, ok := c.authenticate(w, r)
		if !ok {
			return
		}
		if need != "" && !opauth.Allowed(q.op.Role, need) {
			c.forbidden(w, r, q)
			return
		}
		f(w, r, q)
	}
}

// change serves a POST that changes something: it needs a session, a
// matching CSRF token, a same-origin request and the role's permission.
func (c *Console) change(need opauth.Action, f handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) {
			c.cfg.Log.Warn("console: cross-site request refused", "path", r.URL.Path, "source", sourceOf(r),
				"origin", r.Header.Get("Origin"), "fetch_site", r.Header.Get("Sec-Fetch-Site"))
			http.Error(w, "cross-site request refused / 別のサイトからの要求は受け付けません", http.StatusForbidden)
			return
		}
		q, ok := c.authenticate(w, r)
		if !ok {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		got := r.Header.Get("X-CSRF-Token")
		if got == "" {
			got = r.PostFormValue("csrf")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(q.sess.csrf)) != 1 {
			c.cfg.Log.Warn("console: request without the session's CSRF token refused", "path", r.URL.Path, "operator", q.op.ID, "source", sourceOf(r))
			http.Error(w, "the form is stale; reload the page / 画面を再読み込みしてください", http.StatusForbidden)
			return
		}
		if need != "" && !opauth.Allowed(q.op.Role, need) {
			c.forbidden(w, r, q)
			return
		}
		f(w, r, q)
	}
}

// sameOrigin refuses requests a browser marks as coming from another
// site. Browsers send Sec-Fetch-Site and Origin on POSTs; tools that send
// neither still need the session cookie and the CSRF token.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host || u.Scheme != "https" {
			return false
		}
	}
	return true
}

func (c *Console) forbidden(w http.ResponseWriter, r *http.Request, q *request) {
	c.cfg.Log.Warn("console: action refused to role", "path", r.URL.Path, "operator", q.op.ID, "role", q.op.Role)
	w.WriteHeader(http.StatusForbidden)
	c.render(w, r, q, "message", map[string]any{"Title": "forbidden", "Message": tr(q.lang, "forbidden_text")})
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("console: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// fail shows an error page: sentinel errors of the store and the admin
// service say what was wrong; anything else stays in the log.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, q *request, err error) {
	status, msg := http.StatusInternalServerError, tr(q.lang, "internal_error")
	switch {
	case errors.Is(err, store.ErrInvalid), errors.Is(err, opauth.ErrWeakPassword):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, store.ErrNotFound):
		status, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, store.ErrExists):
		status, msg = http.StatusConflict, err.Error()
	case errors.Is(err, store.ErrTransition):
		status, msg = http.StatusConflict, tr(q.lang, "transition_error")
	case errors.Is(err, admin.ErrOwnAccount):
		status, msg = http.StatusConflict, err.Error()
	default:
		c.cfg.Log.Error("console request failed", "path", r.URL.Path, "operator", q.op.ID, "err", err)
	}
	w.WriteHeader(status)
	c.render(w, r, q, "message", map[string]any{"Title": "error", "Message": msg})
}

// sessions are held in memory: a restart logs everyone out, and a center
// run as several instances needs its console behind sticky sessions.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session // by SHA-256 of the cookie value
}

type session struct {
	operator string
	csrf     string
	created  time.Time
	lastSeen time.Time
	source   string
}

func newSessions() *sessions { return &sessions{m: map[string]*session{}} }

func (c *Console) now() time.Time { return c.cfg.Now() }

func fmtErr(format string, a ...any) error { return fmt.Errorf("console: "+format, a...) }
