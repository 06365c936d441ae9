package loadtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// Sample is the center process's resources at one moment of a run: what a
// soak must show flat.
type Sample struct {
	Elapsed    time.Duration `json:"elapsed"` // since the rate started
	RSS        int64         `json:"rss"`
	HeapInUse  float64       `json:"heapInUse"`
	Goroutines float64       `json:"goroutines"`
	OpenFiles  int           `json:"openFiles"`
	Connected  float64       `json:"connected"`
}

// sampleCenter reads the center's resources every interval until ctx ends
// and returns what it read. A reading that fails (the center restarting)
// is skipped.
func sampleCenter(ctx context.Context, pid int, ops string, interval time.Duration) []Sample {
	var out []Sample
	t0 := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
		s := Sample{Elapsed: time.Since(t0)}
		var err error
		if _, s.RSS, err = ProcStat(pid); err != nil {
			continue
		}
		if s.HeapInUse, err = Metric(ops, "go_memstats_heap_inuse_bytes"); err != nil {
			continue
		}
		s.Goroutines, _ = Metric(ops, "go_goroutines")
		s.Connected, _ = Metric(ops, "kioskcert_center_kiosks_connected")
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			s.OpenFiles = len(fds)
		}
		out = append(out, s)
	}
}

// WriteSamples prints a run's samples as a table, then the change from the
// first sample taken after warm-up to the last (a soak's verdict: memory,
// goroutines and open files flat).
func WriteSamples(w io.Writer, samples []Sample, warmup time.Duration) {
	if len(samples) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%8s %9s %9s %10s %10s %10s\n", "t", "RSS MB", "heap MB", "goroutines", "open files", "connected")
	for _, s := range samples {
		fmt.Fprintf(w, "%8s %9.1f %9.1f %10.0f %10d %10.0f\n", s.Elapsed.Round(time.Second), float64(s.RSS)/(1<<20), s.HeapInUse/(1<<20), s.Goroutines, s.OpenFiles, s.Connected)
	}
	first := samples[0]
	for _, s := range samples {
		if s.Elapsed >= warmup {
			first = s
			break
		}
	}
	last := samples[len(samples)-1]
	fmt.Fprintf(w, "from %s to %s: RSS %+.1f MB, heap %+.1f MB, goroutines %+.0f, open files %+d\n",
		first.Elapsed.Round(time.Second), last.Elapsed.Round(time.Second),
		float64(last.RSS-first.RSS)/(1<<20), (last.HeapInUse-first.HeapInUse)/(1<<20), last.Goroutines-first.Goroutines, last.OpenFiles-first.OpenFiles)
}
