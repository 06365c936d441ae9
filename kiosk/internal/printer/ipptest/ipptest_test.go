package ipptest

import (
	"slices"
	"strings"
	"testing"
)

// TestStart starts printers in parallel (as several test packages do) and
// checks the helper's view of them: idle with no reasons, then an empty
// tray reported as media-empty once the paper level is 0.
func TestStart(t *testing.T) {
	for _, name := range []string{"a", "b", "c"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := Start(t, Options{})
			if !strings.HasPrefix(p.URI, "ipp://127.0.0.1:") {
				t.Errorf("URI %q", p.URI)
			}
			if r := p.StateReasons(t); !slices.Equal(r, []string{"none"}) {
				t.Errorf("fresh printer reasons %v, want [none]", r)
			}
			p.SetPaperLevel(t, 0)
			if r := p.StateReasons(t); len(r) != 1 || !strings.HasPrefix(r[0], "media-empty") {
				t.Errorf("empty tray reasons %v, want media-empty", r)
			}
			if len(p.JobStates(t)) != 0 || len(p.Documents(t)) != 0 {
				t.Error("fresh printer has jobs")
			}
			p.Stop()
			p.Stop() // idempotent
		})
	}
}
