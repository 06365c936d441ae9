// Package agent wires the kiosk agent from its configuration: the card
// reader, the connection to the issuance center, the certificate renderer,
// the printer and the payment terminal, around the session flow.
//
// The parts a deployment (or a test) wants to supply itself — a virtual
// card slot instead of PC/SC, the store terminal's own payment or printer —
// are passed in Options and take precedence over the configuration.
package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/cardreader/pcsc"
	"github.com/kioskcert/kioskcert/kiosk/internal/centerclient"
	"github.com/kioskcert/kioskcert/kiosk/internal/certpdf"
	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/payment"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

// Options override parts of the configuration.
type Options struct {
	Reader   cardreader.Reader
	Printer  flow.Printer
	Payment  flow.Payment
	Timeouts flow.Timeouts
	Log      *slog.Logger
}

// Agent is a wired kiosk.
type Agent struct {
	Config  *config.Config
	Client  *centerclient.Client
	Kiosk   *flow.Kiosk
	Reader  cardreader.Reader
	Printer flow.Printer
	Payment flow.Payment
	log     *slog.Logger
	closers []func() error
}

// New wires an agent.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	a := &Agent{Config: cfg, log: opts.Log}
	if a.log == nil {
		a.log = slog.Default()
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
	tlsConf, err := clientTLS(cfg)
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
	a.Printer = opts.Printer
	printCode := flow.PrinterErrorCode(PrintCode)
	if a.Printer == nil {
		if a.Printer, printCode, err = openPrinter(cfg.Printer); err != nil {
			return nil, err
		}
	}
	a.Payment = opts.Payment
	if a.Payment == nil {
		a.Payment = payment.NewSimulator()
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
	a.Kiosk, err = flow.New(flow.Config{
		Reader: a.Reader, Verifier: verifier, Center: a.Client, Renderer: renderer,
		Printer: a.Printer, Payment: a.Payment, PrintCode: printCode, Timeouts: timeouts, Log: a.log,
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

func clientTLS(cfg *config.Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.Path(cfg.CertFile), cfg.Path(cfg.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("agent: kiosk certificate: %w", err)
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
	// The center is trusted by the pinned kiosk CA only, never the system roots.
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: name}, nil
}

// Run connects to the center and runs sessions until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.Client.Run(ctx) }()
	go func() { defer wg.Done(); a.reportStatus(ctx) }()
	err := a.Kiosk.Run(ctx)
	wg.Wait()
	return err
}

// Close releases the reader.
func (a *Agent) Close() {
	for _, c := range a.closers {
		if c != nil {
			c()
		}
	}
	a.closers = nil
}
