// Command kiosk-agent runs the kiosk: it reads the resident's My Number
// card through PC/SC, requests the certificate from the issuance center
// and prints it.
//
//	kiosk-agent run -config kiosk.json [-log kiosk-agent.log]
//	kiosk-agent enroll -config kiosk.json -id ID -url https://center:8444/v1/enroll -code-file FILE
//
// The configuration (kiosk/internal/config) names the center, the kiosk's
// enrolled certificate, the pinned center CA, the card trust anchors, the
// reader, the printer and the payment, and optionally the local server
// (`listen`: touch screen and integrator API, docs/INTEGRATION.md). Logs are
// JSON on standard error (or appended to -log) and carry session IDs and
// result codes only.
//
// On Windows the same command runs as a Windows service when the service
// control manager starts it (sc.exe create, docs/INTEGRATION.md); stopping
// the service stops the agent cleanly.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/pkg/gctune"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "enroll" {
		if err := enroll(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "kiosk-agent:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: kiosk-agent run -config kiosk.json [-log file]\n       kiosk-agent enroll -config kiosk.json -id ID -url URL -code-file FILE [-center-ca FILE]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	path := fs.String("config", "kiosk.json", "kiosk configuration file")
	logFile := fs.String("log", "", "append JSON logs to this file instead of standard error (for services)")
	fs.Parse(os.Args[2:])
	var out io.Writer = os.Stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kiosk-agent:", err)
			os.Exit(1)
		}
		defer f.Close()
		out = f
	}
	log := slog.New(slog.NewJSONHandler(out, nil))
	// Rendering a certificate allocates a few MB (QR encoding, PDF) that
	// die with it: collecting less often halves its time
	// (docs/BENCHMARKS.md), and a kiosk has memory to spare.
	log.Info("garbage collector", "settings", gctune.Apply(gctune.Settings{Percent: 400}))
	runWith := func(ctx context.Context) error { return run(ctx, *path, log) }
	if service, err := runAsService(runWith); service {
		if err != nil {
			log.Error("kiosk agent stopped", "err", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runWith(ctx); err != nil {
		log.Error("kiosk agent stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string, log *slog.Logger) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, agent.Options{Log: log})
	if err != nil {
		return err
	}
	defer a.Close()
	log.Info("kiosk agent running", "center", cfg.CenterURL, "reader", a.Reader.Name())
	err = a.Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
