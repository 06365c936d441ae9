package e2e

// Tests that show bugs found in other packages while writing the
// end-to-end tests. They fail until the bug is fixed; each names the
// package, the cause and the effect. Left to the lead.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/pcsc"
	"github.com/kioskcert/kioskcert/cardreader/pcsctest"
)

// TestPCSCWaitReturnsWhenCancelled shows a bug in cardreader/pcsc: a wait
// for a card (or for its removal) whose context is cancelled returns only
// after one or more further seconds. waitFor loops over 1-second
// SCardGetStatusChange calls without checking the context, and state()
// cancels a call with SCardCancel from a goroutine that fires as soon as
// the context is done, usually before SCardGetStatusChange has started, so
// the cancel is lost and the call runs its full second; the loop then
// starts another. Effects: a kiosk agent takes seconds to shut down, and
// the flow's removal watcher (stopped after every card phase) keeps a
// PC/SC context and a goroutine busy for seconds after each session.
func TestPCSCWaitReturnsWhenCancelled(t *testing.T) {
	r, err := pcsc.Open(pcsc.Options{Reader: pcsctest.ReaderName})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- r.WaitForCard(ctx) }() // the reader is empty
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("try %d: WaitForCard returned %v, want context.Canceled", i, err)
			}
			if d := time.Since(start); d > 250*time.Millisecond {
				t.Errorf("try %d: WaitForCard with a cancelled context returned after %v, want at once", i, d.Round(time.Millisecond))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("try %d: WaitForCard with a cancelled context still running after 10 s", i)
		}
	}
}
