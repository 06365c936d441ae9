// Command kiosk-agent runs the kiosk: it reads the resident's My Number
// card through PC/SC, requests the certificate from the issuance center
// and prints it.
//
//	kiosk-agent run -config kiosk.json
//
// The configuration (kiosk/internal/config) names the center, the kiosk's
// enrolled certificate, the pinned center CA, the card trust anchors, the
// reader and the printer. Logs are JSON on standard error and carry session
// IDs and result codes only.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/config"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: kiosk-agent run -config kiosk.json")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	path := fs.String("config", "kiosk.json", "kiosk configuration file")
	fs.Parse(os.Args[2:])
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if os.Getenv("GOGC") == "" {
		// Rendering a certificate allocates a few MB (QR encoding, PDF);
		// collecting less often halves its time (docs/BENCHMARKS.md), and
		// a kiosk has memory to spare.
		debug.SetGCPercent(400)
	}
	if err := run(*path, log); err != nil {
		log.Error("kiosk agent stopped", "err", err)
		os.Exit(1)
	}
}

func run(path string, log *slog.Logger) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, agent.Options{Log: log})
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("kiosk agent running", "center", cfg.CenterURL, "reader", a.Reader.Name())
	err = a.Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
