// Package app wires a running issuance center from its configuration: it
// opens the backend (store and records), loads the signing keys as
// crypto.Signers, builds the issuance service and the operator service, and
// serves three listeners — the kiosk websocket (mutual TLS), the public
// issuer endpoints (JWKS, CRL) and the operations API (metrics, live
// status, statistics, audit, operator actions). It also runs the center's
// housekeeping: key refresh (a rotation made on another instance) and the
// request register's expiry.
//
// # Several instances
//
// Instances sharing one PostgreSQL store learn of each other's changes
// through the store's change feed (store.Notifier, LISTEN/NOTIFY): a kiosk
// suspended or revoked through any instance loses its connections on every
// instance as soon as the notification arrives (milliseconds), and a
// signing key rotated on any instance is loaded at once. The polling below
// stays as the backstop (keys every KeyRefreshInterval); municipalities
// are read from the store on every request. Each instance has an ID
// (config instanceId) in its logs, its operations view and in the metric
// kioskcert_center_instance_info{center_instance, store}.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/auditlog"
	"github.com/kioskcert/kioskcert/center/internal/backend"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/console"
	"github.com/kioskcert/kioskcert/center/internal/enrollment"
	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/opsapi"
	"github.com/kioskcert/kioskcert/center/internal/publicapi"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/protocol"
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
	Auth    *opauth.Authenticator
	// Now is the clock of the operators' logins and console sessions;
	// tests may replace it before Serve.
	Now func() time.Time
	// Checkpoints signs the audit log's head (auditlog).
	Checkpoints *auditlog.Checkpointer
	// Enrollment enrolls kiosks by CSR and renews their certificates.
	Enrollment *enrollment.Service
	// Instance is this instance's ID (config.Config.Instance).
	Instance string

	log       *slog.Logger
	registry  *prometheus.Registry
	listeners map[string]net.Listener
	servers   []*http.Server
	tlsConfig *tls.Config
	enrollTLS *tls.Config
	keysOpen  bool
	public    http.Handler
	ops       http.Handler
	metrics   http.Handler
	// Console is the operations console (nil when consoleListen is empty).
	Console    *console.Console
	consoleTLS *tls.Config
}

// Open opens the backend and keys named by cfg and builds the services.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Center, error) {
	instance := cfg.Instance()
	log = log.With("instance", instance)
	c := &Center{Config: cfg, Instance: instance, log: log, listeners: map[string]net.Listener{}, Now: time.Now}
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
	c.registry = prometheus.NewRegistry()
	// Metrics keep their names and labels on every instance (Prometheus's
	// target label tells scrapes apart; sums run across them); one info
	// series names this instance.
	reg := c.registry
	auditFailures := prometheus.NewCounter(prometheus.CounterOpts{Name: "kioskcert_center_audit_write_failures_total",
		Help: "Audit and settlement events the store failed to record."})
	reg.MustRegister(auditFailures)
	if cs, ok := c.Backend.Store.(interface {
		CommitStats() (commits, writes int64, seconds float64)
	}); ok {
		// The group commit's work: writes per commit show the grouping,
		// seconds per commit the disk.
		stat := func(i int) func() float64 {
			return func() float64 {
				c, w, s := cs.CommitStats()
				return [3]float64{float64(c), float64(w), s}[i]
			}
		}
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kioskcert_center_store_commits_total", Help: "Store transactions committed on the issuance path (group commit)."}, stat(0)),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kioskcert_center_store_commit_writes_total", Help: "Writes carried by those transactions."}, stat(1)),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kioskcert_center_store_commit_seconds_total", Help: "Time spent committing them (work and fsync)."}, stat(2)),
		)
	}
	c.Store = auditCounting{Store: c.Backend.Store, failures: auditFailures}
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
		Kiosks: c.Store, Municipalities: c.Store, Records: lookups, Register: c.Store, Audit: c.Store,
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
	certs := map[string]string{"center_tls": cfg.Path(cfg.ServerCertFile), "kiosk_ca": cfg.Path(cfg.KioskCAFile)}
	if cfg.ConsoleListen != "" {
		certs["console_tls"] = cfg.Path(cfg.ConsoleCertFile)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newExpiryCollector(c.Store, certs))
	storeKind, _ := cfg.StoreLocation()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kioskcert_center_instance_info", Help: "Always 1; labels name this center instance and its store.",
		ConstLabels: prometheus.Labels{"center_instance": instance, "store": storeKind},
	}, func() float64 { return 1 }))
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
		Log:                      log, Metrics: server.NewMetrics(reg),
	})
	if err != nil {
		return nil, err
	}
	acfg := admin.Config{Store: c.Store, Records: c.Backend.Records, Keys: c.Keys, Center: cfg, KeyBundles: cfg.Demo,
		Kiosks: c.Server, Signers: c.Signers, Log: log}
	if acfg.Sealer, err = opauth.LoadOrCreateSealer(cfg.Path(cfg.OperatorKeyFile)); err != nil {
		return nil, err
	}
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
	c.Auth = &opauth.Authenticator{Store: c.Store, Sealer: acfg.Sealer, Now: func() time.Time { return c.Now() }}
	if err := c.adoptLegacyToken(ctx); err != nil {
		return nil, err
	}
	c.ops = opsapi.Handler(opsapi.Config{Auth: c.Auth, Instance: instance, Store: c.Store, Admin: c.Admin, Accounts: c.Admin, Live: c.Server, Gatherer: c.registry, Log: log})
	c.metrics = promhttp.HandlerFor(c.registry, promhttp.HandlerOpts{})
	if err := c.openConsole(u.Path); err != nil {
		return nil, err
	}
	mode := "production (offline authorities)"
	if cfg.Demo {
		mode = "demo (authorities and kiosk key bundles at the center; not for production)"
	}
	log.Info("center opened", "shc_kid", c.Signers.SHCKeyID(), "keys", c.Keys.Source.Describe(), "mode", mode, "overseas", cfg.OverseasEnabled, "issuer", cfg.IssuerURL)
	ok = true
	return c, nil
}

// LegacyTokenOperator is the account a center made before operator
// accounts existed gets for its shared keys/ops.token, so its scripts keep
// working until each operator has a token of their own.
const LegacyTokenOperator = "legacy-ops-token"

// adoptLegacyToken registers a shared token file from before operator
// accounts (one whose hash the store does not know) under
// LegacyTokenOperator, and says to replace it.
func (c *Center) adoptLegacyToken(ctx context.Context) error {
	path := c.Config.Path(c.Config.OpsTokenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("app: operator token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return nil
	}
	if _, err := c.Store.APITokenByHash(ctx, opauth.HashToken(tok)); err == nil || !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := c.Now()
	if _, err := c.Store.Operator(ctx, LegacyTokenOperator); errors.Is(err, store.ErrNotFound) {
		if err := c.Store.CreateOperator(ctx, store.Operator{ID: LegacyTokenOperator, Role: store.RoleAdministrator, Created: now, Updated: now}); err != nil {
			return err
		}
	}
	if err := c.Store.PutAPIToken(ctx, store.APIToken{ID: "tok-legacy", Operator: LegacyTokenOperator, SHA256: opauth.HashToken(tok), Label: "legacy", Created: now}); err != nil {
		return fmt.Errorf("app: adopt the shared operator token: %w", err)
	}
	c.log.Warn("the shared operator token in " + path + " now acts as operator " + LegacyTokenOperator +
		": give each operator an account and a token (issuance-center operator add / operator token), then revoke tok-legacy")
	return nil
}

// openConsole builds the operations console when it has an address.
func (c *Center) openConsole(prefix string) error {
	cfg := c.Config
	if cfg.ConsoleListen == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.Path(cfg.ConsoleCertFile), cfg.Path(cfg.ConsoleKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		// A production center waits for its console certificate
		// (pki/console.csr, signed by the organisation's CA).
		c.log.Error("console off: its TLS certificate is not installed yet", "consoleCertFile", cfg.Path(cfg.ConsoleCertFile), "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("app: console TLS certificate (consoleCertFile, consoleKeyFile): %w", err)
	}
	c.consoleTLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	prefix = strings.TrimSuffix(prefix, "/")
	c.Console, err = console.New(console.Config{
		Store: c.Store, Admin: c.Admin, Auth: c.Auth, Live: c.Server, Gatherer: c.registry,
		Public:        c.publicGet,
		JWKSPath:      prefix + "/.well-known/jwks.json",
		CRLPath:       func(kid string) string { return prefix + "/.well-known/crl/" + kid + ".json" },
		FeePerCopyYen: cfg.FeePerCopyYen, Kinds: c.Issuer.Kinds(), MaxCopies: protocol.MaxCopies,
		SessionIdle: cfg.ConsoleSessionIdle.Duration, SessionMax: cfg.ConsoleSessionMax.Duration,
		Now: func() time.Time { return c.Now() }, Log: c.log,
	})
	return err
}

// publicGet answers a GET of the public endpoints in process: the console
// shows the JWKS and revocation lists exactly as served.
func (c *Center) publicGet(ctx context.Context, path string) (int, []byte) {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	rec := httptest.NewRecorder()
	c.public.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// Listen opens the three listeners. Addresses with port 0 get a free port;
// Addr reports it.
func (c *Center) Listen() error {
	addrs := map[string]string{"kiosk": c.Config.KioskListen, "public": c.Config.PublicListen, "ops": c.Config.OpsListen, "enroll": c.Config.EnrollListen}
	if c.Console != nil {
		addrs["console"] = c.Config.ConsoleListen
	}
	if c.Config.MetricsListen != "" {
		addrs["metrics"] = c.Config.MetricsListen
	}
	for name, addr := range addrs {
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
	var consoleSrv, metricsSrv *http.Server
	if l := c.listeners["console"]; l != nil {
		consoleSrv = &http.Server{Handler: c.Console.Handler(), TLSConfig: c.consoleTLS, ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10, ErrorLog: errLog}
		c.servers = append(c.servers, consoleSrv)
	}
	if l := c.listeners["metrics"]; l != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", c.metrics)
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, ErrorLog: errLog}
		c.servers = append(c.servers, metricsSrv)
	}
	errs := make(chan error, len(c.servers))
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
	if n, ok := c.Backend.Store.(store.Notifier); ok {
		wg.Add(1)
		go func() { defer wg.Done(); n.WatchChanges(hctx, func(ch store.Change) { c.onChange(hctx, ch) }) }()
	}
	run(func() error { return kiosk.Serve(kioskListener) })
	run(func() error { return public.Serve(c.listeners["public"]) })
	run(func() error { return ops.Serve(c.listeners["ops"]) })
	// The console's live sampler; its end also ends the live pages' event
	// streams, so it stops before the servers shut down.
	cctx, stopConsole := context.WithCancel(context.Background())
	defer stopConsole()
	if consoleSrv != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.Console.Run(cctx) }()
		run(func() error { return consoleSrv.ServeTLS(c.listeners["console"], "", "") })
	}
	if metricsSrv != nil {
		run(func() error { return metricsSrv.Serve(c.listeners["metrics"]) })
	}
	run(func() error { return enroll.ServeTLS(c.listeners["enroll"], "", "") })
	c.log.Info("center serving", "kiosk", c.Addr("kiosk"), "public", c.Addr("public"), "ops", c.Addr("ops"), "enroll", c.Addr("enroll"),
		"console", c.Addr("console"), "metrics", c.Addr("metrics"))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	c.log.Info("center shutting down")
	stopConsole()
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

// onChange acts on a change committed by any instance (store.Notifier).
func (c *Center) onChange(ctx context.Context, ch store.Change) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	switch ch.Kind {
	case store.ChangeKiosk:
		c.checkKiosk(ctx, ch.ID)
	case store.ChangeSigningKey:
		c.refreshKeys(ctx)
	case store.ChangeResync:
		// Changes may have been missed while the feed was down: check
		// every connected kiosk and the keys again.
		for _, k := range c.Server.Live() {
			if k.Connected {
				c.checkKiosk(ctx, k.KioskID)
			}
		}
		c.refreshKeys(ctx)
	}
}

// checkKiosk closes the connections of a kiosk that is no longer active.
func (c *Center) checkKiosk(ctx context.Context, id string) {
	k, err := c.Store.Kiosk(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		c.log.Warn("kiosk changed elsewhere: lookup failed", "kiosk", id, "err", err)
		return
	case k.Status == store.KioskActive:
		return
	}
	if n := c.Server.CloseKiosk(id); n > 0 {
		c.log.Info("kiosk connections closed after a status change", "kiosk", id, "status", k.Status, "connections", n)
	}
}

func (c *Center) refreshKeys(ctx context.Context) {
	if changed, err := c.Signers.Refresh(ctx); err != nil {
		c.log.Error("refresh signing keys after a change", "err", err)
	} else if changed {
		c.log.Info("signing keys reloaded after a change")
	}
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
