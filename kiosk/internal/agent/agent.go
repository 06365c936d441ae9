// Package agent wires the kiosk agent from its configuration: the card
// reader, the connection to the issuance center, the certificate renderer,
// the printer and the payment terminal, around the session flow.
//
// The parts a deployment (or a test) wants to supply itself — a virtual
// card slot instead of PC/SC, its own payment or printer — are passed in
// Options and take precedence over the configuration.
//
// With `listen` configured the agent serves the local server
// (kiosk/internal/localapi): the touch screen and, with an `integrator`
// section, the store terminal's integrator API behind a bearer token read
// from a file only the terminal's user can read (LoadToken). Payment mode
// "terminal" and printer kind "terminal" make the terminal software the
// cash register and the printer through that API (kiosk/internal/terminal);
// integrator start "terminal" makes a session wait for the terminal to hand
// over its screen before a card can start it.
package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/cardreader/pcsc"
	"github.com/kioskcert/kioskcert/kiosk/internal/centerclient"
	"github.com/kioskcert/kioskcert/kiosk/internal/certpdf"
	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/identity"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/kiosk/internal/payment"
	"github.com/kioskcert/kioskcert/kiosk/internal/terminal"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Options override parts of the configuration.
type Options struct {
	Reader   cardreader.Reader
	Printer  flow.Printer
	Payment  flow.Payment
	Timeouts flow.Timeouts
	Log      *slog.Logger
	// Sim enables the simulator's control panel on the local server
	// (needs config listen); nil in production.
	Sim *localapi.Sim
	// Clock is the time certificate renewal goes by (the system's if nil).
	Clock Clock
	// RenewCheck is how often the agent checks whether its certificate is
	// due for renewal, besides at every connection (DefaultRenewCheck if 0).
	RenewCheck time.Duration
}

// Agent is a wired kiosk.
type Agent struct {
	Config  *config.Config
	Client  *centerclient.Client
	Kiosk   *flow.Kiosk
	Reader  cardreader.Reader
	Printer flow.Printer
	Payment flow.Payment
	// Terminal is the store terminal's payment and printer plug-in, when
	// the configuration uses either (payment.mode or printer.kind
	// "terminal"); nil otherwise.
	Terminal *terminal.Terminal
	// Server is the local server (touch screen, integrator API), when the
	// configuration sets listen; it is listening once New returns.
	Server *localapi.Server
	// Identity is the kiosk's key and current certificate; the agent
	// renews the certificate over its connection before it expires.
	Identity *identity.Identity

	clock      Clock
	renewEvery time.Duration

	log       *slog.Logger
	closers   []func() error
	gate      *gate // armed mode (integrator start "terminal")
	serveOnce sync.Once

	errMu     sync.Mutex
	lastErr   string
	lastErrAt time.Time
}

// New wires an agent.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	a := &Agent{Config: cfg, log: opts.Log, clock: opts.Clock, renewEvery: opts.RenewCheck}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.clock == nil {
		a.clock = systemClock{}
	}
	if a.renewEvery <= 0 {
		a.renewEvery = DefaultRenewCheck
	}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	trust, err := os.ReadFile(cfg.Path(cfg.CardTrustFile))
	if err != nil {
		return nil, fmt.Errorf("agent: card trust file: %w", err)
	}
	keys, err := carddata.ParseIssuerKeys(trust)
	if err != nil {
		return nil, err
	}
	verifier, err := carddata.NewVerifier(keys...)
	if err != nil {
		return nil, err
	}
	tlsConf, err := a.clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	a.Client = centerclient.New(centerclient.Config{URL: cfg.CenterURL, TLS: tlsConf, Log: a.log})

	a.Reader = opts.Reader
	if a.Reader == nil {
		if cfg.Reader.Kind != "pcsc" {
			return nil, fmt.Errorf("agent: reader kind %q needs a reader supplied by the caller (the virtual card runs in the demo and tests)", cfg.Reader.Kind)
		}
		r, err := pcsc.Open(pcsc.Options{Reader: cfg.Reader.Name, Extended: pcsc.ExtendedMode(cfg.Reader.Extended)})
		if err != nil {
			return nil, err
		}
		a.Reader = r
		a.closers = append(a.closers, r.Close)
	}
	flowReader := a.Reader
	if in := cfg.Integrator; in != nil && in.Start == "terminal" {
		a.gate = newGate(a.Reader)
		flowReader = a.gate
	}
	a.Printer = opts.Printer
	printCode := flow.PrinterErrorCode(PrintCode)
	if a.Printer == nil {
		if cfg.Printer.Kind == "terminal" {
			a.Printer = Printer{P: a.terminal()}
		} else if a.Printer, printCode, err = openPrinter(cfg); err != nil {
			return nil, err
		}
	}
	a.Payment = opts.Payment
	if a.Payment == nil {
		if cfg.Payment.Mode == "terminal" {
			a.Payment = a.terminal()
		} else {
			a.log.Info("payment simulator: fees are approved and not collected (config payment.mode)")
			a.Payment = payment.NewSimulator()
		}
	}
	renderer, err := certpdf.NewRenderer()
	if err != nil {
		return nil, err
	}
	timeouts := opts.Timeouts
	if cfg.InputTimeout.Duration > 0 && timeouts.Input == 0 {
		timeouts.Input = cfg.InputTimeout.Duration
	}
	if cfg.RequestTimeout.Duration > 0 && timeouts.Request == 0 {
		timeouts.Request = cfg.RequestTimeout.Duration
	}
	// The flow reports print and payment failures to the agent too, for
	// the integrator's health (last error).
	noted := func(err error) protocol.Code {
		code := printCode(err)
		a.noteError(string(code))
		return code
	}
	a.Kiosk, err = flow.New(flow.Config{
		Reader: flowReader, Verifier: verifier, Center: a.Client, Renderer: renderer,
		Printer: a.Printer, Payment: notingPayment{a.Payment, a.noteError}, PrintCode: noted, Timeouts: timeouts, Log: a.log,
	})
	if err != nil {
		return nil, err
	}
	if err := a.newServer(cfg, opts); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// terminal returns the store terminal plug-in, making it on first use.
func (a *Agent) terminal() *terminal.Terminal {
	if a.Terminal == nil {
		tc := terminal.Config{Log: a.log}
		if in := a.Config.Integrator; in != nil {
			tc.AckTimeout = in.AckTimeout.Duration
		}
		a.Terminal = terminal.New(tc)
	}
	return a.Terminal
}

// newServer opens the local server when the configuration asks for one.
func (a *Agent) newServer(cfg *config.Config, opts Options) error {
	if cfg.Listen == "" {
		if opts.Sim != nil {
			return fmt.Errorf("agent: the simulator's control panel needs config listen")
		}
		return nil
	}
	sc := localapi.Config{Listen: cfg.Listen, Kiosk: a.Kiosk, Sim: opts.Sim, Log: a.log}
	if in := cfg.Integrator; in != nil {
		tok, err := LoadToken(cfg.Path(in.TokenFile))
		if err != nil {
			return err
		}
		a.log.Info("integrator API enabled", "tokenFile", cfg.Path(in.TokenFile), "payment", cfg.Payment.Mode, "printer", cfg.Printer.Kind)
		integ := &localapi.Integrator{Terminal: a.Terminal, Health: a.IntegratorHealth}
		if a.gate != nil {
			integ.Starter = a.gate
		}
		sc.Token, sc.Integrator = tok, integ
	}
	srv, err := localapi.New(sc)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	a.Server = srv
	a.closers = append(a.closers, func() error {
		// Never served: serving with a finished context closes the listener.
		a.serveOnce.Do(func() {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			srv.Serve(ctx)
		})
		return nil
	})
	return nil
}

func (a *Agent) clientTLS(cfg *config.Config) (*tls.Config, error) {
	// The key may be in the TPM: it is opened as a crypto.Signer.
	key, err := identity.OpenKey(cfg.Path(cfg.KeyFile), cfg.TPM)
	if err != nil {
		return nil, fmt.Errorf("agent: kiosk key: %w", err)
	}
	a.closers = append(a.closers, key.Close)
	if a.Identity, err = identity.Load(cfg.Path(cfg.CertFile), key); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	pool, err := loadPool(cfg.Path(cfg.CenterCAFile))
	if err != nil {
		return nil, err
	}
	name := cfg.CenterServerName
	if name == "" {
		u, _ := url.Parse(cfg.CenterURL)
		name = u.Hostname()
	}
	// The center is trusted by the pinned kiosk CA only, never the system
	// roots. The certificate is asked for at each handshake: a renewed one
	// is used from the next connection.
	return &tls.Config{MinVersion: tls.VersionTLS13, GetClientCertificate: a.Identity.GetClientCertificate, RootCAs: pool, ServerName: name}, nil
}

// Run connects to the center, serves the local server (if configured) and
// runs sessions until ctx ends, or until the local server fails.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); a.Client.Run(ctx) }()
	go func() { defer wg.Done(); a.keepRenewed(ctx) }()
	go func() { defer wg.Done(); a.reportStatus(ctx) }()
	go func() { defer wg.Done(); a.watchErrors(ctx) }()
	var serveErr error
	if a.Server != nil {
		a.serveOnce.Do(func() {
			wg.Add(1)
			a.log.Info("local server listening", "url", a.Server.URL())
			go func() {
				defer wg.Done()
				if err := a.Server.Serve(ctx); err != nil {
					serveErr = err
					cancel()
				}
			}()
		})
	}
	err := a.Kiosk.Run(ctx)
	if a.Terminal != nil {
		// End the terminal's event streams, so the server can shut down.
		a.Terminal.Close()
	}
	wg.Wait()
	if serveErr != nil {
		return serveErr
	}
	return err
}

// Close releases the reader and the local server's listener.
func (a *Agent) Close() {
	for _, c := range a.closers {
		if c != nil {
			c()
		}
	}
	a.closers = nil
}
