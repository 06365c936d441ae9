// Command loadgen drives an issuance center with many kiosks and reports
// throughput, latency percentiles and errors by code, then checks the
// center's audit log for double issues (package loadtest describes the
// loop and the checks).
//
//	loadgen -self -kiosks 50 -duration 30s [-disconnect 0.05] [-overseas]
//	loadgen -addr HOST:PORT -kiosk-dir DIR -authority DIR [-server-name NAME]
//	        [-ops http://HOST:PORT -ops-token-file FILE] [-requests N | -duration D]
//
// With -self it creates a throwaway center in a temporary directory (demo
// municipalities and records, -kiosks enrolled kiosks) and runs it in this
// process. Otherwise it drives the center at -addr with the kiosks whose
// credentials are under -kiosk-dir (one directory per kiosk, as
// `issuance-center kiosk enroll -out` writes them) and cards signed by the
// test card authority in -authority (`cardsim keygen` layout), which the
// center must trust and whose demo records it must hold; -ops and
// -ops-token-file let it read the audit log for the check.
//
// The exit status is 1 when any request failed or the audit log disagrees.
//
// National scale (docs/BENCHMARKS.md), against the real center process:
//
//	loadgen national [-dir out/national] [-kiosks 3000] [-fleets 2] [-rates 600,1200] [-duration 30s]
//	                 [-disconnect P] [-cancel P] [-restart] [-sample 30s] [-center-bin bin/issuance-center]
//
// creates (or reuses) a center with -kiosks enrolled kiosks under -dir,
// runs `issuance-center serve`, connects the kiosks from -fleets processes
// of this program (`loadgen worker`, one per loopback source address),
// measures the center's memory per idle connection, then offers each rate
// in turn as an open-loop stream of residents, and prints one table:
// connections held, issuances a second, latency percentiles, errors by
// code, the center's CPU per issuance and its ratio to the cryptographic
// floor. The exit status is 1 when any answer was not bound to its request.
//
// Several center instances on one PostgreSQL (docs/DEPLOYMENT.md):
//
//	loadgen cluster [-dir out/cluster] [-instances 4] [-kiosks 60000] [-rate 400] [-duration 60s]
//	                [-store postgres://…] [-center-bin bin/issuance-center]
//
// A large ledger import beside issuance (docs/BENCHMARKS.md):
//
//	loadgen import [-dir out/import] [-kiosks 200] [-rate 50] [-persons 1000000] [-baseline 20s]
//	               [-center-bin bin/issuance-center] [-json FILE]
//
// sets up (or reuses) a center with -kiosks kiosks under -dir, generates a
// synthetic ledger of -persons persons (reused), runs `issuance-center
// serve`, and measures issuance latency at -rate issuances a second for
// -baseline without an import, then while the ledger is imported through
// the operations API (an import job, as `issuance-center records import`
// runs it), then for -baseline without again. It prints the p99 during the
// import against the p99 without (the target: within 2×), the import's
// time and rate and the center's peak memory. The exit status is 1 when a
// request failed or an answer was not bound to its request.
//
// sets up a center on the store (a private PostgreSQL with fsync on when
// -store is empty), starts -instances `issuance-center serve` processes on
// it and one fleet process per instance, and prints the issuance rate,
// latency and CPU per issuance across them.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/loadtest"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "import" {
		if err := importRun(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen import:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "cluster" {
		if err := clusterRun(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen cluster:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && (os.Args[1] == "national" || os.Args[1] == "worker") {
		if err := sub(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		return
	}
	ok, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// run parses the flags and runs; ok is false when a request failed or the
// audit log disagrees. Deferred clean-up (the -self center) runs before exit.
func run() (ok bool, err error) {
	var (
		self       = flag.Bool("self", false, "create and run a throwaway center in this process")
		kiosks     = flag.Int("kiosks", 10, "kiosks to enroll (-self) or to use at most (0: all under -kiosk-dir)")
		requests   = flag.Int("requests", 0, "requests per kiosk (0: run for -duration)")
		duration   = flag.Duration("duration", 30*time.Second, "how long to run when -requests is 0")
		disconnect = flag.Float64("disconnect", 0, "probability that a request loses its connection mid-request (0-1)")
		overseas   = flag.Bool("overseas", false, "alternate overseas and domestic requests (residents with passport data)")
		cards      = flag.Int("cards", 2, "distinct cards per kiosk")
		timeout    = flag.Duration("timeout", 30*time.Second, "deadline of each dial, write and read")
		seed       = flag.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the fault injection")
		addr       = flag.String("addr", "", "the center's kiosk listener (host:port)")
		serverName = flag.String("server-name", "", "name in the center's TLS certificate (default: the host of -addr)")
		kioskDir   = flag.String("kiosk-dir", "", "directory of enrolled kiosks' credentials")
		authority  = flag.String("authority", "", "directory of the test card authority the center trusts")
		ops        = flag.String("ops", "", "the center's operations API, for the audit check (http://host:port)")
		tokenFile  = flag.String("ops-token-file", "", "file holding the operator token")
		verbose    = flag.Bool("v", false, "log each failed request")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	kinds := []certificate.Kind{certificate.Domestic}
	if *overseas {
		kinds = []certificate.Kind{certificate.Overseas, certificate.Domestic}
	}
	cfg := loadtest.Config{Requests: *requests, Duration: *duration, DisconnectRate: *disconnect, Timeout: *timeout, Seed: *seed, Log: log}
	var audit func(since time.Time) ([]store.Event, error)

	if *self {
		fmt.Fprintf(os.Stderr, "loadgen: creating a center with %d kiosks…\n", *kiosks)
		s, err := loadtest.SelfHost(ctx, loadtest.SelfHostOptions{Kiosks: *kiosks, CardsPerKiosk: *cards, Kinds: kinds})
		if err != nil {
			return false, err
		}
		defer s.Close()
		cfg.Addr, cfg.Kiosks, cfg.Cards = s.Addr(), s.Kiosks, s.Cards
		audit = func(since time.Time) ([]store.Event, error) { return s.AuditEvents(context.Background(), since) }
	} else {
		if err := external(&cfg, *addr, *serverName, *kioskDir, *authority, *kiosks, *cards, kinds); err != nil {
			return false, err
		}
		if *ops != "" {
			b, err := os.ReadFile(*tokenFile)
			if err != nil {
				return false, fmt.Errorf("operator token: %w", err)
			}
			token := strings.TrimSpace(string(b))
			var ids []string
			for _, k := range cfg.Kiosks {
				ids = append(ids, k.ID)
			}
			audit = func(since time.Time) ([]store.Event, error) {
				return loadtest.FetchAudit(context.Background(), *ops, token, ids, since)
			}
		}
	}

	fmt.Fprintf(os.Stderr, "loadgen: %d kiosks against %s\n", len(cfg.Kiosks), cfg.Addr)
	start := time.Now().Add(-time.Second)
	rep, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return false, err
	}
	rep.WriteText(os.Stdout)
	ok = len(rep.Errors) == 0
	if audit == nil {
		fmt.Println("audit: not checked (give -ops and -ops-token-file)")
		return ok, nil
	}
	evs, err := audit(start)
	if err != nil {
		return false, err
	}
	check := loadtest.CheckAudit(evs, rep)
	fmt.Println(check)
	return ok && check.OK(), nil
}

// external prepares a run against a running center.
func external(cfg *loadtest.Config, addr, serverName, kioskDir, authorityDir string, max, perKiosk int, kinds []certificate.Kind) error {
	if addr == "" || kioskDir == "" || authorityDir == "" {
		return errors.New("without -self, give -addr, -kiosk-dir and -authority")
	}
	if serverName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("-addr: %w", err)
		}
		serverName = host
	}
	ks, err := loadtest.LoadKiosks(kioskDir, serverName)
	if err != nil {
		return err
	}
	if max > 0 && len(ks) > max {
		ks = ks[:max]
	}
	auth, err := carddata.LoadAuthority(authorityDir)
	if err != nil {
		return err
	}
	// One AP key for every card of the run, as SelfHost does.
	ap, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	cfg.Addr, cfg.Kiosks = addr, ks
	for i := range ks {
		cs, err := loadtest.DemoCards(auth, ap, i, perKiosk, kinds)
		if err != nil {
			return err
		}
		cfg.Cards = append(cfg.Cards, cs)
	}
	return nil
}

func sub(name string, args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	self, _ := os.Executable()
	if name == "worker" {
		var w loadtest.WorkerArgs
		fs.StringVar(&w.Dir, "dir", "", "run directory")
		fs.StringVar(&w.Addr, "addr", "", "the center's kiosk listener")
		fs.IntVar(&w.From, "from", 0, "first kiosk (sorted position)")
		fs.IntVar(&w.To, "to", 0, "end of the kiosk range")
		fs.StringVar(&w.Source, "source", "", "local address to dial from")
		fs.Float64Var(&w.Rate, "rate", 0, "arrivals a second")
		fs.DurationVar(&w.Duration, "duration", 30*time.Second, "how long to offer arrivals")
		fs.IntVar(&w.CardsPerKiosk, "cards", 1, "cards per kiosk")
		fs.Float64Var(&w.DisconnectRate, "disconnect", 0, "probability of a dropped connection per request")
		fs.Float64Var(&w.CancelRate, "cancel", 0, "probability of a cancelled outcome per request")
		fs.DurationVar(&w.Timeout, "timeout", 30*time.Second, "deadline of each request")
		fs.Uint64Var(&w.Seed, "seed", 1, "seed")
		fs.Parse(args)
		return loadtest.RunWorker(ctx, w, os.Stdin, os.Stdout)
	}
	var o loadtest.NationalOptions
	var rates string
	fs.StringVar(&o.Dir, "dir", "out/national", "run directory (created, or reused when it holds enough kiosks)")
	fs.StringVar(&o.CenterBin, "center-bin", filepath.Join(filepath.Dir(self), "issuance-center"), "issuance-center binary")
	fs.IntVar(&o.Kiosks, "kiosks", 3000, "kiosks connected")
	fs.IntVar(&o.Fleets, "fleets", 2, "fleet processes (each at most 20,000 open files; source addresses 127.0.0.2-9)")
	fs.StringVar(&rates, "rates", "600", "offered issuances a second, comma-separated, run in turn")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "duration of each rate")
	fs.Float64Var(&o.DisconnectRate, "disconnect", 0, "probability of a dropped connection per request")
	fs.Float64Var(&o.CancelRate, "cancel", 0, "probability of a cancelled outcome per request")
	fs.BoolVar(&o.Restart, "restart", false, "kill and restart the center under the full fleet and time the reconnection")
	fs.DurationVar(&o.Sample, "sample", 0, "read the center's memory, goroutines and open files at this interval during each rate (a soak)")
	jsonOut := fs.String("json", "", "also write the figures as JSON to this file")
	fs.Parse(args)
	for _, r := range strings.Split(rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil {
			return fmt.Errorf("-rates: %w", err)
		}
		o.Rates = append(o.Rates, v)
	}
	o.LoadgenBin, o.Log = self, os.Stderr
	n, err := loadtest.RunNational(ctx, o)
	if err != nil {
		return err
	}
	n.WriteTable(os.Stdout)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(n, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	for _, r := range n.Results {
		if r.Report.Mismatches+r.Report.ReplayMismatches > 0 {
			return fmt.Errorf("%d answers not bound to their request", r.Report.Mismatches+r.Report.ReplayMismatches)
		}
	}
	return nil
}
