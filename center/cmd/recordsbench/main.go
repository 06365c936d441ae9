// Command recordsbench measures the records component at city scale (see
// docs/BENCHMARKS.md): "city" generates a synthetic ledger (3.7 million
// persons by default, Yokohama's size) and imports it into a new records
// file, reporting time, rate, peak memory and stored size; "lookups"
// measures lookup latency with and without a full import of the same
// region running beside it. The generated persons are synthetic. With
// -postgres the records go into PostgreSQL (pgrecords) instead of a bbolt
// file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records/recordsbench"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgtest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "recordsbench:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("recordsbench", flag.ExitOnError)
	dir := fs.String("dir", filepath.Join(os.TempDir(), "recordsbench"), "directory for the generated ledger and the records file")
	persons := fs.Int("persons", 3_700_000, "persons in the generated ledger")
	seed := fs.Uint64("seed", 1, "generator seed")
	regenerate := fs.Bool("regenerate", false, "write the ledger even if the directory has one")
	changes := fs.Bool("changes", true, "city: also apply a changes file after the import")
	reimport := fs.Bool("reimport", false, "city: also import the full ledger again over the records")
	nosync := fs.Bool("nosync", false, "skip fsync (the center syncs)")
	pgURL := fs.String("postgres", "", "import into PostgreSQL (pgrecords) instead of a bbolt file: a postgres:// URL of a database without records, or \"private\" for a server of its own (initdb in -dir's temporary space, fsync on, stopped at the end)")
	keepPriority := fs.Bool("keep-priority", false, "import at normal priority instead of the lowered one the center uses")
	rate := fs.Int("rate", 1000, "lookups: lookups per second")
	workers := fs.Int("workers", 4, "lookups: goroutines issuing lookups")
	baseline := fs.Duration("baseline", 20*time.Second, "lookups: how long to measure without an import")
	quiet := fs.Bool("quiet", false, "no progress display")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memprofile := fs.String("memprofile", "", "write an allocation profile of the whole run to this file")
	if len(os.Args) < 2 {
		return fmt.Errorf("usage: recordsbench city|lookups [flags]")
	}
	mode := os.Args[1]
	fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if f, err := os.Create(*memprofile); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	if *pgURL == "private" {
		srv, err := pgtest.Start(pgtest.Options{Durable: true})
		if err != nil {
			return err
		}
		defer srv.Stop()
		if *pgURL, err = srv.CreateDatabase(ctx, "recordsbench"); err != nil {
			return err
		}
		fmt.Printf("private PostgreSQL server (fsync on) in %s\n", srv.Dir)
	}
	switch mode {
	case "city":
		opts := recordsbench.CityOptions{Dir: *dir, Persons: *persons, Seed: *seed, Regenerate: *regenerate, Changes: *changes, Reimport: *reimport, NoSync: *nosync, KeepPriority: *keepPriority, Postgres: *pgURL}
		if !*quiet {
			opts.Progress = os.Stderr
		}
		rep, err := recordsbench.City(ctx, opts)
		if err != nil {
			return err
		}
		fmt.Printf("ledger: %d persons, %d rows, %.1f MiB (generated in %s)\n", rep.Persons, rep.Rows, float64(rep.FileBytes)/(1<<20), rep.Generated.Round(time.Second))
		for _, f := range rep.Imports {
			r := f.Result
			fmt.Printf("%s: %s, %.0f rows/s; CPU %s, %.0f rows per CPU second; %d persons (%d added, %d replaced, %d removed, %d absent), %d doses; %s\n",
				f.What, f.Elapsed.Round(100*time.Millisecond), f.RowsPerSecond(), f.CPU.Round(100*time.Millisecond), f.RowsPerCPUSecond(), r.Persons, r.Added, r.Replaced, r.Removed, r.Absent, r.Doses, f.Memory)
		}
		what := "records file"
		if *pgURL != "" {
			what = "database"
		}
		fmt.Printf("%s after the first import: %.1f MiB (%.0f bytes per person)\n", what, float64(rep.RecordsFile)/(1<<20), float64(rep.RecordsFile)/float64(rep.Persons))
		fmt.Printf("active generation: %d records in %.1f MiB of pages (%.1f MiB in use): %.0f bytes per person, %.0f per dose\n",
			rep.Stored.Records, float64(rep.Stored.Bytes)/(1<<20), float64(rep.Stored.InUse)/(1<<20), rep.BytesPerPerson(), float64(rep.Stored.Bytes)/float64(rep.Rows))
		fmt.Printf("verified %d lookups against the generated persons\n", rep.LookupsVerified)
	case "lookups":
		rep, err := recordsbench.Lookups(ctx, recordsbench.LookupOptions{Dir: *dir, Persons: *persons, Seed: *seed, Rate: *rate, Workers: *workers, Baseline: *baseline, NoSync: *nosync, KeepPriority: *keepPriority, Postgres: *pgURL})
		if err != nil {
			return err
		}
		fmt.Printf("region of %d persons, %d lookups/s over %d goroutines\n", rep.Persons, *rate, *workers)
		fmt.Printf("without an import: %s\n", rep.Idle)
		fmt.Printf("during the import: %s\n", rep.DuringImport)
		fmt.Printf("import: %s, %.0f rows/s, CPU %s, %s\n", rep.Import.Elapsed.Round(100*time.Millisecond), rep.Import.RowsPerSecond(), rep.Import.CPU.Round(100*time.Millisecond), rep.Import.Memory)
		if rep.Idle.P99 > 0 {
			fmt.Printf("p99 during / without: %.2f\n", float64(rep.DuringImport.P99)/float64(rep.Idle.P99))
		}
	default:
		return fmt.Errorf("unknown mode %q: city or lookups", mode)
	}
	return nil
}
