package server

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestConnectionsPerKiosk: one kiosk certificate holds at most two
// connections; a third closes the oldest.
func TestConnectionsPerKiosk(t *testing.T) {
	h := newHarness(t, nil)
	conf := h.enroll(t, "K1", store.KioskActive)
	var conns []*client
	for range 3 {
		c, _, err := h.dial(t, conf, nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	var ce *websocket.CloseError
	if _, err := conns[0].tryRead(); !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("oldest connection read %v, want closed (policy violation)", err)
	}
	for _, c := range conns[1:] {
		c.send(protocol.Ping{Nonce: "x"})
		if _, ok := c.read().(protocol.Pong); !ok {
			t.Fatal("a newer connection was closed")
		}
	}
	waitFor(t, func() bool { return h.srv.Connections() == 2 })
}

// TestFrameFlood: frames beyond the rate are dropped, and a connection that
// keeps flooding is closed; the log says so once, not per frame; a
// bystander kiosk is served throughout.
func TestFrameFlood(t *testing.T) {
	// The test's clients answer heartbeats only while reading; a slow
	// heartbeat keeps the idle bystander connected meanwhile.
	h := newHarness(t, func(c *Config) {
		c.FrameRate, c.FrameBurst, c.FloodGrace, c.Heartbeat = 5, 5, 300*time.Millisecond, time.Minute
	})
	flooder, _, err := h.dial(t, h.enroll(t, "K-FLOOD", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	bystander, _, err := h.dial(t, h.enroll(t, "K-CALM", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	frame, _ := protocol.Encode(protocol.Ping{Nonce: "f"})
	deadline := time.Now().Add(3 * time.Second)
	closed := false
	for time.Now().Before(deadline) && !closed {
		flooder.ws.SetWriteDeadline(time.Now().Add(time.Second))
		if err := flooder.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			closed = true
		}
		time.Sleep(time.Millisecond)
	}
	if !closed {
		// The close frame may still be in flight: reading finds it.
		for {
			if _, err := flooder.tryRead(); err != nil {
				closed = true
				break
			}
		}
	}
	if !closed {
		t.Fatal("a flooding connection was not closed")
	}
	bystander.send(protocol.Ping{Nonce: "calm"})
	if p, ok := bystander.read().(protocol.Pong); !ok || p.Nonce != "calm" {
		t.Fatal("the bystander was not served")
	}
	if n := strings.Count(h.log.String(), "kiosk disconnected for flooding"); n != 1 {
		t.Errorf("flood logged %d times, want once", n)
	}
}

// TestBadFramesAreSampledInTheLog: ten thousand bad frames write a line or
// two, never the frames' content.
func TestBadFramesAreSampledInTheLog(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FrameRate, c.FrameBurst = 100000, 100000 })
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := "123456789018" // a My Number where a field name goes
	bad := []byte(`{"v":1,"type":"issue","body":{"` + secret + `":1}}`)
	go func() {
		for range 2000 {
			c.ws.WriteMessage(websocket.TextMessage, bad)
		}
	}()
	for range 2000 {
		e, ok := c.read().(*protocol.Error)
		if !ok || e.Code != protocol.CodeBadMessage || strings.Contains(e.Detail, secret) {
			t.Fatalf("answer %#v", e)
		}
	}
	log := h.log.String()
	if strings.Contains(log, secret) {
		t.Fatal("the frame's content reached the log")
	}
	if n := strings.Count(log, "bad frame from kiosk"); n > 2 {
		t.Errorf("%d log lines for 2000 bad frames", n)
	}
}

// TestKioskIssueRate: new requests beyond the kiosk's rate are refused
// rate_limited; the retry of an admitted request is not counted.
func TestKioskIssueRate(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.KioskIssueRate, c.KioskIssueBurst = 0.001, 2 })
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	var last protocol.Issue
	for i := range 2 {
		last = newIssue()
		c.send(last)
		if m := c.read(); m.Type() != protocol.TypeCertificate {
			t.Fatalf("request %d within the burst refused: %#v", i, m)
		}
	}
	c.send(last) // a retry: free
	if r, ok := c.read().(protocol.CertificateResponse); !ok || !r.Replayed {
		t.Fatal("the retry of an admitted request was refused")
	}
	third := newIssue()
	c.send(third)
	if e, ok := c.read().(*protocol.Error); !ok || e.Code != protocol.CodeRateLimited || e.RequestID != third.RequestID {
		t.Fatalf("request beyond the kiosk's rate: %#v", e)
	}
}

// TestRequestOverFrameRate: a request frame over the connection's frame
// rate is answered rate_limited with when to send it again, never dropped
// unanswered (its kiosk would wait out its whole timeout); sent again after
// that, it is served.
func TestRequestOverFrameRate(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.FrameRate, c.FrameBurst, c.FloodGrace, c.Heartbeat = 2, 2, time.Minute, time.Minute
	})
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.send(protocol.Ping{Nonce: "a"})
	c.send(protocol.Ping{Nonce: "b"})
	c.send(protocol.Ping{Nonce: "dropped"}) // over the rate, carries no request: dropped
	req := newIssue()
	c.send(req)
	var e *protocol.Error
	for e == nil {
		switch m := c.read().(type) {
		case protocol.Pong:
			if m.Nonce == "dropped" {
				t.Fatal("a ping over the frame rate was answered")
			}
		case *protocol.Error:
			e = m
		default:
			t.Fatalf("unexpected %#v", m)
		}
	}
	if e.Code != protocol.CodeRateLimited || !e.Retryable || e.RequestID != req.RequestID || e.RetryAfterMs < 1 || e.RetryAfterMs > 1000 {
		t.Fatalf("request over the frame rate: %#v", e)
	}
	time.Sleep(time.Duration(e.RetryAfterMs)*time.Millisecond + 50*time.Millisecond)
	c.send(req)
	if m := c.read(); m.Type() != protocol.TypeCertificate {
		t.Fatalf("the request sent again after retryAfterMs: %#v", m)
	}
}

// TestBusy: with every issuance slot taken, a request is answered busy at
// once, with a retry-after, instead of queueing past its deadline.
func TestBusy(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxIssuing, c.QueueWait = 1, 10*time.Millisecond })
	h.shc.hold()
	a, _, err := h.dial(t, h.enroll(t, "K-A", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := h.dial(t, h.enroll(t, "K-B", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.send(newIssue())
	<-h.shc.started
	start := time.Now()
	req := newIssue()
	b.send(req)
	e, ok := b.read().(*protocol.Error)
	if !ok || e.Code != protocol.CodeBusy || !e.Retryable || e.RetryAfterMs < 200 || e.RequestID != req.RequestID {
		t.Fatalf("request at capacity: %#v", e)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("busy answered after %v", d)
	}
	if e.Message.Ja == "" || e.Message.En == "" {
		t.Error("busy without resident messages")
	}
	close(h.shc.gate)
	if _, ok := a.read().(protocol.CertificateResponse); !ok {
		t.Fatal("the running request was not answered")
	}
	b.send(req)
	if _, ok := b.read().(protocol.CertificateResponse); !ok {
		t.Fatal("the busy request's retry was not issued")
	}
}

// TestDistinctResidentsFlag: a kiosk asking for more different cards in an
// hour than the limit is flagged for the operators.
func TestDistinctResidentsFlag(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.DistinctResidentsPerHour, c.KioskIssueBurst = 3, 100 })
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		req := newIssue()
		req.Card.MyNumber = []byte(fmt.Sprint("card-", i))
		c.send(req)
		if _, ok := c.read().(protocol.CertificateResponse); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	live := h.srv.Live()
	if len(live) != 1 || !live[0].Flagged {
		t.Fatalf("live %+v, want K1 flagged", live)
	}
	if !strings.Contains(h.log.String(), "kiosk flagged") {
		t.Error("the flag was not logged")
	}
}
