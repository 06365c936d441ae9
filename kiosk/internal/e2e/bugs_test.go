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
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
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

// TestIssueResentOnceAfterReconnect shows a bug in centerclient (left to
// the lead; this test fails until it is fixed): when the connection drops
// before the answer, Client.Issue resends the request twice on the new
// connection instead of once. Issue takes the connection-change channel
// before send, and send waits for the reconnection, whose notification
// closes that very channel, so the loop goes round and sends again. The
// center's replay cache makes the duplicate harmless for issuance, but it
// doubles the traffic of every reconnecting kiosk and inflates the
// "replayed" count operators watch; ReportOutcome has the same pattern.
func TestIssueResentOnceAfterReconnect(t *testing.T) {
	env.ensureCenter(t)
	proxy := newFaultProxy(t, env.center.KioskAddr, 0, 2)
	c := directClientVia(t, kioskDirect, proxy.Addr())
	card, r := demoCard(t, "taro")
	req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: "012041", Kind: certificate.Domestic, Copies: 1, Card: readCard(t, card, r.PIN)}
	const replayed = `kioskcert_center_issue_requests_total{result="replayed"}`
	before := env.metric(t, replayed)

	// The answer is lost on the way back; the connection is then cut.
	proxy.holdAnswers()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type answer struct {
		resp *protocol.CertificateResponse
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := c.Issue(ctx, req)
		answers <- answer{resp, err}
	}()
	if !waitFor(20*time.Second, func() bool { return countEvents(env.audit(t, kioskDirect), "issued", req.RequestID) == 1 }) {
		t.Fatal("the center did not issue")
	}
	proxy.cutAll()
	a := <-answers
	if a.err != nil {
		t.Fatal(a.err)
	}
	if !a.resp.Replayed {
		t.Error("the answer after the reconnection is not a replay")
	}
	// Give a second resend time to arrive.
	waitFor(time.Second, func() bool { return env.metric(t, replayed)-before >= 2 })
	if d := env.metric(t, replayed) - before; d != 1 {
		t.Errorf("the request reached the center %v more times after the reconnection, want 1", d)
	}
	if err := c.ReportOutcome(ctx, protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled}); err != nil {
		t.Error(err)
	}
}
