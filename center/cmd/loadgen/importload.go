package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/loadtest"
)

// importRun runs loadgen import.
func importRun(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	self, _ := os.Executable()
	fs := flag.NewFlagSet("import", flag.ExitOnError)
	var o loadtest.ImportLoadOptions
	fs.StringVar(&o.Dir, "dir", "out/import", "run directory (center, kiosks, generated ledger; reused)")
	fs.StringVar(&o.CenterBin, "center-bin", filepath.Join(filepath.Dir(self), "issuance-center"), "issuance-center binary")
	fs.IntVar(&o.Kiosks, "kiosks", 200, "kiosks connected")
	fs.Float64Var(&o.Rate, "rate", 50, "issuances a second offered")
	fs.IntVar(&o.Persons, "persons", 1_000_000, "persons in the imported ledger (about 3.2 dose rows each)")
	fs.StringVar(&o.Municipality, "municipality", "141003", "the ledger's municipality (not one the kiosks issue for)")
	fs.DurationVar(&o.Baseline, "baseline", 20*time.Second, "each period without an import (before and after)")
	fs.DurationVar(&o.MaxDuring, "max-during", 30*time.Minute, "longest period of issuance while the import runs")
	jsonOut := fs.String("json", "", "also write the figures as JSON to this file")
	fs.Parse(args)
	o.Log = os.Stderr
	r, err := loadtest.RunImportLoad(ctx, o)
	if err != nil {
		return err
	}
	r.WriteText(os.Stdout)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return r.Failed()
}
