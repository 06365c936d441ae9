package gctune

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	tests := []struct {
		name        string
		s           Settings
		env         map[string]string
		wantPercent int
		wantLimit   int64
		wantSays    string
	}{
		{"defaults set", Settings{Percent: 400, Limit: 2 << 30}, nil, 400, 2 << 30, "GOGC 400, memory limit 2048 MiB"},
		{"nothing asked", Settings{}, nil, 100, math.MaxInt64, "GOGC 100 (Go's default), memory limit none"},
		{"environment wins", Settings{Percent: 400, Limit: 2 << 30}, map[string]string{"GOGC": "50", "GOMEMLIMIT": "1GiB"}, 100, math.MaxInt64, "GOGC 50 (GOGC), memory limit 1GiB (GOMEMLIMIT)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			says := apply(tc.s, func(k string) string { return tc.env[k] })
			if says != tc.wantSays {
				t.Errorf("apply says %q, want %q", says, tc.wantSays)
			}
			// The environment's values are applied by the runtime at start,
			// not by apply: here they were not, so the previous values stay.
			if got := debug.SetGCPercent(100); got != tc.wantPercent {
				t.Errorf("GC percent %d, want %d", got, tc.wantPercent)
			}
			if got := debug.SetMemoryLimit(math.MaxInt64); got != tc.wantLimit {
				t.Errorf("memory limit %d, want %d", got, tc.wantLimit)
			}
		})
	}
}
