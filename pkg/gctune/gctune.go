// Package gctune sets a process's garbage-collector defaults: a higher
// GOGC than Go's 100 for processes whose allocations are short-lived
// (a rendered PDF, an issuance), bounded by a soft memory limit, unless
// the operator has set GOGC or GOMEMLIMIT in the environment, which win.
package gctune

import (
	"fmt"
	"os"
	"runtime/debug"
)

// Settings are the defaults a process asks for.
type Settings struct {
	// Percent is the GOGC value: the heap may grow by this percentage of
	// the live heap before a collection. Zero leaves Go's default.
	Percent int
	// Limit is the soft memory limit in bytes (GOMEMLIMIT): above it the
	// collector runs as often as it must, whatever Percent says, so a
	// high Percent cannot run the process out of memory while there is
	// garbage to collect. Zero sets none.
	Limit int64
}

// Apply sets s where the environment does not, and says what is in force
// (for the start-up log line).
func Apply(s Settings) string {
	return apply(s, os.Getenv)
}

func apply(s Settings, getenv func(string) string) string {
	gogc := "100 (Go's default)"
	switch v := getenv("GOGC"); {
	case v != "":
		gogc = v + " (GOGC)"
	case s.Percent > 0:
		debug.SetGCPercent(s.Percent)
		gogc = fmt.Sprint(s.Percent)
	}
	limit := "none"
	switch v := getenv("GOMEMLIMIT"); {
	case v != "":
		limit = v + " (GOMEMLIMIT)"
	case s.Limit > 0:
		debug.SetMemoryLimit(s.Limit)
		limit = fmt.Sprintf("%d MiB", s.Limit>>20)
	}
	return "GOGC " + gogc + ", memory limit " + limit
}
