// Package localapi is the kiosk agent's local HTTP server: the resident's
// touch screen (a page shown full-screen by the terminal's browser) and the
// store-terminal integrator's API. docs/INTEGRATION.md documents it.
//
// It listens on loopback only and defends against the browser-side attacks
// a local server invites: requests must name a loopback Host (no DNS
// rebinding), state-changing requests and event streams from a browser must
// come from the page's own origin, and the integrator API needs a bearer
// token read from a file only the terminal's user can read.
//
// Routes are grouped by who calls them:
//
//	/                      the touch screen (page.go)
//	/api/v1/screen/...     the page's event stream and inputs (page.go)
//	/api/v1/integrator/... the integrator API, token required (integrator.go)
//	/sim/...               the simulator's control panel, simulator mode only (sim.go)
package localapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
)

// Server is the local HTTP server.
type Server struct {
	cfg Config
	mux *http.ServeMux
	srv *http.Server
	ln  net.Listener
}

// Config wires the server. Kiosk is required; the rest enables route groups.
type Config struct {
	// Listen is a loopback address (127.0.0.1:8800, [::1]:8800, localhost:8800).
	Listen string
	Kiosk  *flow.Kiosk
	// Token is the integrator API's bearer token (read from a 0600 file by
	// the caller). Empty disables the integrator API.
	Token string
	// Integrator holds the hooks the integrator API drives (payment and
	// printer plug-ins, health); nil disables those routes.
	Integrator *Integrator
	// Sim enables the simulator's control panel (insert or remove the
	// demo card); nil in production.
	Sim *Sim
	Log *slog.Logger
}

// New checks cfg and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Kiosk == nil {
		return nil, errors.New("localapi: kiosk is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("localapi: listen address %q: %w", cfg.Listen, err)
	}
	if !isLoopbackHost(host) {
		return nil, fmt.Errorf("localapi: listen address %q is not loopback; the local API must not be reachable from the network", cfg.Listen)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.pageRoutes()
	if cfg.Integrator != nil {
		s.integratorRoutes()
	}
	if cfg.Sim != nil {
		s.simRoutes()
	}
	return s, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Listen opens the listener; Addr then reports it.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("localapi: %w", err)
	}
	s.ln = ln
	return nil
}

// Addr is the listening address.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is the page's address.
func (s *Server) URL() string { return "http://" + s.Addr() + "/" }

// Serve serves until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	// Requests (event streams above all) end when the server does.
	s.srv = &http.Server{Handler: s.guard(s.mux), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return err
	}
}

// Handler returns the guarded handler (for tests with httptest).
func (s *Server) Handler() http.Handler { return s.guard(s.mux) }

// guard refuses requests that do not name this loopback server as Host
// (DNS rebinding) and browser requests from other origins.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if !isLoopbackHost(host) {
			http.Error(w, "localapi: Host must be a loopback address", http.StatusForbidden)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && origin != "http://"+r.Host {
			http.Error(w, "localapi: cross-origin request refused", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// requireToken wraps integrator handlers: a bearer token, compared in
// constant time.
func (s *Server) requireToken(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if s.cfg.Token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1 {
			writeError(w, http.StatusUnauthorized, "unauthorized", "the integrator API needs Authorization: Bearer <token from the agent's token file>")
			return
		}
		h(w, r)
	}
}

// writeJSON writes v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// apiError is the error body of every API.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

// readJSON decodes a small JSON body strictly.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("localapi: request body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("localapi: request body: trailing data after the JSON value")
	}
	return nil
}

// streamSnapshots writes the kiosk's snapshots as server-sent events until
// the client goes away, transforming each with view (which may redact).
func (s *Server) streamSnapshots(w http.ResponseWriter, r *http.Request, view func(flow.Snapshot) any) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	snaps, cancel := s.cfg.Kiosk.Subscribe()
	defer cancel()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case snap := <-snaps:
			b, err := json.Marshal(view(snap))
			if err != nil {
				return
			}
			fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b)
			fl.Flush()
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		}
	}
}
