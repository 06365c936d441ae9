package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestIssueResentOnceAfterReconnect: when the connection drops after the
// real center issued and before its answer arrived, Client.Issue sends the
// request once on the new connection and gets the same certificate back as
// a replay (once: the center's "replayed" count goes up by exactly one).
// The exact interleavings (a reconnect between write and wait, late
// answers) are tested against an in-process center in centerclient.
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
