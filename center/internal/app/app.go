// Package app wires a running issuance center from its configuration: it
// opens the backend (store and records), loads the signing keys as
// crypto.Signers, builds the issuance service and the operator service, and
// serves three listeners — the kiosk websocket (mutual TLS), the public
// issuer endpoints (JWKS, CRL) and the operations API (metrics, live
// status, statistics, audit, operator actions). It also runs the center's
// housekeeping: key refresh (a rotation made on another instance) and the
// request register's expiry.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/auditlog"
	"github.com/kioskcert/kioskcert/center/internal/backend"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/enrollment"
	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/opsapi"
	"github.com/kioskcert/kioskcert/center/internal/publicapi"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

// Housekeeping intervals.
const (
	// KeyRefreshInterval bounds how long a key rotated on another instance
	// takes to be used here.
	KeyRefreshInterval = 10 * time.Second
	// ExpireInterval is how often replays and old requests are expired.
	ExpireInterval = time.Minute
	// CheckpointInterval is how often the audit log's head is signed.
	CheckpointInterval = time.Minute
)

// Center is an opened issuance center.
type Center struct {
	Config  *config.Config
	Store   store.Store
	Backend *backend.Backend
	Keys    keyring.Keyring
	Signers *keyring.Signers
	Issuer  *issuance.Service
	Admin   *admin.Service
	Server  *server.Server
	// Checkpoints signs the audit log's head (auditlog).
	Checkpoints *auditlog.Checkpointer
	// Enrollment enrolls kiosks by CSR and renews their certificates.
	Enrollment *enrollment.Service

	log       *slog.Logger
	registry  *prometheus.Registry
	listeners map[string]net.Listener
	servers   []*http.Server
	tlsConfig *tls.Config
	enrollTLS *tls.Config
	keysOpen  bool
	public    http.Handler
	ops       http.Handler
}

// Open opens the backend and keys named by cfg and builds the services.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Center, error) {
	c := &Center{Config: cfg, log: log, listeners: map[string]net.Listener{}}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	var err error
	if c.Backend, err = backend.Open(ctx, cfg); err != nil {
		return nil, err
	}
	c.Store = c.Backend.Store
	if c.Keys, err = admin.OpenKeyring(cfg, c.Backend); err != nil {
		return nil, err
	}
	c.keysOpen = true

	trust, err := os.ReadFile(cfg.Path(cfg.CardIssuerKeysFile))
	if err != nil {
		return nil, fmt.Errorf("app: card issuing-authority keys: %w", err)
	}
	issuerKeys, err := carddata.ParseIssuerKeys(trust)
	if err != nil {
		return nil, err
	}
	cards, err := carddata.NewVerifier(issuerKeys...)
	if err != nil {
		return nil, err
	}
	if c.Signers, err = c.Keys.NewSigners(ctx, cfg.IssuerURL, cfg.OverseasEnabled, log); err != nil {
		if errors.Is(err, keyring.ErrNoVDSSigner) {
			return nil, fmt.Errorf("app: overseasEnabled needs the VDS-NC signer: %w", err)
		}
		return nil, err
	}
	var lookups issuance.Records = c.Backend.Records
	if f := cfg.Faults; f.SlowLookupEvery > 0 {
		log.Warn("FAULT INJECTION: slow record lookups (a test setting; remove \"faults\" from the config)", "every", f.SlowLookupEvery, "delay", f.SlowLookupDelay.Duration)
		lookups = &slowLookups{Records: lookups, every: uint64(f.SlowLookupEvery), delay: f.SlowLookupDelay.Duration}
	}
	icfg := issuance.Config{
		Kiosks: c.Store, Municipalities: c.Store, Records: lookups, Register: c.Store,
		Cards: cards, SHC: c.Signers, FeePerCopyYen: cfg.FeePerCopyYen, Log: log,
		// A claim outlives its issuance's deadline before another attempt
		// may take it over.
		ClaimLease: 2 * cfg.IssueTimeout.Duration,
	}
	if vds := c.Signers.VDS(); vds != nil {
		icfg.VDS = vds
	}
	if c.Issuer, err = issuance.New(icfg); err != nil {
		return nil, err
	}
	c.registry = prometheus.NewRegistry()
	c.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	centerCA, err := os.ReadFile(cfg.Path(cfg.KioskCAFile))
	if err != nil {
		return nil, fmt.Errorf("app: kiosk CA certificate: %w", err)
	}
	if c.Enrollment, err = enrollment.New(enrollment.Config{Store: c.Store, IssuingCA: c.Keys.KioskIssuingCA, CenterCA: centerCA, Log: log}); err != nil {
		return nil, err
	}
	lim := cfg.Limits
	c.Server, err = server.New(server.Config{
		Store: c.Store, Issuer: c.Issuer, Heartbeat: cfg.Heartbeat.Duration, IssueTimeout: cfg.IssueTimeout.Duration,
		MaxConns: lim.MaxConns, MaxConnsPerKiosk: lim.MaxConnsPerKiosk, MaxIssuing: lim.MaxIssuing,
		FrameRate: lim.FrameRate, FrameBurst: lim.FrameBurst,
		KioskIssueRate: lim.KioskIssueRate, KioskIssueBurst: lim.KioskIssueBurst,
		DistinctResidentsPerHour: lim.DistinctResidentsPerHour,
		Renewer:                  c.Enrollment,
		Log:                      log, Metrics: server.NewMetrics(c.registry),
	})
	if err != nil {
		return nil, err
	}
	acfg := admin.Config{Store: c.Store, Records: c.Backend.Records, Keys: c.Keys, Center: cfg, KeyBundles: cfg.Demo,
		Kiosks: c.Server, Signers: c.Signers, Log: log}
	if c.Admin, err = admin.New(acfg); err != nil {
		return nil, err
	}
	auditSigner, auditKID, err := c.Keys.AuditSigner(ctx)
	if errors.Is(err, keyring.ErrNoAuditKey) {
		// A center created before the audit chain: make its key now.
		if auditKID, err = c.Keys.CreateAuditKey(ctx, time.Now()); err == nil {
			log.Warn("created the audit checkpoint key (this center predates it)", "kid", auditKID)
			auditSigner, auditKID, err = c.Keys.AuditSigner(ctx)
		}
	}
	if err != nil {
		return nil, err
	}
	c.Checkpoints = &auditlog.Checkpointer{Store: c.Store, Signer: auditSigner, KeyID: auditKID, Log: log}
	if _, err := c.Keys.KioskIssuingCA(ctx); err != nil {
		// The center serves without one, but cannot enroll or renew kiosks.
		log.Warn("no kiosk issuing CA: kiosks can neither enroll nor renew until one is installed (docs/KEYS.md)", "err", err)
	}

	serverCert, err := tls.LoadX509KeyPair(cfg.Path(cfg.ServerCertFile), cfg.Path(cfg.ServerKeyFile))
	if err != nil {
		return nil, fmt.Errorf("app: center TLS certificate (install it with `issuance-center keys install`, docs/KEYS.md): %w", err)
	}
	kioskCA, err := kioskpki.LoadCert(cfg.Path(cfg.KioskCAFile))
	if err != nil {
		return nil, err
	}
	c.tlsConfig = kioskpki.ServerTLS(serverCert, kioskCA, c.Server.CheckKiosk)
	// Kiosks without a certificate enroll here: server authentication only.
	c.enrollTLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{serverCert}}

	rid, err := c.Keys.RidSecret()
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.IssuerURL)
	c.public = publicapi.Handler(u.Path, c.Keys, c.Store, rid, log)
	token, err := readToken(cfg.Path(cfg.OpsTokenFile))
	if err != nil {
		return nil, err
	}
	c.ops = opsapi.Handler(opsapi.Config{Token: token, Store: c.Store, Admin: c.Admin, Live: c.Server, Gatherer: c.registry, Log: log})
	mode := "production (offline authorities)"
	if cfg.Demo {
		mode = "demo (authorities and kiosk key bundles at the center; not for production)"
	}
	log.Info("center opened", "shc_kid", c.Signers.SHCKeyID(), "keys", c.Keys.Source.Describe(), "mode", mode, "overseas", cfg.OverseasEnabled, "issuer", cfg.IssuerURL)
	ok = true
	return c, nil
}

func readToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("app: operator token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("app: %s has mode %04o; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if len(t) < 16 {
		return "", fmt.Errorf("app: operator token in %s is shorter than 16 characters", path)
	}
	return t, nil
}

// Listen opens the three listeners. Addresses with port 0 get a free port;
// Addr reports it.
func (c *Center) Listen() error {
	for name, addr := range map[string]string{"kiosk": c.Config.KioskListen, "public": c.Config.PublicListen, "ops": c.Config.OpsListen, "enroll": c.Config.EnrollListen} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("app: listen %s on %s: %w", name, addr, err)
		}
		c.listeners[name] = l
	}
	return nil
}

// Addr returns the address of listener "kiosk", "public", "ops" or "enroll".
func (c *Center) Addr(name string) string {
	if l, ok := c.listeners[name]; ok {
		return l.Addr().String()
	}
	return ""
}

// Serve serves until ctx ends, then shuts down gracefully: issuances in
// flight finish (up to 15 s), connections close, databases close.
func (c *Center) Serve(ctx context.Context) error {
	if len(c.listeners) == 0 {
		if err := c.Listen(); err != nil {
			return err
		}
	}
	errLog := slog.NewLogLogger(c.log.Handler(), slog.LevelWarn)
	// Every listener has idle and read deadlines: a connection that says
	// nothing is closed. Kiosk websockets, once upgraded, are kept alive by
	// heartbeats instead (server package).
	kiosk := &http.Server{Handler: c.Server.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10, ErrorLog: c.Server.ErrorLog()}
	public := &http.Server{Handler: c.public, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10, ErrorLog: errLog}
	// No overall read or write timeout on operations: a city's ledger
	// import streams for minutes. Idle connections still close.
	ops := &http.Server{Handler: c.ops, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
		MaxHeaderBytes: 16 << 10, ErrorLog: errLog}
	// Kiosks without a certificate enroll here (one small POST each).
	enroll := &http.Server{Handler: c.Enrollment.Handler(), TLSConfig: c.enrollTLS, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10, ErrorLog: errLog}
	kioskListener := c.Server.HandshakeListener(c.listeners["kiosk"], c.tlsConfig, c.Config.Limits.MaxHandshakes)
	defer kioskListener.Wait()
	c.servers = []*http.Server{kiosk, public, ops, enroll}
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}()
	}
	// Housekeeping, joined below before the backend closes.
	hctx, stopHousekeeping := context.WithCancel(context.Background())
	wg.Add(3)
	go func() { defer wg.Done(); c.Checkpoints.Run(hctx, CheckpointInterval) }()
	go func() { defer wg.Done(); c.Signers.Run(hctx, KeyRefreshInterval) }()
	go func() { defer wg.Done(); c.expireLoop(hctx) }()
	run(func() error { return kiosk.Serve(kioskListener) })
	run(func() error { return public.Serve(c.listeners["public"]) })
	run(func() error { return ops.Serve(c.listeners["ops"]) })
	run(func() error { return enroll.ServeTLS(c.listeners["enroll"], "", "") })
	c.log.Info("center serving", "kiosk", c.Addr("kiosk"), "public", c.Addr("public"), "ops", c.Addr("ops"), "enroll", c.Addr("enroll"))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	c.log.Info("center shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.Server.Shutdown(sctx); err != nil {
		c.log.Warn("shutdown", "err", err)
	}
	for _, s := range c.servers {
		s.Shutdown(sctx)
	}
	stopHousekeeping()
	wg.Wait()
	return serveErr
}

// expireLoop expires replays and old requests every ExpireInterval.
func (c *Center) expireLoop(ctx context.Context) {
	t := time.NewTicker(ExpireInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := c.Issuer.Expire(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				c.log.Error("expire requests", "err", err)
			case n > 0:
				c.log.Info("requests forgotten after their retention", "count", n)
			}
		}
	}
}

// Close releases the key source and the backend.
func (c *Center) Close() {
	if c.keysOpen {
		c.Keys.Close()
		c.keysOpen = false
	}
	if c.Backend != nil {
		c.Backend.Close()
	}
}

// slowLookups delays every n-th lookup (config "faults"), honouring the
// request's deadline as a slow records system would.
type slowLookups struct {
	issuance.Records
	every uint64
	delay time.Duration
	n     atomic.Uint64
}

func (s *slowLookups) Lookup(ctx context.Context, municipality, myNumber string) (records.Record, error) {
	if s.n.Add(1)%s.every == 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return records.Record{}, fmt.Errorf("records: lookup: %w", ctx.Err())
		}
	}
	return s.Records.Lookup(ctx, municipality, myNumber)
}
