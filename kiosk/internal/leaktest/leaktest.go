// Package leaktest checks, in tests, that no goroutine started by a piece
// of code outlives the call that owns it: every goroutine must be joined by
// its owner (a Run that returns, a Close that waits).
//
//	done := make(chan struct{})
//	go func() { client.Run(ctx); close(done) }()
//	...
//	cancel()
//	<-done
//	leaktest.Check(t, "kiosk/internal/centerclient.(*Client)")
//
// Check looks at the stacks of all goroutines at once (runtime.Stack) and
// fails if one is still running a function whose qualified name starts with
// a given prefix, or was created by one. It waits only for the few
// instructions a joined goroutine may still run after signalling its owner
// (up to Grace), not for goroutines that exit on their own later: those are
// exactly the ones nobody waited for. Unlike a whole-process check it
// ignores goroutines of other packages (test servers, the HTTP client's
// idle connections), so it can run while those are still alive.
package leaktest

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Grace is how long Check lets a goroutine that has already signalled its
// owner finish returning.
const Grace = 100 * time.Millisecond

// Check fails t if a goroutine other than the caller's runs, or was created
// by, a function whose name starts with one of prefixes (import path
// included, e.g. "kiosk/internal/flow.(*Kiosk)").
func Check(t testing.TB, prefixes ...string) {
	t.Helper()
	deadline := time.Now().Add(Grace)
	for {
		left := Running(prefixes...)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaktest: %d goroutine(s) outlived their owner:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(time.Millisecond)
	}
}

// Running returns the stacks of the goroutines, the caller's excepted,
// that run or were created by a function whose name starts with one of
// prefixes.
func Running(prefixes ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	// The first stack is the caller's own goroutine.
	for i, g := range bytes.Split(buf, []byte("\n\n")) {
		if i == 0 {
			continue
		}
		if matches(string(g), prefixes) {
			out = append(out, string(g))
		}
	}
	return out
}

// matches reports whether a goroutine's stack has a frame, or a "created
// by" line, naming a function with one of the prefixes. Frame lines are the
// function name with its import path; file lines start with a tab.
func matches(stack string, prefixes []string) bool {
	for _, line := range strings.Split(stack, "\n") {
		if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "goroutine ") {
			continue
		}
		line = strings.TrimPrefix(line, "created by ")
		for _, p := range prefixes {
			if strings.Contains(line, "/"+p) {
				return true
			}
		}
	}
	return false
}
