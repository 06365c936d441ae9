// Package server is the issuance center's kiosk endpoint: a websocket over
// mutually authenticated TLS 1.3 speaking pkg/protocol.
//
// A kiosk is admitted twice: at the TLS handshake (CheckKiosk: the client
// certificate must be enrolled and the kiosk active) and again at the
// upgrade, where the handler looks the kiosk up by its certificate's
// fingerprint. It is then sent Hello and may send Issue, Outcome, Status and
// Ping. Every frame is decoded strictly; a bad frame is answered with an
// error message and the connection carries on. Issues run on their own
// goroutines with a deadline, so heartbeats keep flowing while a
// certificate is being signed.
//
// The handler never holds a signing key: it hands requests to
// issuance.Service. It keeps each request in memory from receipt to the
// kiosk's outcome report, so that a retry after a dropped connection is
// answered with the same certificate rather than a second one.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Path is where kiosks connect.
const Path = "/v1/kiosk"

// Issuer issues certificates (issuance.Service).
type Issuer interface {
	Issue(ctx context.Context, req issuance.Request) (*protocol.CertificateResponse, *protocol.Error)
	Kinds() []string
	FeePerCopyYen() int
}

// Config wires a Server.
type Config struct {
	Store  store.Store
	Issuer Issuer
	// Heartbeat is how often the center pings each kiosk; a kiosk silent
	// for three heartbeats is disconnected. Default 15 s.
	Heartbeat time.Duration
	// IssueTimeout bounds one issuance. Default 10 s.
	IssueTimeout time.Duration
	// PendingTTL is how long an answered request is kept for replay when
	// the kiosk never reports an outcome. Default 15 min.
	PendingTTL time.Duration
	// MaxInFlight bounds concurrent issues per kiosk connection. Default 2.
	MaxInFlight int
	Now         func() time.Time
	Log         *slog.Logger
	Metrics     *Metrics
}

// Server serves kiosk connections.
type Server struct {
	cfg      Config
	pending  *pending
	upgrader websocket.Upgrader
	live     *liveStatus

	mu       sync.Mutex
	settleMu sync.Mutex // serialises outcomes settled from the audit log
	draining bool
	conns    map[*conn]struct{}
	inflight sync.WaitGroup
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Issuer == nil {
		return nil, errors.New("server: store and issuer are required")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.IssueTimeout <= 0 {
		cfg.IssueTimeout = 10 * time.Second
	}
	if cfg.PendingTTL <= 0 {
		cfg.PendingTTL = 15 * time.Minute
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	s := &Server{
		cfg:     cfg,
		pending: newPending(cfg.PendingTTL, cfg.Now),
		live:    newLiveStatus(),
		conns:   map[*conn]struct{}{},
		upgrader: websocket.Upgrader{
			HandshakeTimeout: 10 * time.Second,
			ReadBufferSize:   4096,
			WriteBufferSize:  4096,
			// Kiosk agents are not browsers: a request carrying an Origin
			// comes from a web page and is refused.
			CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "" },
		},
	}
	return s, nil
}

// CheckKiosk is the TLS handshake check (kioskpki.KioskChecker): the
// certificate must be the one enrolled for kioskID, and the kiosk active.
func (s *Server) CheckKiosk(kioskID, fingerprint string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.admit(ctx, kioskID, fingerprint)
	return err
}

func (s *Server) admit(ctx context.Context, kioskID, fingerprint string) (store.Kiosk, error) {
	k, err := s.cfg.Store.KioskByCertificate(ctx, fingerprint)
	var reason string
	switch {
	case errors.Is(err, store.ErrNotFound):
		reason = "certificate not enrolled"
	case err != nil:
		s.cfg.Log.Error("kiosk lookup failed", "kiosk", kioskID, "err", err)
		return store.Kiosk{}, fmt.Errorf("server: kiosk lookup failed: %w", err)
	case k.ID != kioskID:
		reason = "certificate subject does not match the enrolled kiosk ID"
	case k.Status != store.KioskActive:
		reason = "kiosk is " + string(k.Status) + ": " + k.StatusReason
	}
	if reason != "" {
		s.cfg.Log.Warn("kiosk refused", "kiosk", kioskID, "fingerprint", fingerprint, "reason", reason)
		s.cfg.Metrics.refusedConnections.Inc()
		return store.Kiosk{}, fmt.Errorf("server: kiosk %q refused: %s", kioskID, reason)
	}
	return k, nil
}

// Handler returns the HTTP handler for the kiosk listener.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(Path, s.serveKiosk)
	return mux
}

func (s *Server) serveKiosk(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "client certificate required", http.StatusUnauthorized)
		return
	}
	leaf := r.TLS.PeerCertificates[0]
	k, err := s.admit(r.Context(), leaf.Subject.CommonName, kioskpki.Fingerprint(leaf))
	if err != nil {
		http.Error(w, "kiosk not allowed", http.StatusForbidden)
		return
	}
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		http.Error(w, "center is shutting down", http.StatusServiceUnavailable)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.cfg.Log.Warn("websocket upgrade failed", "kiosk", k.ID, "err", err)
		return
	}
	c := newConn(s, ws, k)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.cfg.Metrics.connected.Inc()
	s.live.connected(k.ID, s.cfg.Now())
	s.touch(k.ID)
	s.cfg.Log.Info("kiosk connected", "kiosk", k.ID, "store", k.StoreCode, "remote", r.RemoteAddr)

	c.run()

	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.cfg.Metrics.connected.Dec()
	s.live.disconnected(k.ID, s.cfg.Now())
	s.cfg.Log.Info("kiosk disconnected", "kiosk", k.ID)
}

func (s *Server) touch(kioskID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Store.TouchKiosk(ctx, kioskID, s.cfg.Now()); err != nil {
		s.cfg.Log.Warn("record kiosk last-seen", "kiosk", kioskID, "err", err)
	}
}

// hello builds the first frame for a kiosk.
func (s *Server) hello(ctx context.Context, k store.Kiosk) (protocol.Hello, error) {
	ms, err := s.cfg.Store.ListParticipating(ctx)
	if err != nil {
		return protocol.Hello{}, err
	}
	h := protocol.Hello{
		ProtocolVersion:  protocol.Version,
		KioskID:          k.ID,
		Time:             s.cfg.Now().Format(time.RFC3339),
		FeePerCopyYen:    s.cfg.Issuer.FeePerCopyYen(),
		Kinds:            s.cfg.Issuer.Kinds(),
		MaxCopies:        protocol.MaxCopies,
		HeartbeatSeconds: int(s.cfg.Heartbeat / time.Second),
	}
	if h.HeartbeatSeconds < 1 {
		h.HeartbeatSeconds = 1
	}
	for _, m := range ms {
		h.Municipalities = append(h.Municipalities, protocol.Municipality{Code: m.Code, NameJa: m.NameJa, NameEn: m.NameEn})
	}
	return h, nil
}

// Shutdown stops admitting issues, waits for those in flight (or ctx),
// then closes every kiosk connection. Kiosks reconnect to another instance
// or when this one is back.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("server: shutdown with issuances still running: %w", ctx.Err())
	}
	s.mu.Lock()
	for c := range s.conns {
		c.closeGoingAway()
	}
	s.mu.Unlock()
	s.pending.clear()
	return err
}

// Live returns the live status of every kiosk seen since start.
func (s *Server) Live() []KioskLive { return s.live.list() }

// PendingRequests returns how many requests await an outcome report.
func (s *Server) PendingRequests() int { return s.pending.size() }

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

func itoa(n int) string { return strconv.Itoa(n) }
