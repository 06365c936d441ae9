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
// The handler never holds a signing key and keeps no request state: it
// hands requests and outcome reports to issuance.Service, whose register in
// the store answers a retry after a dropped connection (on this instance or
// another) with the same certificate rather than a second one. It is the
// edge where refusals become protocol errors (refusal.Public): no internal
// error text reaches a kiosk.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Path is where kiosks connect.
const Path = "/v1/kiosk"

// Issuer issues certificates and settles their outcomes
// (issuance.Service). Errors carry refusal codes (center/internal/refusal).
type Issuer interface {
	Issue(ctx context.Context, req issuance.Request) (*protocol.CertificateResponse, error)
	Settle(ctx context.Context, kioskID, storeCode string, o protocol.Outcome) error
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
	// MaxInFlight bounds concurrent issues per kiosk connection. Default 2.
	MaxInFlight int
	Now         func() time.Time
	Log         *slog.Logger
	Metrics     *Metrics
}

// Server serves kiosk connections.
type Server struct {
	cfg      Config
	upgrader websocket.Upgrader
	live     *liveStatus
	// base is the parent of every request's context: Shutdown cancels it
	// once issuances in flight have had their grace period.
	base       context.Context
	cancelBase context.CancelFunc

	mu       sync.Mutex
	draining bool
	conns    map[*conn]struct{}
	inflight sync.WaitGroup
	// inflightN counts issuances running, for the operators' view.
	inflightN atomic.Int64
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
	base, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:        cfg,
		base:       base,
		cancelBase: cancel,
		live:       newLiveStatus(),
		conns:      map[*conn]struct{}{},
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
	ctx, cancel := context.WithTimeout(s.base, 5*time.Second)
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
	ctx, cancel := context.WithTimeout(s.base, 2*time.Second)
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

// Shutdown stops admitting issues, waits for those in flight (or ctx; then
// it cancels them: each releases its claim, so the kiosk's retry runs
// again elsewhere), then closes every kiosk connection, all at once and
// outside the lock, so one stalled kiosk does not hold up the others.
// Kiosks reconnect to another instance or when this one is back.
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
		s.cancelBase()
		<-done
	}
	s.cancelBase()
	s.closeConns(func(*conn) bool { return true })
	return err
}

// CloseKiosk closes every connection of one kiosk (suspended or revoked by
// an operator) and returns how many it closed. The kiosk's reconnection is
// refused at the handshake by its status.
func (s *Server) CloseKiosk(kioskID string) int {
	return s.closeConns(func(c *conn) bool { return c.kiosk.ID == kioskID })
}

// closeConns closes the matching connections in parallel and waits.
func (s *Server) closeConns(match func(*conn) bool) int {
	s.mu.Lock()
	var victims []*conn
	for c := range s.conns {
		if match(c) {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range victims {
		wg.Add(1)
		go func() { defer wg.Done(); c.closeGoingAway() }()
	}
	wg.Wait()
	return len(victims)
}

// Live returns the live status of every kiosk seen since start.
func (s *Server) Live() []KioskLive { return s.live.list() }

// KioskLive returns one kiosk's live status, if it was seen since start.
func (s *Server) KioskLive(id string) (KioskLive, bool) { return s.live.one(id) }

// InFlight returns how many issuances are running now.
func (s *Server) InFlight() int { return int(s.inflightN.Load()) }

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

func itoa(n int) string { return strconv.Itoa(n) }
