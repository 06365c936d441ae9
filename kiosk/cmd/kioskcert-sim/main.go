// Command kioskcert-sim runs the kiosk in simulator mode (`make run`): a
// demo issuance center (the issuance-center binary next to this one, in its
// own process), a virtual card reader and the kiosk agent with its touch
// screen, on this machine. Open the printed URL in a browser: the control
// panel at /sim/ shows the kiosk screen and lets you place a demo
// resident's card on the reader, take it off, approve or decline the
// payment, and make the next print fail. Printed certificates land as PDFs
// in <out>/spool/. It runs until Ctrl-C.
//
// The integrator API (docs/INTEGRATION.md) is on, with its bearer token in
// <out>/integrator.token (the path is printed at start). With -terminal the
// store terminal's software (bin/example-integrator) collects the fee and
// prints instead of the panel.
//
//	kioskcert-sim [-listen 127.0.0.1:8800] [-out out/sim] [-auto-pay] [-terminal] [-center bin/issuance-center] [-keys auto|softhsm|file]
//
// The demo center keeps its signing keys in a SoftHSM2 token when SoftHSM2
// is installed (and the center binary has PKCS#11 support), in files
// otherwise, and says which at start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/kiosk/internal/demo"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
)

const kioskID = "KIOSK-SIM-0001"

func main() {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:8800", "loopback address of the kiosk screen")
	flag.StringVar(&o.out, "out", "out/sim", "working directory: demo keys, center data, printed PDFs (replaced)")
	flag.StringVar(&o.center, "center", "", "issuance-center binary (default: next to this program, pkcs11/issuance-center first)")
	flag.StringVar(&o.keys, "keys", demo.KeysAuto, "where the demo center's signing keys live: auto (SoftHSM2 if installed), softhsm or file")
	flag.BoolVar(&o.autoPay, "auto-pay", false, "approve payments at once instead of waiting for the panel")
	flag.BoolVar(&o.terminal, "terminal", false, "the integrator (bin/example-integrator) takes the payment and prints, instead of the panel")
	verbose := flag.Bool("v", false, "log every session (session IDs and results only)")
	flag.Parse()
	if o.center == "" {
		self, err := os.Executable()
		if err != nil {
			fail(err)
		}
		o.center = demo.DefaultCenter(self, o.keys)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	o.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sim, err := start(ctx, o)
	if err != nil {
		fail(err)
	}
	fmt.Printf(`
kioskcert simulator is running.
  %ssim/   control panel: the kiosk screen, card reader, payment and printer
  %s       the kiosk screen alone, as the kiosk's browser shows it
  %s       printed certificates (PDF)
Demo residents and their PINs are listed on the panel (assets/demo/README.md).

Integrator API (docs/INTEGRATION.md): bearer token in %s
  curl -H "Authorization: Bearer $(cat %s)" %sapi/v1/integrator/health
  bin/example-integrator -url %s -token-file %s -out %s

Operations console (demo only; its certificate is the demo center's own):
  %s
  operator ID  %s
  password     %s
  TOTP secret  %s   (add it to an authenticator app, or: oathtool --totp -b %s)
  TOTP URI     %s
Press Ctrl-C to stop.
`, sim.url, sim.url, sim.spool, sim.token, sim.token, sim.url, strings.TrimSuffix(sim.url, "/"), sim.token, sim.paper,
		sim.center.ConsoleURL, sim.center.Admin.ID, sim.center.Admin.Password,
		sim.center.Admin.TOTPSecret, sim.center.Admin.TOTPSecret, sim.center.Admin.TOTPURI)
	if err := sim.wait(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kioskcert-sim:", err)
	os.Exit(1)
}

type options struct {
	listen, out, center, keys string
	autoPay, terminal         bool
	timeouts                  flow.Timeouts
	log                       *slog.Logger
}

// simulator is a running center, agent and local server.
type simulator struct {
	url, spool string
	token      string // the integrator API's token file
	paper      string // where bin/example-integrator may write the PDFs it prints
	center     *demo.Center
	agent      *agent.Agent
	sim        *localapi.Sim
	done       chan error // the agent (with its local server), once
	stop       context.CancelFunc
}

// start builds the demo center and the kiosk under o.out and runs them
// until ctx ends.
func start(ctx context.Context, o options) (sim *simulator, err error) {
	out, err := filepath.Abs(o.out)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	spool := filepath.Join(out, "spool")
	paper := filepath.Join(out, "paper")
	for _, d := range []string{out, filepath.Join(out, "jlis"), spool, paper} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(o.center); err != nil {
		return nil, fmt.Errorf("issuance-center binary: %w (run `make build`, or pass -center)", err)
	}
	auth, trust, err := demo.NewAuthority(filepath.Join(out, "jlis"))
	if err != nil {
		return nil, err
	}
	tok, err := demo.SetupKeys(o.keys, o.center, filepath.Join(out, "softhsm"), os.Stdout)
	if err != nil {
		return nil, err
	}
	center, err := demo.SetupCenterWith(ctx, demo.CenterOptions{Bin: o.center, Dir: filepath.Join(out, "center"), CardTrust: trust, SoftHSM: tok}, kioskID)
	if err != nil {
		return nil, err
	}
	// The whole country on the municipality screen, the demo's own
	// municipalities taking part.
	if err := center.ImportNationalList(ctx); err != nil {
		return nil, err
	}
	if err := center.Start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			center.Stop()
		}
	}()
	cfg, _, err := center.KioskConfig(kioskID, trust, config.Reader{Kind: "virtual"}, config.Printer{Kind: "spool", SpoolDir: spool})
	if err != nil {
		return nil, err
	}
	cards, err := virtualcard.NewDemoSet(auth)
	if err != nil {
		return nil, err
	}
	slot := virtualcard.NewSlot("Simulated reader", true)
	sp, err := printer.NewSpool(spool)
	if err != nil {
		return nil, err
	}
	// The agent serves the touch screen, with the simulator's panel, and
	// the integrator API on the loopback address; the agent makes the
	// token file (owner-only) on first start.
	cfg.Listen = o.listen
	cfg.Integrator = &config.Integrator{TokenFile: filepath.Join(out, "integrator.token")}
	s := &localapi.Sim{Slot: slot, Cards: localapi.DemoCards(cards)}
	opts := agent.Options{Reader: slot, Timeouts: o.timeouts, Log: o.log, Sim: s}
	if o.terminal {
		// The store terminal's software collects and prints: the panel
		// has no payment or printer controls then.
		cfg.Payment.Mode = "terminal"
		cfg.Printer = config.Printer{Kind: "terminal"}
	} else {
		simPrinter := &localapi.SimPrinter{P: agent.Printer{P: sp}}
		pay := localapi.NewSimPayment(o.autoPay)
		s.Payment, s.Printer = pay, simPrinter
		opts.Payment, opts.Printer = pay, simPrinter
	}
	a, err := agent.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	sim = &simulator{url: a.Server.URL(), spool: spool, token: cfg.Integrator.TokenFile, paper: paper, center: center, agent: a, sim: s, done: make(chan error, 1), stop: stop}
	go func() { sim.done <- a.Run(runCtx) }()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.Client.WaitConnected(cctx); err != nil {
		sim.stop()
		sim.wait()
		return nil, fmt.Errorf("the kiosk did not connect to the demo center: %w (see %s)", err, filepath.Join(out, "center", "center.log"))
	}
	return sim, nil
}

// wait runs until the context given to start ends (or the agent fails),
// then stops everything.
func (s *simulator) wait() error {
	runErr := <-s.done
	s.stop()
	s.agent.Close()
	for _, err := range []error{runErr, s.center.Stop()} {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}
