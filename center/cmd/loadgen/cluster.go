package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/cluster"
)

// clusterRun is `loadgen cluster`: several center instances on one
// PostgreSQL (cluster.RunScale).
func clusterRun(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	self, _ := os.Executable()
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	var o cluster.ScaleOptions
	fs.StringVar(&o.Dir, "dir", "out/cluster", "run directory (replaced when the run starts its own PostgreSQL)")
	fs.StringVar(&o.CenterBin, "center-bin", filepath.Join(filepath.Dir(self), "issuance-center"), "issuance-center binary")
	fs.StringVar(&o.Store, "store", "", "PostgreSQL URL (empty: a private server with fsync on, for this run)")
	fs.IntVar(&o.Instances, "instances", 4, "center instances (one fleet process each, at most 20,000 open files)")
	fs.IntVar(&o.Kiosks, "kiosks", 60000, "kiosks connected, spread over the instances")
	fs.Float64Var(&o.Rate, "rate", 400, "offered issuances a second, all instances together")
	fs.DurationVar(&o.Duration, "duration", 60*time.Second, "how long to offer the rate")
	fs.Parse(args)
	o.LoadgenBin, o.Log = self, os.Stderr
	r, err := cluster.RunScale(ctx, o)
	if err != nil {
		return err
	}
	r.WriteText(os.Stdout)
	if r.Report.Mismatches+r.Report.ReplayMismatches > 0 {
		return errors.New("answers not bound to their request")
	}
	return nil
}
