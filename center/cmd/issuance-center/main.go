// Command issuance-center runs the certificate issuance center and its
// operator procedures.
//
//	issuance-center init -dir DIR -card-trust FILE [-issuer-url URL] [-hosts h1,h2] [-kiosk-listen A] [-public-listen A] [-ops-listen A]
//	issuance-center serve -config DIR/center.json
//	issuance-center kiosk enroll|suspend|activate|revoke|list -config FILE ...
//	issuance-center municipality list|enable|disable|add|load-demo -config FILE ...
//	issuance-center records import|count|delete|load-demo -config FILE ...
//	issuance-center rotate-shc-key -config FILE
//	issuance-center revoke -config FILE -certificate-id ID -kid KID -reason CODE
//
// Operator commands open the databases themselves; run them while the
// center is stopped (a running center holds the database lock, and they
// fail within the lock timeout saying so).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/app"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "init":
		err = cmdInit(ctx, args)
	case "serve":
		err = cmdServe(ctx, args)
	case "kiosk", "municipality", "records":
		if len(args) == 0 {
			usage()
		}
		err = withSession(cmd+" "+args[0], args[1:], func(s *admin.Session, fs *flag.FlagSet, rest []string) error {
			return group(ctx, cmd, args[0], s, fs, rest)
		})
	case "rotate-shc-key":
		err = withSession(cmd, args, func(s *admin.Session, fs *flag.FlagSet, rest []string) error {
			kid, err := s.Keyring().RotateSHC(ctx, time.Now())
			if err == nil {
				fmt.Printf("new active SMART Health Card key %s; the previous key stays published as retired\n", kid)
			}
			return err
		})
	case "revoke":
		var certID, kid, reason string
		err = withSessionFlags(cmd, args, func(fs *flag.FlagSet) {
			fs.StringVar(&certID, "certificate-id", "", "certificate ID to revoke")
			fs.StringVar(&kid, "kid", "", "key ID that signed its SMART Health Card")
			fs.StringVar(&reason, "reason", "misprint", "reason code")
		}, func(s *admin.Session, fs *flag.FlagSet, rest []string) error {
			return s.Revoke(ctx, certID, kid, reason, time.Now())
		})
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "issuance-center:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: issuance-center COMMAND [flags]
  init            create a center (config, PKI, keys, databases) in -dir
  serve           run the center
  kiosk           enroll | suspend | activate | revoke | list
  municipality    list | add | enable | disable | load-demo
  records         import | count | delete | load-demo
  rotate-shc-key  make a new SMART Health Card key active; the old one stays published
  revoke          revoke a certificate ID (SMART Health Card revocation list)
Run "issuance-center COMMAND -h" for flags.`)
	os.Exit(2)
}

func logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func cmdInit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("init", flag.ExitOnError)
	var o admin.InitOptions
	var hosts string
	fs.StringVar(&o.Dir, "dir", "", "directory for the new center")
	fs.StringVar(&o.CardTrustFile, "card-trust", "", "PEM file of card issuing-authority keys")
	fs.StringVar(&o.IssuerURL, "issuer-url", "", "SMART Health Card issuer URL (https, no trailing slash)")
	fs.StringVar(&hosts, "hosts", "localhost,127.0.0.1,::1", "names and IPs for the center's TLS certificate")
	fs.StringVar(&o.KioskListen, "kiosk-listen", "", "kiosk listener address")
	fs.StringVar(&o.PublicListen, "public-listen", "", "public (JWKS, CRL) listener address")
	fs.StringVar(&o.OpsListen, "ops-listen", "", "operations listener address")
	fs.Parse(args)
	if o.Dir == "" || o.CardTrustFile == "" {
		return errors.New("init: -dir and -card-trust are required")
	}
	o.Hosts = strings.Split(hosts, ",")
	if _, err := admin.Init(ctx, o, time.Now()); err != nil {
		return err
	}
	fmt.Printf("center created in %s (config %s/%s)\n", o.Dir, o.Dir, admin.ConfigFile)
	return nil
}

func cmdServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	path := fs.String("config", "", "center configuration file")
	fs.Parse(args)
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := logger()
	c, err := app.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return err
	}
	// A line on stdout tells scripts the center is ready, and where.
	fmt.Printf("ready kiosk=%s public=%s ops=%s\n", c.Addr("kiosk"), c.Addr("public"), c.Addr("ops"))
	return c.Serve(ctx)
}

func withSession(name string, args []string, f func(*admin.Session, *flag.FlagSet, []string) error) error {
	return withSessionFlags(name, args, nil, f)
}

// withSessionFlags parses -config and the command's flags, opens the
// operator session and runs f.
func withSessionFlags(name string, args []string, define func(*flag.FlagSet), f func(*admin.Session, *flag.FlagSet, []string) error) error {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	path := fs.String("config", "", "center configuration file")
	if define != nil {
		define(fs)
	}
	groupFlags(name, fs)
	fs.Parse(args)
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	s, err := admin.OpenSession(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	return f(s, fs, fs.Args())
}

// Flags of the grouped subcommands.
var (
	flagID, flagStoreName, flagStoreCode, flagChain, flagPref, flagRegion, flagOut, flagReason string
	flagCode, flagNameJa, flagNameEn, flagAuthJa, flagAuthEn, flagFile, flagOperator           string
	flagParticipating                                                                          bool
)

func groupFlags(name string, fs *flag.FlagSet) {
	switch name {
	case "kiosk enroll":
		fs.StringVar(&flagID, "id", "", "kiosk ID")
		fs.StringVar(&flagStoreName, "store-name", "", "store name")
		fs.StringVar(&flagStoreCode, "store-code", "", "store code")
		fs.StringVar(&flagChain, "chain", "", "store chain")
		fs.StringVar(&flagPref, "prefecture", "", "prefecture code (01-47)")
		fs.StringVar(&flagRegion, "region", "", "region")
		fs.StringVar(&flagOut, "out", "", "directory for the kiosk's key, certificate and the center CA")
	case "kiosk suspend", "kiosk activate", "kiosk revoke":
		fs.StringVar(&flagID, "id", "", "kiosk ID")
		fs.StringVar(&flagReason, "reason", "", "reason (required to suspend or revoke)")
	case "municipality add":
		fs.StringVar(&flagCode, "code", "", "6-digit local government code")
		fs.StringVar(&flagNameJa, "name-ja", "", "name in Japanese (旭川市)")
		fs.StringVar(&flagNameEn, "name-en", "", "name in English (Asahikawa City)")
		fs.StringVar(&flagAuthJa, "authority-ja", "", "issuing authority in Japanese (旭川市長)")
		fs.StringVar(&flagAuthEn, "authority-en", "", "issuing authority in English (Mayor of Asahikawa City)")
		fs.BoolVar(&flagParticipating, "participating", false, "offers kiosk issuance")
	case "municipality enable", "municipality disable":
		fs.StringVar(&flagCode, "code", "", "6-digit local government code")
	case "records import":
		fs.StringVar(&flagCode, "municipality", "", "6-digit local government code")
		fs.StringVar(&flagFile, "file", "", "CSV export of the municipal ledger (docs/RECORDS.md)")
		fs.StringVar(&flagOperator, "operator", "", "operator ID (recorded in the operations log)")
	case "records delete":
		fs.StringVar(&flagCode, "municipality", "", "6-digit local government code")
		fs.StringVar(&flagOperator, "operator", "", "operator ID (recorded in the operations log)")
	case "records load-demo":
		fs.StringVar(&flagOperator, "operator", "demo", "operator ID")
	}
}

func group(ctx context.Context, cmd, sub string, s *admin.Session, fs *flag.FlagSet, rest []string) error {
	now := time.Now()
	switch cmd + " " + sub {
	case "kiosk enroll":
		k, err := s.EnrollKiosk(ctx, admin.KioskEnrollment{ID: flagID, StoreName: flagStoreName, StoreCode: flagStoreCode, Chain: flagChain, Prefecture: flagPref, Region: flagRegion, OutDir: flagOut}, now)
		if err != nil {
			return err
		}
		fmt.Printf("enrolled kiosk %s (certificate %s); credentials in %s\n", k.ID, k.CertSHA256[:16], flagOut)
	case "kiosk suspend":
		return s.SetKioskStatus(ctx, flagID, store.KioskSuspended, flagReason, now)
	case "kiosk activate":
		return s.SetKioskStatus(ctx, flagID, store.KioskActive, flagReason, now)
	case "kiosk revoke":
		return s.SetKioskStatus(ctx, flagID, store.KioskRevoked, flagReason, now)
	case "kiosk list":
		ks, err := s.Store.ListKiosks(ctx)
		if err != nil {
			return err
		}
		for _, k := range ks {
			fmt.Printf("%-20s %-10s %-12s %s\n", k.ID, k.Status, k.StoreCode, k.StoreName)
		}
	case "municipality list":
		ms, err := s.Store.ListMunicipalities(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			fmt.Printf("%s %-5v %s / %s\n", m.Code, m.Participating, m.NameJa, m.NameEn)
		}
	case "municipality add":
		return s.Store.UpsertMunicipality(ctx, store.Municipality{Code: flagCode, NameJa: flagNameJa, NameEn: flagNameEn, AuthorityJa: flagAuthJa, AuthorityEn: flagAuthEn, Participating: flagParticipating})
	case "municipality enable":
		return s.Store.SetParticipation(ctx, flagCode, true)
	case "municipality disable":
		return s.Store.SetParticipation(ctx, flagCode, false)
	case "municipality load-demo":
		n, err := s.LoadDemoMunicipalities(ctx)
		if err == nil {
			fmt.Printf("loaded %d demo municipalities\n", n)
		}
		return err
	case "records import":
		res, err := s.ImportCSV(ctx, flagCode, flagOperator, flagFile)
		if err != nil {
			return err
		}
		fmt.Printf("imported %d persons (%d new, %d replaced), %d doses into %s\n", res.Persons, res.Added, res.Replaced, res.Doses, flagCode)
	case "records load-demo":
		n, err := s.LoadDemoRecords(ctx, flagOperator)
		if err == nil {
			fmt.Printf("imported %d demo records\n", n)
		}
		return err
	case "records count":
		v, err := s.Records()
		if err != nil {
			return err
		}
		counts, err := v.Counts(ctx)
		if err != nil {
			return err
		}
		for _, c := range counts {
			fmt.Printf("%s %d\n", c.Municipality, c.Records)
		}
	case "records delete":
		v, err := s.Records()
		if err != nil {
			return err
		}
		r, err := v.Region(ctx, flagCode)
		if err != nil {
			return err
		}
		op, err := r.Delete(ctx, flagOperator)
		if err != nil {
			return err
		}
		fmt.Printf("deleted %d records and the keys of region %s; rotate the master key to complete the deletion (docs/RECORDS.md)\n", op.Records, flagCode)
	default:
		return fmt.Errorf("unknown command %s %s", cmd, sub)
	}
	return nil
}
