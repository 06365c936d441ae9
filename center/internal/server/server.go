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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/refusal"
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

// Config wires a Server. Every limit has a default; docs/PROTOCOL.md lists
// them with the error each answers.
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
	// MaxConns bounds kiosk connections in total (503 beyond). Default
	// 20,000, about what one process's 20,000 open files allow.
	MaxConns int
	// MaxConnsPerKiosk: a kiosk opening one more closes its oldest.
	// Default 2 (a reconnect may overlap the old connection's timeout).
	MaxConnsPerKiosk int
	// MaxIssuing bounds issuances running at once across all kiosks; a
	// request that finds no slot within QueueWait is answered busy with a
	// retry-after. Default 128: enough to keep the CPUs busy while others
	// wait for their commit, few enough that a queue never outgrows a
	// request's deadline. QueueWait defaults to 20 ms.
	MaxIssuing int
	QueueWait  time.Duration
	// FrameRate and FrameBurst bound the frames a connection may send (a
	// kiosk sends a few a minute). Frames beyond are dropped; a connection
	// over the limit for FloodGrace is closed. Defaults 20/s, 40, 5 s.
	FrameRate  float64
	FrameBurst int
	FloodGrace time.Duration
	// KioskIssueRate and KioskIssueBurst bound the new requests one kiosk
	// may send (retries of its last request are free); rate_limited beyond.
	// Defaults 0.2/s (one every 5 s: a resident's session takes longer)
	// and 10.
	KioskIssueRate  float64
	KioskIssueBurst int
	// DistinctResidentsPerHour flags a kiosk that asks for more different
	// cards than this in an hour (copied card files). Default 30.
	DistinctResidentsPerHour int
	// Renewer certifies a kiosk's key anew (Renew messages); nil refuses
	// renewal.
	Renewer Renewer
	Now     func() time.Time
	Log     *slog.Logger
	Metrics *Metrics
}

func (cfg *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Heartbeat, 15*time.Second)
	def(&cfg.IssueTimeout, 10*time.Second)
	def(&cfg.QueueWait, 20*time.Millisecond)
	def(&cfg.FloodGrace, 5*time.Second)
	defInt(&cfg.MaxInFlight, 2)
	defInt(&cfg.MaxConns, 20000)
	defInt(&cfg.MaxConnsPerKiosk, 2)
	defInt(&cfg.MaxIssuing, 128)
	defInt(&cfg.FrameBurst, 40)
	defInt(&cfg.KioskIssueBurst, 10)
	defInt(&cfg.DistinctResidentsPerHour, 30)
	if cfg.FrameRate <= 0 {
		cfg.FrameRate = 20
	}
	if cfg.KioskIssueRate <= 0 {
		cfg.KioskIssueRate = 0.2
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
}

// Server serves kiosk connections.
type Server struct {
	cfg      Config
	upgrader websocket.Upgrader
	live     *liveStatus
	kiosks   *kiosks
	pinger   *pinger
	sampled  *sampledLog
	issuing  chan struct{} // MaxIssuing slots
	// base is the parent of every request's context: Shutdown cancels it
	// once issuances in flight have had their grace period.
	base       context.Context
	cancelBase context.CancelFunc
	stopPing   chan struct{}
	pingDone   chan struct{}

	mu       sync.Mutex
	draining bool
	conns    map[*conn]struct{}
	inflight sync.WaitGroup
	// connWG counts connection goroutines; Shutdown waits for them.
	connWG sync.WaitGroup
	// inflightN counts issuances running, for the operators' view.
	inflightN atomic.Int64
}

// writeBuffers lends connections a write buffer only while they write.
var writeBuffers sync.Pool

// New returns a Server and starts its heartbeat; Shutdown stops it.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Issuer == nil {
		return nil, errors.New("server: store and issuer are required")
	}
	cfg.defaults()
	base, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:        cfg,
		base:       base,
		cancelBase: cancel,
		live:       newLiveStatus(),
		kiosks:     newKiosks(cfg.KioskIssueRate, cfg.KioskIssueBurst, cfg.MaxConnsPerKiosk),
		pinger:     newPinger(cfg.Heartbeat),
		sampled:    newSampledLog(cfg.Log, 10*time.Second, cfg.Metrics.warnings),
		issuing:    make(chan struct{}, cfg.MaxIssuing),
		stopPing:   make(chan struct{}),
		pingDone:   make(chan struct{}),
		conns:      map[*conn]struct{}{},
		upgrader: websocket.Upgrader{
			HandshakeTimeout: 10 * time.Second,
			// A small read buffer of the connection's own (frames larger
			// than it are read in pieces) and a write buffer borrowed for
			// each write: an idle connection holds 512 bytes, not 8 KiB.
			ReadBufferSize:  512,
			WriteBufferSize: 4096,
			WriteBufferPool: &writeBuffers,
			// Kiosk agents are not browsers: a request carrying an Origin
			// comes from a web page and is refused.
			CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "" },
		},
	}
	go func() {
		defer close(s.pingDone)
		sweep := time.Now()
		s.pinger.run(s.stopPing, func() {
			if now := time.Now(); now.Sub(sweep) > time.Minute {
				sweep = now
				s.kiosks.sweep(s.cfg.Now())
			}
		})
	}()
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
		s.sampled.Warn(kioskID+reason, "kiosk refused", "kiosk", kioskID, "fingerprint", fingerprint, "reason", reason)
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
	draining, full := s.draining, len(s.conns) >= s.cfg.MaxConns
	s.mu.Unlock()
	switch {
	case draining:
		http.Error(w, "center is shutting down", http.StatusServiceUnavailable)
		return
	case full:
		s.cfg.Metrics.limited.WithLabelValues("connections").Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "center at its connection limit", http.StatusServiceUnavailable)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.sampled.Warn(k.ID, "websocket upgrade failed", "kiosk", k.ID, "err", err)
		return
	}
	c := newConn(s, ws, k, nil)
	c.counterNames = slices.Contains(protocol.KioskFeatures(r.Header.Get(protocol.HeaderKioskFeatures)), protocol.KioskFeatureCounter)
	ks, evict := s.kiosks.attach(c, s.cfg.Now())
	c.kstate = ks
	for _, old := range evict {
		s.cfg.Metrics.limited.WithLabelValues("connections_per_kiosk").Inc()
		go old.closeWith(websocket.ClosePolicyViolation, "replaced by a newer connection of this kiosk")
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.pinger.add(c)
	s.cfg.Metrics.connected.Inc()
	s.live.connected(k.ID, leaf, s.cfg.Now())
	s.touch(k.ID)

	// The connection gets a goroutine of its own and this handler returns:
	// the HTTP server's per-connection state (its buffers, the upgrade
	// request, a deep stack) is then garbage, and an idle kiosk costs one
	// small goroutine and its websocket and TLS state only.
	s.connWG.Add(1)
	go func() {
		defer s.connWG.Done()
		c.run()
		s.pinger.remove(c)
		s.kiosks.detach(c)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.cfg.Metrics.connected.Dec()
		s.live.disconnected(k.ID, s.cfg.Now())
	}()
}

// issue runs one request under the server's capacity: a request that finds
// every slot taken for QueueWait is answered busy at once, rather than
// queued past its deadline.
func (s *Server) issue(req protocol.Issue, kioskID string) (*protocol.CertificateResponse, error) {
	wait := time.NewTimer(s.cfg.QueueWait)
	select {
	case s.issuing <- struct{}{}:
		wait.Stop()
	case <-wait.C:
		s.cfg.Metrics.limited.WithLabelValues("busy").Inc()
		return nil, refusal.WithDetail(protocol.CodeBusy, "the center is at capacity; retry after retryAfterMs", nil)
	}
	defer func() { <-s.issuing }()
	ctx, cancel := context.WithTimeout(s.base, s.cfg.IssueTimeout)
	defer cancel()
	resp, err := s.cfg.Issuer.Issue(ctx, issuance.Request{KioskID: kioskID, Issue: req})
	if err == nil && !resp.Replayed {
		if ks := s.kiosks.get(kioskID); ks != nil {
			if crossed, n := ks.noteResident(resp.CardDigest, s.cfg.DistinctResidentsPerHour, s.cfg.Now()); crossed {
				s.cfg.Metrics.flagged.Inc()
				s.cfg.Log.Warn("kiosk flagged: many different residents within an hour (copied card files?)", "kiosk", kioskID, "distinct_residents", n)
				s.live.flag(kioskID, true)
			}
		}
	}
	return resp, err
}

// retryAfter is how long a busy kiosk should wait: longer the fuller the
// queue, so retries spread out while the center catches up.
func (s *Server) retryAfter() int {
	load := float64(len(s.issuing)) / float64(cap(s.issuing))
	return int(200 + 800*load) // ms; the kiosk adds jitter
}

func (s *Server) touch(kioskID string) {
	ctx, cancel := context.WithTimeout(s.base, 2*time.Second)
	defer cancel()
	if err := s.cfg.Store.TouchKiosk(ctx, kioskID, s.cfg.Now()); err != nil {
		s.cfg.Log.Warn("record kiosk last-seen", "kiosk", kioskID, "err", err)
	}
}

// hello builds the first frame for a kiosk. counterNames: the kiosk
// decodes the municipalities' counter names (protocol.KioskFeatureCounter);
// an older kiosk would drop a hello that carries them.
func (s *Server) hello(ctx context.Context, k store.Kiosk, counterNames bool) (protocol.Hello, error) {
	ms, err := s.cfg.Store.ListMunicipalities(ctx)
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
	if _, ok := s.cfg.Issuer.(Checker); ok {
		h.Features = append(h.Features, protocol.FeatureCheck)
	}
	for _, m := range ms {
		pm := protocol.Municipality{Code: m.Code, NameJa: m.NameJa, NameEn: m.NameEn, Kana: m.Kana, Kind: m.Kind}
		if m.Participating {
			if counterNames {
				pm.CounterJa, pm.CounterEn = m.CounterJa, m.CounterEn
			}
			h.Municipalities = append(h.Municipalities, pm)
		} else {
			h.NotParticipating = append(h.NotParticipating, pm)
		}
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
	already := s.draining
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
	if !already {
		close(s.stopPing)
		<-s.pingDone
	}
	s.closeConns(func(*conn) bool { return true }, "center shutting down")
	s.connWG.Wait()
	return err
}

// CloseKiosk closes every connection of one kiosk (suspended or revoked by
// an operator) and returns how many it closed. The kiosk's reconnection is
// refused at the handshake by its status.
func (s *Server) CloseKiosk(kioskID string) int {
	return s.closeConns(func(c *conn) bool { return c.kiosk.ID == kioskID }, "kiosk no longer allowed")
}

// closeConns closes the matching connections in parallel and waits.
func (s *Server) closeConns(match func(*conn) bool, reason string) int {
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
		go func() { defer wg.Done(); c.closeGoingAway(reason) }()
	}
	wg.Wait()
	return len(victims)
}

// Connections returns how many kiosk connections are open.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
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
