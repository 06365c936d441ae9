package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/opsclient"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/recordsbench"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// An import-load run measures what a large ledger import does to issuance:
// the real center process serves a fleet of kiosks issuing at a steady
// rate; the issuance latency is measured without an import, then while a
// city's ledger is imported through the operations API (an import job, as
// `issuance-center records import` runs it), then without again. The p99
// during the import is compared with the p99 of the two periods without.

// ImportLoadOptions shape an import-load run.
type ImportLoadOptions struct {
	// Dir holds the center and its kiosks (as SetupNational lays them
	// out; reused) and the generated ledger (reused).
	Dir       string
	CenterBin string
	// Kiosks connected; Rate issuances a second offered by them.
	Kiosks int
	Rate   float64
	// Persons in the imported ledger (about 3.2 dose rows each), of
	// Municipality (default 141003, Yokohama City: a region of its own,
	// not one the kiosks issue for).
	Persons      int
	Municipality string
	// Baseline is each period without an import (before and after);
	// MaxDuring bounds the period with one (the import usually ends first).
	Baseline, MaxDuring time.Duration
	// Slice is how long each fleet run lasts while the import runs (the
	// fleet is run in slices until the import ends). Default 5 s.
	Slice time.Duration
	Log   io.Writer
}

// ImportLoad is the result of an import-load run.
type ImportLoad struct {
	Kiosks       int     `json:"kiosks"`
	Rate         float64 `json:"rate"`
	Persons      int     `json:"persons"`
	Rows         int     `json:"rows"`
	FileBytes    int64   `json:"fileBytes"`
	Municipality string  `json:"municipality"`
	// Before, During and After are the fleet's figures in each period.
	Before, During, After *FleetReport
	// ImportSeconds is the import job's time from the first byte to its
	// end; ImportResult what it did; CenterPeakRSS the center's largest
	// resident set while it ran.
	ImportSeconds float64              `json:"importSeconds"`
	ImportResult  records.ImportResult `json:"importResult"`
	CenterPeakRSS int64                `json:"centerPeakRss"`
	// Load1Before and Load1After are the machine's 1-minute load average.
	Load1Before, Load1After float64
}

// Without is the latency of the periods without an import, together.
func (r *ImportLoad) Without() *Histogram {
	var h Histogram
	h.Merge(&r.Before.Issue)
	h.Merge(&r.After.Issue)
	return &h
}

// Ratio is the p99 during the import over the p99 without.
func (r *ImportLoad) Ratio() float64 {
	w := r.Without().Quantile(0.99)
	if w <= 0 {
		return 0
	}
	return float64(r.During.Issue.Quantile(0.99)) / float64(w)
}

// Failed reports answers not bound to their request or failed requests.
func (r *ImportLoad) Failed() error {
	var errs []error
	for _, p := range []struct {
		name string
		rep  *FleetReport
	}{{"before", r.Before}, {"during", r.During}, {"after", r.After}} {
		if p.rep == nil {
			continue
		}
		if n := p.rep.Mismatches + p.rep.ReplayMismatches; n > 0 {
			errs = append(errs, fmt.Errorf("%s the import: %d answers not bound to their request", p.name, n))
		}
		if len(p.rep.Errors) > 0 {
			errs = append(errs, fmt.Errorf("%s the import: requests failed: %s", p.name, counts(p.rep.Errors)))
		}
	}
	return errors.Join(errs...)
}

// WriteText writes the figures as a small table.
func (r *ImportLoad) WriteText(w io.Writer) {
	fmt.Fprintf(w, "import beside issuance: %d persons (%d dose rows, %.0f MiB of CSV) into %s; %d kiosks offering %.0f issuances/s\n",
		r.Persons, r.Rows, float64(r.FileBytes)/(1<<20), r.Municipality, r.Kiosks, r.Rate)
	fmt.Fprintf(w, "%-8s %9s %8s %9s %9s %9s %9s  %s\n", "period", "seconds", "issued", "rate/s", "p50", "p99", "max", "errors")
	for _, p := range []struct {
		name string
		rep  *FleetReport
	}{{"before", r.Before}, {"during", r.During}, {"after", r.After}} {
		h := &p.rep.Issue
		fmt.Fprintf(w, "%-8s %9.1f %8d %9.1f %9s %9s %9s  %s\n", p.name, p.rep.Elapsed, p.rep.Completed, float64(p.rep.Completed)/max(p.rep.Elapsed, 1e-9),
			ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Max()), counts(p.rep.Errors))
	}
	verdict := "within"
	if r.Ratio() > 2 {
		verdict = "NOT within"
	}
	fmt.Fprintf(w, "p99 during the import / p99 without (before and after): %s / %s = %.2f× (%s the 2× target)\n",
		ms(r.During.Issue.Quantile(0.99)), ms(r.Without().Quantile(0.99)), r.Ratio(), verdict)
	rows := float64(r.Rows) / max(r.ImportSeconds, 1e-9)
	fmt.Fprintf(w, "import: %.1f s, %.0f rows/s, %d persons (%d new, %d replaced, %d removed); center peak RSS %.0f MiB; load %.1f before, %.1f after\n",
		r.ImportSeconds, rows, r.ImportResult.Persons, r.ImportResult.Added, r.ImportResult.Replaced, r.ImportResult.Removed,
		float64(r.CenterPeakRSS)/(1<<20), r.Load1Before, r.Load1After)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// Load1 is the machine's 1-minute load average (0 if unknown).
func Load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// ledgerFile generates (or reuses) the ledger of o.Persons synthetic
// persons and returns its path and dose rows.
func ledgerFile(o ImportLoadOptions, logf func(string, ...any)) (string, int, error) {
	path := filepath.Join(o.Dir, fmt.Sprintf("ledger-%s-%d.csv", o.Municipality, o.Persons))
	rowsPath := path + ".rows"
	if b, err := os.ReadFile(rowsPath); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return path, n, nil
		}
	}
	logf("generating a ledger of %d persons in %s", o.Persons, path)
	f, err := os.Create(path)
	if err != nil {
		return "", 0, err
	}
	rows, err := recordsbench.Generate(f, o.Municipality, 0, o.Persons, 1)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, err
	}
	return path, rows, os.WriteFile(rowsPath, []byte(strconv.Itoa(rows)+"\n"), 0o644)
}

// RunImportLoad runs an import-load run.
func RunImportLoad(ctx context.Context, o ImportLoadOptions) (*ImportLoad, error) {
	if o.Municipality == "" {
		o.Municipality = "141003"
	}
	if o.Slice <= 0 {
		o.Slice = 5 * time.Second
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "loadgen: "+format+"\n", args...)
		}
	}
	logf("setting up %d kiosks in %s", o.Kiosks, o.Dir)
	if err := SetupNational(ctx, o.Dir, o.Kiosks, o.Log); err != nil {
		return nil, err
	}
	ledger, rows, err := ledgerFile(o, logf)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(ledger)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.Dir, "center", admin.ConfigFile)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	token, err := os.ReadFile(cfg.Path(cfg.OpsTokenFile))
	if err != nil {
		return nil, fmt.Errorf("loadtest: the operator token: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(o.Dir, "center.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cp, err := StartCenter(o.CenterBin, cfgPath, logFile)
	if err != nil {
		return nil, err
	}
	defer cp.Kill(syscall.SIGTERM)
	ops := &opsclient.Client{BaseURL: "http://" + cp.Ops, Token: strings.TrimSpace(string(token))}

	ks, err := LoadKioskRange(filepath.Join(o.Dir, "kiosks"), "localhost", 0, o.Kiosks)
	if err != nil {
		return nil, err
	}
	auth, err := carddata.LoadAuthority(filepath.Join(o.Dir, "authority"))
	if err != nil {
		return nil, err
	}
	ap, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	cards := make([][]Card, len(ks))
	for i := range ks {
		if cards[i], err = DemoCards(auth, ap, i, 1, []certificate.Kind{certificate.Domestic}); err != nil {
			return nil, err
		}
	}
	port := cp.Kiosk[strings.LastIndexByte(cp.Kiosk, ':')+1:]
	seed := uint64(1)
	fleet := func(d time.Duration) (*FleetReport, error) {
		seed++
		return RunFleet(ctx, FleetConfig{Addr: "127.0.0.1:" + port, Kiosks: ks, Cards: cards, Rate: o.Rate, Duration: d,
			Timeout: 30 * time.Second, Seed: seed})
	}
	res := &ImportLoad{Kiosks: len(ks), Rate: o.Rate, Persons: o.Persons, Rows: rows, FileBytes: fi.Size(), Municipality: o.Municipality}
	time.Sleep(2 * time.Second) // let the center settle
	res.Load1Before = Load1()
	// A short warm-up (connections, caches), not counted.
	if _, err := fleet(3 * time.Second); err != nil {
		return nil, err
	}
	logf("issuing without an import for %s", o.Baseline)
	if res.Before, err = fleet(o.Baseline); err != nil {
		return nil, err
	}

	// The import, as the CLI runs it: a job, then its file.
	f, err := os.Open(ledger)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	op := admin.Actor{}
	job, err := ops.StartImport(ctx, op, admin.ImportStart{Municipality: o.Municipality, Size: fi.Size()})
	if err != nil {
		return nil, err
	}
	logf("import job %s: %d persons, %d rows, %.0f MiB", job.ID, o.Persons, rows, float64(fi.Size())/(1<<20))
	type upload struct {
		job admin.ImportJob
		err error
	}
	importStart := time.Now()
	uploaded := make(chan upload, 1)
	go func() {
		j, err := ops.UploadImport(ctx, op, job.ID, f)
		uploaded <- upload{j, err}
	}()
	var peak sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				if _, rss, err := ProcStat(cp.PID()); err == nil {
					peak.Lock()
					res.CenterPeakRSS = max(res.CenterPeakRSS, rss)
					peak.Unlock()
				}
			}
		}
	}()
	res.During = &FleetReport{Errors: map[string]int{}, Retried: map[string]int{}}
	var up *upload
	var during float64
	deadline := time.Now().Add(o.MaxDuring)
	for up == nil && time.Now().Before(deadline) && ctx.Err() == nil {
		rep, err := fleet(o.Slice)
		if err != nil {
			return nil, err
		}
		res.During.Merge(rep)
		during += rep.Elapsed
		select {
		case u := <-uploaded:
			up = &u
		default:
			if j, err := ops.ImportJobStatus(ctx, job.ID); err == nil && j.Progress != nil {
				logf("import %s: %s, %d rows, %.0f rows/s", job.ID, j.Progress.Phase, j.Progress.Rows, j.RowsPerSecond)
			}
		}
	}
	if up == nil {
		select {
		case u := <-uploaded:
			up = &u
		case <-time.After(time.Until(deadline.Add(10 * time.Minute))):
			return nil, fmt.Errorf("loadtest: import job %s did not end within %s", job.ID, o.MaxDuring+10*time.Minute)
		}
	}
	res.ImportSeconds = time.Since(importStart).Seconds()
	res.During.Elapsed = during
	close(stopSampling)
	<-sampled
	if up.err != nil {
		return nil, fmt.Errorf("loadtest: the import: %w", up.err)
	}
	res.ImportResult = *up.job.Result
	logf("import ended after %.1f s; issuing without an import for %s", res.ImportSeconds, o.Baseline)
	if res.After, err = fleet(o.Baseline); err != nil {
		return nil, err
	}
	res.Load1After = Load1()
	return res, nil
}
