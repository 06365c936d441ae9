// Command example-integrator is a minimal store terminal for the kiosk
// agent's integrator API: it approves every fee, "prints" each certificate
// by writing its PDF into a directory, and acknowledges captures and voids.
// It is the program of kiosk/internal/example; docs/INTEGRATION.md explains
// the API it speaks.
//
//	example-integrator -url http://127.0.0.1:8800 -token-file /var/lib/kioskcert/integrator.token -out paper
//
// The output directory holds the residents' certificates: it stands in for
// paper, and must be treated as such (delete the files once checked).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kioskcert/kioskcert/kiosk/internal/example"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8800", "the agent's local server (config listen)")
	tokenFile := flag.String("token-file", "integrator.token", "the agent's integrator token file (config integrator.tokenFile)")
	out := flag.String("out", "paper", "directory receiving printed PDFs (must exist)")
	decline := flag.Int("decline", 0, "decline the first n payment requests")
	failPrints := flag.String("fail-prints", "", "comma-separated reasons (paper_out, jam, other) failing the first print jobs")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	tok, err := example.ReadToken(*tokenFile)
	if err != nil {
		fail(err)
	}
	var fails []string
	if *failPrints != "" {
		fails = strings.Split(*failPrints, ",")
	}
	ex, err := example.New(example.Options{URL: *url, Token: tok, OutDir: *out, Decline: *decline, FailPrints: fails, Log: log})
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runErr := ex.Run(ctx)
	l := ex.Ledger()
	fmt.Printf("authorised %d, captured %d (¥%d), voided %d, printed %d, failed %d\n",
		len(l.Authorized), len(l.Captured), l.CapturedYen(), len(l.Voided), len(l.Printed), len(l.Failed))
	if runErr != nil {
		// 404 or 401: say why instead of retrying for ever.
		fail(runErr)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "example-integrator:", err)
	os.Exit(1)
}
