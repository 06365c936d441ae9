package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kioskcert/kioskcert/assets/municipalities"
	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/app"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/municipalitylist"
	"github.com/kioskcert/kioskcert/center/internal/opsclient"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/progress"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// env is what a command reads and writes.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

var errUsage = errors.New("usage")

type command func(ctx context.Context, e *env, name string, args []string) error

var commands = map[string]command{
	"init":                     cmdInit,
	"serve":                    cmdServe,
	"kiosk enroll":             cmdKioskEnroll,
	"kiosk suspend":            cmdKioskStatus(store.KioskSuspended),
	"kiosk activate":           cmdKioskStatus(store.KioskActive),
	"kiosk revoke":             cmdKioskStatus(store.KioskRevoked),
	"kiosk list":               cmdKioskList,
	"municipality list":        cmdMunicipalityList,
	"municipality add":         cmdMunicipalityAdd,
	"municipality enable":      cmdParticipation(true),
	"municipality disable":     cmdParticipation(false),
	"municipality import-list": cmdMunicipalityImportList,
	"records import":           cmdRecordsImport,
	"records imports":          cmdRecordsImports,
	"records import-cancel":    cmdRecordsImportCancel,
	"records count":            cmdRecordsCount,
	"records delete":           cmdRecordsDelete,
	"records flag-set":         cmdRecordsFlag(false),
	"records flag-clear":       cmdRecordsFlag(true),
	"rotate-shc-key":           cmdRotate,
	"revoke":                   cmdRevoke,
	"audit verify":             cmdAuditVerify,
}

// parse parses a command's flags; -h prints them and is a usage result.
func parse(e *env, fs *flag.FlagSet, args []string) error {
	fs.SetOutput(e.stderr)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return errUsage
	}
	return nil
}

func cmdInit(ctx context.Context, e *env, name string, args []string) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var o admin.InitOptions
	var hosts string
	fs.StringVar(&o.Dir, "dir", "", "directory for the new center")
	fs.StringVar(&o.CardTrustFile, "card-trust", "", "PEM file of card issuing-authority keys")
	fs.StringVar(&o.IssuerURL, "issuer-url", "", "SMART Health Card issuer URL (https, no trailing slash)")
	fs.StringVar(&hosts, "hosts", "localhost,127.0.0.1,::1", "names and IPs for the center's TLS certificate")
	fs.StringVar(&o.KioskListen, "kiosk-listen", "", "kiosk listener address")
	fs.StringVar(&o.PublicListen, "public-listen", "", "public (JWKS, CRL) listener address")
	fs.StringVar(&o.OpsListen, "ops-listen", "", "operations listener address")
	fs.StringVar(&o.ConsoleListen, "console-listen", "127.0.0.1:8445", "operations console address (HTTPS); empty turns the console off")
	fs.StringVar(&o.Operator, "operator", os.Getenv("KIOSKCERT_OPERATOR"), "ID of the first operator, whose API token goes to keys/ops.token (default $KIOSKCERT_OPERATOR, else admin)")
	fs.StringVar(&o.EnrollListen, "enroll-listen", "", "kiosk enrollment listener address")
	fs.StringVar(&o.CSCACertFile, "csca-cert", "", "production: the offline CSCA's certificate (with -kiosk-ca-cert)")
	fs.StringVar(&o.KioskCACertFile, "kiosk-ca-cert", "", "production: the offline kiosk CA's certificate (with -csca-cert)")
	fs.StringVar(&o.KeySource.Type, "key-source", "file", "where signing keys are made: file or pkcs11")
	fs.StringVar(&o.KeySource.Module, "pkcs11-module", "", "PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so)")
	fs.StringVar(&o.KeySource.TokenLabel, "pkcs11-token", "", "PKCS#11 token label")
	fs.StringVar(&o.KeySource.PINFile, "pkcs11-pin-file", "", "file holding the token PIN (mode 0600)")
	fs.StringVar(&o.KeySource.PINEnv, "pkcs11-pin-env", "", "environment variable holding the token PIN")
	fs.IntVar(&o.KeySource.Sessions, "pkcs11-sessions", 0, "token sessions open at once (default 8)")
	fs.StringVar(&o.Store, "store", "", "the store: bolt:PATH (default bolt:center.db) or a postgres:// URL shared by several instances")
	fs.StringVar(&o.Records, "records", "", "the vaccination records: empty follows the store (bolt store: records.db; postgres store: the same database), or bolt, bolt:PATH, postgres, a postgres:// URL")
	fs.StringVar(&o.InstanceID, "instance-id", "", "this instance's ID in operations views and metrics (default: host name and kiosk port)")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if o.KeySource.Type == "file" {
		o.KeySource.Type = ""
	}
	if o.Dir == "" || o.CardTrustFile == "" {
		return errors.New("init: -dir and -card-trust are required")
	}
	o.Hosts = strings.Split(hosts, ",")
	if _, err := admin.Init(ctx, o, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "center created in %s (config %s)\n", o.Dir, filepath.Join(o.Dir, admin.ConfigFile))
	fmt.Fprintln(e.stdout, "next: create a console administrator with: issuance-center operator add -offline -admin -id YOUR-ID -config", filepath.Join(o.Dir, admin.ConfigFile))
	if o.Production() {
		fmt.Fprintf(e.stdout, "production mode: certificate requests for the offline authorities are in %s;\n"+
			"sign them (authority csca sign-signer, authority kiosk-ca sign -profile issuing-ca|server) and install each with keys install -offline (docs/KEYS.md)\n",
			filepath.Join(o.Dir, "keys", "requests"))
	} else {
		fmt.Fprintf(e.stdout, "demo mode: the CSCA and the kiosk CA were made in %s; not for production (docs/KEYS.md)\n", filepath.Join(o.Dir, admin.AuthoritiesDir))
	}
	return nil
}

// RunFile is written beside the config while the center serves: the
// addresses it listens on (ports chosen at start included) and its process
// ID, so operator commands find a center configured with port 0.
const RunFile = "center.run.json"

type runInfo struct {
	PID     int    `json:"pid"`
	Kiosk   string `json:"kiosk"`
	Public  string `json:"public"`
	Ops     string `json:"ops"`
	Enroll  string `json:"enroll"`
	Console string `json:"console,omitempty"`
	Metrics string `json:"metrics,omitempty"`
}

func cmdServe(ctx context.Context, e *env, name string, args []string) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("config", "", "center configuration file")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := app.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return err
	}
	info := runInfo{PID: os.Getpid(), Kiosk: c.Addr("kiosk"), Public: c.Addr("public"), Ops: c.Addr("ops"), Enroll: c.Addr("enroll"), Console: c.Addr("console"), Metrics: c.Addr("metrics")}
	b, _ := json.Marshal(info)
	runPath := cfg.Path(RunFile)
	if err := os.WriteFile(runPath, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("serve: write %s: %w", runPath, err)
	}
	defer os.Remove(runPath)
	// A line on stdout tells scripts the center is ready, and where.
	ready := fmt.Sprintf("ready kiosk=%s public=%s ops=%s enroll=%s", info.Kiosk, info.Public, info.Ops, info.Enroll)
	if info.Console != "" {
		ready += " console=https://" + info.Console + "/"
	}
	if info.Metrics != "" {
		ready += " metrics=" + info.Metrics
	}
	fmt.Fprintln(e.stdout, ready)
	return c.Serve(ctx)
}

// opsFlags are the flags every operator command takes.
type opsFlags struct {
	config    string
	offline   bool
	operator  string
	center    string
	tokenFile string
}

func (o *opsFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&o.config, "config", "", "center configuration file")
	fs.BoolVar(&o.offline, "offline", false, "open a stopped center's files instead of calling the running center (maintenance)")
	fs.StringVar(&o.operator, "operator", os.Getenv("KIOSKCERT_OPERATOR"), "your operator ID (default $KIOSKCERT_OPERATOR): recorded with every -offline change; on a running center the token decides, and a token of another operator is refused")
	fs.StringVar(&o.center, "center", "", "operations API URL (default: from the config and the running center)")
	fs.StringVar(&o.tokenFile, "token-file", "", "operator token file (default: the config's opsTokenFile)")
}

// connect returns the operations to act through: the running center's API,
// or a local service on a stopped center's files with -offline.
func (o *opsFlags) connect(ctx context.Context) (admin.Operations, admin.Actor, func() error, error) {
	noop := func() error { return nil }
	if o.config == "" && (o.center == "" || o.tokenFile == "") {
		return nil, admin.Actor{}, noop, errors.New("-config is required (or -center and -token-file)")
	}
	var cfg *config.Config
	if o.config != "" {
		var err error
		if cfg, err = config.Load(o.config); err != nil {
			return nil, admin.Actor{}, noop, err
		}
	}
	if o.offline {
		if cfg == nil {
			return nil, admin.Actor{}, noop, errors.New("-offline needs -config")
		}
		s, closeLocal, err := admin.OpenLocal(ctx, cfg)
		if err != nil {
			return nil, admin.Actor{}, noop, err
		}
		return s, admin.Actor{Operator: o.operator, Source: "local"}, closeLocal, nil
	}
	base, tokenFile := o.center, o.tokenFile
	if base == "" {
		base = "http://" + opsAddress(cfg)
	}
	if tokenFile == "" {
		tokenFile = cfg.Path(cfg.OpsTokenFile)
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, admin.Actor{}, noop, fmt.Errorf("operator token: %w", err)
	}
	c := &opsclient.Client{BaseURL: base, Token: strings.TrimSpace(string(tok)), Operator: o.operator}
	return c, admin.Actor{Operator: o.operator}, noop, nil
}

// opsAddress is where the running center's operations API listens: the
// run file's address when the center is up (it may have chosen its port),
// else the configured one, with a wildcard host made loopback.
func opsAddress(cfg *config.Config) string {
	addr := cfg.OpsListen
	if b, err := os.ReadFile(cfg.Path(RunFile)); err == nil {
		var info runInfo
		if json.Unmarshal(b, &info) == nil && info.Ops != "" {
			addr = info.Ops
		}
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// withOps parses the common and the command's flags, connects and runs f.
func withOps(ctx context.Context, e *env, name string, args []string, define func(*flag.FlagSet), f func(admin.Operations, admin.Actor) error) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var o opsFlags
	o.define(fs)
	if define != nil {
		define(fs)
	}
	if err := parse(e, fs, args); err != nil {
		return err
	}
	ops, actor, closeOps, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer closeOps()
	return f(ops, actor)
}

func cmdKioskEnroll(ctx context.Context, e *env, name string, args []string) error {
	var k admin.KioskEnrollment
	var out string
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&k.ID, "id", "", "kiosk ID")
		fs.StringVar(&k.StoreName, "store-name", "", "store name")
		fs.StringVar(&k.StoreCode, "store-code", "", "store code")
		fs.StringVar(&k.Chain, "chain", "", "store chain")
		fs.StringVar(&k.Prefecture, "prefecture", "", "prefecture code (01-47)")
		fs.StringVar(&k.Region, "region", "", "region")
		fs.StringVar(&out, "out", "", "directory for the kiosk's key, certificate and the center CA (required)")
	}, func(ops admin.Operations, a admin.Actor) error {
		if out == "" {
			return errors.New("kiosk enroll: -out is required (the kiosk's credentials are written there)")
		}
		en, err := ops.EnrollKiosk(ctx, a, k)
		if err != nil {
			return err
		}
		if err := admin.WriteEnrollment(out, en); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "enrolled kiosk %s (certificate %s); credentials in %s: carry them to the kiosk, then delete them here\n", en.Kiosk.ID, en.Kiosk.CertSHA256[:16], out)
		return nil
	})
}

func cmdKioskStatus(status store.KioskStatus) command {
	return func(ctx context.Context, e *env, name string, args []string) error {
		var id, reason string
		return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
			fs.StringVar(&id, "id", "", "kiosk ID")
			fs.StringVar(&reason, "reason", "", "reason (required to suspend or revoke)")
		}, func(ops admin.Operations, a admin.Actor) error {
			k, err := ops.SetKioskStatus(ctx, a, id, status, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "kiosk %s is %s\n", k.ID, k.Status)
			return nil
		})
	}
}

func cmdKioskList(ctx context.Context, e *env, name string, args []string) error {
	return withOps(ctx, e, name, args, nil, func(ops admin.Operations, a admin.Actor) error {
		ks, err := ops.ListKiosks(ctx)
		if err != nil {
			return err
		}
		for _, k := range ks {
			fmt.Fprintf(e.stdout, "%-20s %-10s %-12s %s\n", k.ID, k.Status, k.StoreCode, k.StoreName)
		}
		return nil
	})
}

func cmdMunicipalityList(ctx context.Context, e *env, name string, args []string) error {
	return withOps(ctx, e, name, args, nil, func(ops admin.Operations, a admin.Actor) error {
		ms, err := ops.ListMunicipalities(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			counter := ""
			if m.CounterJa != "" {
				counter = fmt.Sprintf(" (counter: %s / %s)", m.CounterJa, m.CounterEn)
			}
			fmt.Fprintf(e.stdout, "%s %-5v %s / %s%s\n", m.Code, m.Participating, m.NameJa, m.NameEn, counter)
		}
		return nil
	})
}

func cmdMunicipalityAdd(ctx context.Context, e *env, name string, args []string) error {
	var m store.Municipality
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&m.Code, "code", "", "6-digit local government code")
		fs.StringVar(&m.NameJa, "name-ja", "", "name in Japanese (旭川市)")
		fs.StringVar(&m.NameEn, "name-en", "", "name in English (Asahikawa City)")
		fs.StringVar(&m.AuthorityJa, "authority-ja", "", "issuing authority in Japanese (旭川市長)")
		fs.StringVar(&m.AuthorityEn, "authority-en", "", "issuing authority in English (Mayor of Asahikawa City)")
		fs.BoolVar(&m.Participating, "participating", false, "offers kiosk issuance")
		fs.StringVar(&m.CounterJa, "counter-ja", "", "the municipal counter residents the kiosk sends away apply at, in Japanese (旭川市役所 市民課); with -counter-en")
		fs.StringVar(&m.CounterEn, "counter-en", "", "the same counter in English (Asahikawa City Hall, Citizens Division); with -counter-ja")
	}, func(ops admin.Operations, a admin.Actor) error {
		if err := ops.PutMunicipality(ctx, a, m); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "municipality %s %s (participating: %v)\n", m.Code, m.NameJa, m.Participating)
		return nil
	})
}

// cmdMunicipalityImportList imports the national list of local public
// bodies (assets/municipalities: the shipped copy, or -file), through the
// same operations as municipality add: new municipalities do not take
// part; known ones keep their participation and, unless renamed, the names
// the operator gave them (center/internal/municipalitylist). Every row is
// checked before the first write.
func cmdMunicipalityImportList(ctx context.Context, e *env, name string, args []string) error {
	var file string
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "file", "", "national list CSV (assets/municipalities/README.md); default: the copy shipped with this build")
	}, func(ops admin.Operations, a admin.Actor) error {
		in := io.Reader(bytes.NewReader(municipalities.ShippedCSV()))
		if file != "" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		res, err := municipalitylist.Import(ctx, putter{ctx, ops, a}, in)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "municipality list: %d added (not participating), %d updated, %d unchanged, %d skipped (no administration)\n",
			res.Added, res.Updated, res.Unchanged, res.Skipped)
		if len(res.Missing) > 0 {
			fmt.Fprintf(e.stdout, "not in the list (left as they are; disable them if they merged away): %s\n", strings.Join(res.Missing, " "))
		}
		return nil
	})
}

// putter writes an import through the audited operations.
type putter struct {
	ctx context.Context
	ops admin.Operations
	a   admin.Actor
}

func (p putter) ListMunicipalities(ctx context.Context) ([]store.Municipality, error) {
	return p.ops.ListMunicipalities(ctx)
}

func (p putter) UpsertMunicipality(ctx context.Context, m store.Municipality) error {
	return p.ops.PutMunicipality(ctx, p.a, m)
}

func cmdParticipation(on bool) command {
	return func(ctx context.Context, e *env, name string, args []string) error {
		var code string
		return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
			fs.StringVar(&code, "code", "", "6-digit local government code")
		}, func(ops admin.Operations, a admin.Actor) error {
			if err := ops.SetParticipation(ctx, a, code, on); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "municipality %s participating: %v\n", code, on)
			return nil
		})
	}
}

// cmdRecordsImport runs an import job on the center: it starts the job,
// sends the file and shows the center's progress (a bar on a terminal, a
// line every ten seconds otherwise) until the import ends. Interrupted
// (Ctrl-C), it cancels the job: the records stay as they were.
func cmdRecordsImport(ctx context.Context, e *env, name string, args []string) error {
	var code, file, mode, encoding string
	var quiet bool
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&code, "municipality", "", "6-digit local government code")
		fs.StringVar(&file, "file", "", "CSV export of the municipal ledger (docs/RECORDS.md); - for standard input")
		fs.StringVar(&mode, "mode", "full", "full (the whole ledger: persons not in it are removed) or changes (added, changed and removed persons)")
		fs.StringVar(&encoding, "encoding", "auto", "auto (detect), utf-8 or cp932 (Shift_JIS as Windows writes it)")
		fs.BoolVar(&quiet, "quiet", false, "no progress, only the result")
	}, func(ops admin.Operations, a admin.Actor) error {
		if file == "" {
			return errors.New("-file is required (- for standard input)")
		}
		in := e.stdin
		var size int64
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			if fi, err := f.Stat(); err == nil {
				size = fi.Size()
			}
			in = f
		}
		job, err := ops.StartImport(ctx, a, admin.ImportStart{Municipality: code, ImportOptions: admin.ImportOptions{Mode: records.ImportMode(mode), Encoding: encoding}, Size: size})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "import job %s for %s started (cancel with: records import-cancel -id %s)\n", job.ID, code, job.ID)
		stop := func() {}
		if !quiet {
			// The center's own progress: rows read, rate, time left.
			last := job
			r := progress.New(e.stderr, progress.Options{})
			stop = progress.Follow(r, func() progress.Status {
				pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if j, err := ops.ImportJobStatus(pctx, job.ID); err == nil {
					last = j
				}
				return last.Status()
			}, time.Second)
		}
		job, err = ops.UploadImport(ctx, a, job.ID, in)
		stop()
		if err != nil {
			if ctx.Err() != nil {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				if _, cerr := ops.CancelImport(cctx, a, job.ID); cerr != nil && !errors.Is(cerr, admin.ErrImportState) {
					return fmt.Errorf("interrupted, and cancelling import job %s failed (cancel it with records import-cancel): %w", job.ID, cerr)
				}
				return fmt.Errorf("interrupted: import job %s cancelled; the records of %s are as they were", job.ID, code)
			}
			return err
		}
		res := job.Result
		if res == nil {
			return fmt.Errorf("import job %s ended %s without a result", job.ID, job.State)
		}
		fmt.Fprintf(e.stdout, "imported %d persons (%d new, %d replaced, %d removed), %d doses into %s\n", res.Persons, res.Added, res.Replaced, res.Removed, res.Doses, code)
		return nil
	})
}

// cmdRecordsImports lists the center's import jobs, newest first.
func cmdRecordsImports(ctx context.Context, e *env, name string, args []string) error {
	return withOps(ctx, e, name, args, nil, func(ops admin.Operations, a admin.Actor) error {
		jobs, err := ops.ImportJobs(ctx)
		if err != nil {
			return err
		}
		if len(jobs) == 0 {
			fmt.Fprintln(e.stdout, "no import jobs")
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tMUNICIPALITY\tMODE\tSTATE\tPHASE\tROWS\tROWS/S\tLEFT\tOPERATOR\tSTARTED")
		for _, j := range jobs {
			phase, rows, left := "-", int64(0), "-"
			if j.Progress != nil {
				if j.Progress.Phase != "" {
					phase = string(j.Progress.Phase)
				}
				rows = j.Progress.Rows
			}
			if j.SecondsLeft >= 0 && !j.State.Finished() {
				left = (time.Duration(j.SecondsLeft) * time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%.0f\t%s\t%s\t%s\n", j.ID, j.Municipality, j.Mode, j.State, phase, rows, j.RowsPerSecond, left, j.Operator, j.Created.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

// cmdRecordsImportCancel cancels an import job; the records stay as they were.
func cmdRecordsImportCancel(ctx context.Context, e *env, name string, args []string) error {
	var id string
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&id, "id", "", "import job ID (records imports lists them)")
	}, func(ops admin.Operations, a admin.Actor) error {
		if id == "" {
			return errors.New("-id is required (records imports lists the jobs)")
		}
		j, err := ops.CancelImport(ctx, a, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "import job %s is %s; the records of %s are as they were\n", j.ID, j.State, j.Municipality)
		return nil
	})
}

// cmdRecordsFlag sets or clears one person's flag. The My Number is read
// from standard input, never from the command line, where the shell's
// history and the process list would keep it.
func cmdRecordsFlag(clear bool) command {
	return func(ctx context.Context, e *env, name string, args []string) error {
		var code, kind, reason, date string
		return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
			fs.StringVar(&code, "municipality", "", "6-digit local government code")
			fs.StringVar(&kind, "kind", "", "counter_only, deceased or moved_out")
			if !clear {
				fs.StringVar(&reason, "reason", "", "for counter_only: support_measure, alias_on_record, travel_document or staff_review")
				fs.StringVar(&date, "date", "", "for deceased and moved_out: YYYY-MM-DD")
			}
		}, func(ops admin.Operations, a admin.Actor) error {
			k, err := records.ParseFlagKind(kind)
			if err != nil {
				return errors.New("-kind must be counter_only, deceased or moved_out")
			}
			line, err := bufio.NewReader(io.LimitReader(e.stdin, 64)).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			myNumber := strings.TrimSpace(line)
			if myNumber == "" {
				return errors.New("give the person's My Number on standard input (never on the command line)")
			}
			if clear {
				err = ops.ClearRecordFlag(ctx, a, code, myNumber, k)
			} else {
				r, rerr := records.ParseCounterReason(reason)
				if rerr != nil {
					return errors.New("-reason must be support_measure, alias_on_record, travel_document or staff_review")
				}
				err = ops.SetRecordFlag(ctx, a, code, myNumber, records.FlagChange{Kind: k, Reason: r, Date: date})
			}
			if err != nil {
				return err
			}
			verb := "set"
			if clear {
				verb = "cleared"
			}
			fmt.Fprintf(e.stdout, "flag %s %s for one person in %s\n", kind, verb, code)
			return nil
		})
	}
}

func cmdRecordsCount(ctx context.Context, e *env, name string, args []string) error {
	return withOps(ctx, e, name, args, nil, func(ops admin.Operations, a admin.Actor) error {
		counts, err := ops.RecordCounts(ctx)
		if err != nil {
			return err
		}
		for _, c := range counts {
			fmt.Fprintf(e.stdout, "%s %d\n", c.Municipality, c.Records)
		}
		return nil
	})
}

func cmdRecordsDelete(ctx context.Context, e *env, name string, args []string) error {
	var code string
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&code, "municipality", "", "6-digit local government code")
	}, func(ops admin.Operations, a admin.Actor) error {
		n, err := ops.DeleteRecords(ctx, a, code)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "deleted %d records and the keys of region %s; rotate the master key to complete the deletion (docs/RECORDS.md)\n", n, code)
		return nil
	})
}

func cmdRotate(ctx context.Context, e *env, name string, args []string) error {
	return withOps(ctx, e, name, args, nil, func(ops admin.Operations, a admin.Actor) error {
		kid, err := ops.RotateSHCKey(ctx, a)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "new active SMART Health Card key %s; the previous key stays published as retired\n", kid)
		return nil
	})
}

func cmdRevoke(ctx context.Context, e *env, name string, args []string) error {
	var certID, kid, reason string
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&certID, "certificate-id", "", "certificate ID to revoke")
		fs.StringVar(&kid, "kid", "", "key ID that signed its SMART Health Card")
		fs.StringVar(&reason, "reason", "misprint", "reason code")
	}, func(ops admin.Operations, a admin.Actor) error {
		if err := ops.RevokeCertificate(ctx, a, certID, kid, reason); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "certificate %s revoked in the list of key %s\n", certID, kid)
		return nil
	})
}

// errAuditBroken makes `audit verify` exit 1 after printing its report.
var errAuditBroken = errors.New("the audit log does not verify")

func cmdAuditVerify(ctx context.Context, e *env, name string, args []string) error {
	var from, to string
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&from, "from", "", "first settlement day to recompute (YYYY-MM-DD)")
		fs.StringVar(&to, "to", "", "last settlement day to recompute (YYYY-MM-DD)")
	}, func(ops admin.Operations, a admin.Actor) error {
		rep, err := ops.VerifyAudit(ctx, from, to)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%d events, %d checkpoints verified; signed through event %d\n", rep.Events, rep.Checkpoints, rep.VerifiedThrough)
		if rep.Unchained > 0 {
			fmt.Fprintf(e.stdout, "%d events predate the hash chain (not checked)\n", rep.Unchained)
		}
		if rep.First != nil {
			fmt.Fprintf(e.stdout, "FIRST BROKEN LINK: event %d %s\n", rep.First.Seq, rep.First.What)
			for _, p := range rep.Problems[1:] {
				fmt.Fprintf(e.stdout, "  then event %d %s\n", p.Seq, p.What)
			}
		}
		if from != "" {
			for _, dc := range rep.Settlement {
				fmt.Fprintf(e.stdout, "%s %s %-14s %-9s events %d copies %d\n", dc.Day, dc.Municipality, dc.Type, dc.Kind, dc.Events, dc.Copies)
			}
			for _, m := range rep.Mismatches {
				fmt.Fprintf(e.stdout, "SETTLEMENT MISMATCH: %s\n", m)
			}
		}
		if !rep.OK() {
			return errAuditBroken
		}
		fmt.Fprintln(e.stdout, "audit log verified")
		return nil
	})
}
