package centerclient

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/leaktest"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// barrier writes a status frame and waits until the center has read it:
// every frame the client wrote before is then counted.
func barrier(t *testing.T, tc *testCenter, c *Client) {
	t.Helper()
	before := tc.statusCount()
	c.SetStatus(protocol.Status{Reader: "ok", Printer: "ok", State: "idle"})
	tc.await("status frame", func() bool { return tc.statusCount() > before })
}

func (tc *testCenter) statusCount() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	k := 0
	for _, r := range tc.received {
		if r.msg.Type() == protocol.TypeStatus {
			k++
		}
	}
	return k
}

// awaitReconnect waits until the client runs on connection n.
func awaitReconnect(t *testing.T, tc *testCenter, c *Client, n int) {
	t.Helper()
	tc.await("reconnection", func() bool { return tc.connCount() >= n })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestIssue(t *testing.T) {
	tc := newTestCenter(t)
	c := tc.newClient(t)
	req := testIssue()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Issue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.RequestID != req.RequestID || len(resp.Certificates) != 1 {
		t.Fatalf("answer %+v", resp)
	}
	if err := c.ReportOutcome(ctx, protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1}); err != nil {
		t.Fatal(err)
	}
	if n := c.PendingOutcomes(); n != 0 {
		t.Fatalf("%d outcomes pending after the acknowledgement", n)
	}
}

// TestIssueResentAtOnceWhenReconnectedBeforeWaiting drops the connection
// and lets the client reconnect exactly between writing the request and
// waiting for its answer. The request went down with the first connection,
// so it must be sent again on the second at once, not after the flow's
// deadline.
func TestIssueResentAtOnceWhenReconnectedBeforeWaiting(t *testing.T) {
	tc := newTestCenter(t)
	c := tc.newClient(t)
	tc.setIssue(func(sc *serverConn, req protocol.Issue) {
		if sc.n > 1 { // the first connection's answer is lost with it
			sc.send(t, tc.certificate(req))
		}
	})
	var once sync.Once
	c.testHookSent = func(protocol.Message) {
		once.Do(func() {
			tc.cutAll()
			awaitReconnect(t, tc, c, 2)
		})
	}
	req := testIssue()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Issue(ctx, req)
	if err != nil {
		t.Fatalf("no answer after a reconnection between send and wait: %v", err)
	}
	if resp.RequestID != req.RequestID {
		t.Fatalf("answer to %s", resp.RequestID)
	}
	barrier(t, tc, c)
	if n := tc.count(2, protocol.TypeIssue, req.RequestID); n != 1 {
		t.Fatalf("the request was sent %d times on the new connection, want 1", n)
	}
}

// TestResentOnceAfterReconnect cuts the connection after the center has
// read the request (or outcome) and before it answers: the client sends
// it again on the next connection, once.
func TestResentOnceAfterReconnect(t *testing.T) {
	tests := []struct {
		name string
		typ  string
		call func(ctx context.Context, c *Client, req protocol.Issue) error
	}{
		{"issue", protocol.TypeIssue, func(ctx context.Context, c *Client, req protocol.Issue) error {
			_, err := c.Issue(ctx, req)
			return err
		}},
		{"outcome", protocol.TypeOutcome, func(ctx context.Context, c *Client, req protocol.Issue) error {
			return c.ReportOutcome(ctx, protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCenter(t)
			c := tc.newClient(t)
			tc.setIssue(func(sc *serverConn, req protocol.Issue) {
				if sc.n == 1 {
					sc.cut()
					return
				}
				sc.send(t, tc.certificate(req))
			})
			tc.setOutcome(func(sc *serverConn, o protocol.Outcome) {
				if sc.n == 1 {
					sc.cut()
					return
				}
				sc.send(t, protocol.Ack{RequestID: o.RequestID})
			})
			req := testIssue()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tt.call(ctx, c, req); err != nil {
				t.Fatal(err)
			}
			barrier(t, tc, c)
			if n := tc.count(2, tt.typ, req.RequestID); n != 1 {
				t.Fatalf("%s sent %d times on the new connection, want 1", tt.typ, n)
			}
			if n := c.PendingOutcomes(); n != 0 {
				t.Fatalf("%d outcomes pending", n)
			}
		})
	}
}

// TestLateIssueAnswerIsNoAcknowledgement: an answer to the issue that
// arrives while the outcome of the same request waits for its
// acknowledgement (the flow gave up waiting for the certificate and
// reported the request cancelled) must not settle the outcome.
func TestLateIssueAnswerIsNoAcknowledgement(t *testing.T) {
	tests := []struct {
		name string
		late func(tc *testCenter, req protocol.Issue) protocol.Message
	}{
		{"certificate", func(tc *testCenter, req protocol.Issue) protocol.Message { return tc.certificate(req) }},
		{"refusal", func(tc *testCenter, req protocol.Issue) protocol.Message {
			return protocol.NewError(req.RequestID, protocol.CodeNoRecord, "")
		}},
		{"rate limited", func(tc *testCenter, req protocol.Issue) protocol.Message {
			return protocol.NewError(req.RequestID, protocol.CodeRateLimited, "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCenter(t)
			c := tc.newClient(t)
			tc.setIssue(func(*serverConn, protocol.Issue) {})     // answered late, below
			tc.setOutcome(func(*serverConn, protocol.Outcome) {}) // acknowledged later, below
			req := testIssue()
			ictx, icancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer icancel()
			if _, err := c.Issue(ictx, req); !errors.Is(err, ErrNotConnected) {
				t.Fatalf("Issue without an answer: %v", err)
			}

			result := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				result <- c.ReportOutcome(ctx, protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeTimeout})
			}()
			tc.await("outcome", func() bool { return tc.count(1, protocol.TypeOutcome, req.RequestID) == 1 })
			sc := tc.conn(1)
			sc.send(t, tt.late(tc, req))
			sc.ping(t) // the client has read and dispatched the late answer
			select {
			case err := <-result:
				t.Fatalf("ReportOutcome returned %v on a late %s, before the acknowledgement", err, tt.name)
			case <-time.After(100 * time.Millisecond):
			}
			if n := c.PendingOutcomes(); n != 1 {
				t.Fatalf("%d outcomes pending before the acknowledgement, want 1", n)
			}
			sc.send(t, protocol.Ack{RequestID: req.RequestID})
			if err := <-result; err != nil {
				t.Fatalf("ReportOutcome after the acknowledgement: %v", err)
			}
			if n := c.PendingOutcomes(); n != 0 {
				t.Fatalf("%d outcomes pending after the acknowledgement", n)
			}
		})
	}
}

// TestLateAcknowledgementIsNoCertificate: an acknowledgement never
// answers an Issue.
func TestLateAcknowledgementIsNoCertificate(t *testing.T) {
	tc := newTestCenter(t)
	c := tc.newClient(t)
	tc.setIssue(func(sc *serverConn, req protocol.Issue) {
		sc.send(t, protocol.Ack{RequestID: req.RequestID}) // the certificate follows below
	})
	req := testIssue()
	result := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Issue(ctx, req)
		result <- err
	}()
	tc.await("issue", func() bool { return tc.count(1, protocol.TypeIssue, req.RequestID) == 1 })
	sc := tc.conn(1)
	sc.ping(t) // the client has read and dispatched the acknowledgement
	select {
	case err := <-result:
		t.Fatalf("Issue returned %v on an acknowledgement", err)
	case <-time.After(100 * time.Millisecond):
	}
	sc.send(t, tc.certificate(req))
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if n := tc.count(0, protocol.TypeIssue, req.RequestID); n != 1 {
		t.Fatalf("the request was sent %d times, want 1", n)
	}
}

// TestRetryableOutcomeErrorResent: the center could not record the
// outcome yet (unavailable); the client sends it again and returns on the
// acknowledgement.
func TestRetryableOutcomeErrorResent(t *testing.T) {
	tc := newTestCenter(t)
	c := tc.newClient(t)
	var mu sync.Mutex
	seen := 0
	tc.setOutcome(func(sc *serverConn, o protocol.Outcome) {
		mu.Lock()
		seen++
		first := seen == 1
		mu.Unlock()
		if first {
			sc.send(t, protocol.NewError(o.RequestID, protocol.CodeUnavailable, "still being issued"))
			return
		}
		sc.send(t, protocol.Ack{RequestID: o.RequestID})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := testIssue()
	if err := c.ReportOutcome(ctx, protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled}); err != nil {
		t.Fatal(err)
	}
	if n := tc.count(1, protocol.TypeOutcome, req.RequestID); n != 2 {
		t.Fatalf("outcome sent %d times, want 2", n)
	}
}

// TestUnknownRequestDropsOutcome: the center no longer holds the request;
// resending its outcome is pointless.
func TestUnknownRequestDropsOutcome(t *testing.T) {
	tc := newTestCenter(t)
	c := tc.newClient(t)
	tc.setOutcome(func(sc *serverConn, o protocol.Outcome) {
		sc.send(t, protocol.NewError(o.RequestID, protocol.CodeUnknownRequest, ""))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.ReportOutcome(ctx, protocol.Outcome{RequestID: testIssue().RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled})
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeUnknownRequest {
		t.Fatalf("ReportOutcome = %v, want unknown_request", err)
	}
	if n := c.PendingOutcomes(); n != 0 {
		t.Fatalf("%d outcomes still queued", n)
	}
}

// TestQueuedOutcomeSentOnReconnect: an outcome the caller stopped waiting
// for is sent on the next connection, once.
func TestQueuedOutcomeSentOnReconnect(t *testing.T) {
	tc := newTestCenter(t)
	c := tc.newClient(t)
	tc.setOutcome(func(sc *serverConn, o protocol.Outcome) {
		if sc.n > 1 {
			sc.send(t, protocol.Ack{RequestID: o.RequestID})
		}
	})
	req := testIssue()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.ReportOutcome(ctx, protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("ReportOutcome without an acknowledgement: %v", err)
	}
	if n := c.PendingOutcomes(); n != 1 {
		t.Fatalf("%d outcomes queued, want 1", n)
	}
	tc.cutAll()
	awaitReconnect(t, tc, c, 2)
	tc.await("acknowledgement", func() bool { return c.PendingOutcomes() == 0 })
	barrier(t, tc, c)
	if n := tc.count(2, protocol.TypeOutcome, req.RequestID); n != 1 {
		t.Fatalf("queued outcome sent %d times on the new connection, want 1", n)
	}
}

// TestRunLeavesNoGoroutine stops the client while a request waits for
// its answer and checks that nothing the client started is still running
// once Run has returned.
func TestRunLeavesNoGoroutine(t *testing.T) {
	tc := newTestCenter(t)
	tc.setIssue(func(*serverConn, protocol.Issue) {}) // never answered
	c := New(Config{URL: tc.url, TLS: tc.tls, MinBackoff: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan struct{})
	go func() { c.Run(ctx); close(ran) }()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	ictx, icancel := context.WithCancel(context.Background())
	defer icancel()
	issued := make(chan error, 1)
	req := testIssue()
	go func() {
		_, err := c.Issue(ictx, req)
		issued <- err
	}()
	tc.await("issue", func() bool { return tc.count(1, protocol.TypeIssue, req.RequestID) == 1 })

	cancel()
	<-ran
	icancel()
	if err := <-issued; !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Issue after the client stopped: %v", err)
	}
	leaktest.Check(t, "kiosk/internal/centerclient.(*Client)", "kiosk/internal/centerclient.(*connection)")
}

// TestBusyRetriedAfterRetryAfter: a center at capacity answers busy with
// retryAfterMs; the client sends the same request again no sooner than
// half that (the jitter's floor) and returns the certificate.
func TestBusyRetriedAfterRetryAfter(t *testing.T) {
	tc := newTestCenter(t)
	c := tc.newClient(t)
	const retryAfter = 200 * time.Millisecond
	var mu sync.Mutex
	var sent []time.Time
	tc.setIssue(func(sc *serverConn, req protocol.Issue) {
		mu.Lock()
		sent = append(sent, time.Now())
		first := len(sent) == 1
		mu.Unlock()
		if first {
			e := protocol.NewError(req.RequestID, protocol.CodeBusy, "at capacity")
			e.RetryAfterMs = int(retryAfter / time.Millisecond)
			sc.send(t, e)
			return
		}
		sc.send(t, tc.certificate(req))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Issue(ctx, testIssue()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 2 {
		t.Fatalf("request sent %d times, want 2", len(sent))
	}
	if gap := sent[1].Sub(sent[0]); gap < retryAfter/2 {
		t.Fatalf("sent again after %v, before half of retryAfterMs (%v)", gap, retryAfter/2)
	}
}

func TestRetryWait(t *testing.T) {
	for _, tt := range []struct {
		e        *protocol.Error
		min, max time.Duration
		again    bool
	}{
		{protocol.NewError("", protocol.CodeUnavailable, ""), 500 * time.Millisecond, 500 * time.Millisecond, true},
		{&protocol.Error{Code: protocol.CodeBusy, RetryAfterMs: 1000}, 500 * time.Millisecond, 1500 * time.Millisecond, true},
		{&protocol.Error{Code: protocol.CodeBusy}, 250 * time.Millisecond, 750 * time.Millisecond, true},
		{protocol.NewError("", protocol.CodeRateLimited, ""), 0, 0, false},
		{&protocol.Error{Code: protocol.CodeRateLimited, RetryAfterMs: 50}, 50 * time.Millisecond, 50 * time.Millisecond, true},
		{&protocol.Error{Code: protocol.CodeRateLimited, RetryAfterMs: 60000}, 0, 0, false},
		{protocol.NewError("", protocol.CodeInternal, ""), 0, 0, false},
		{protocol.NewError("", protocol.CodeNoRecord, ""), 0, 0, false},
	} {
		for range 20 {
			d, again := retryWait(tt.e)
			if again != tt.again || d < tt.min || (tt.again && d >= tt.max && tt.min != tt.max) || (tt.min == tt.max && d != tt.min) {
				t.Fatalf("retryWait(%s, %d ms) = %v, %v; want %v in [%v, %v)", tt.e.Code, tt.e.RetryAfterMs, d, again, tt.again, tt.min, tt.max)
			}
		}
	}
}
