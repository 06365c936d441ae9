package server

import (
	"context"

	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Checker answers a kiosk's Check (issuance.Service). An Issuer that is
// also a Checker makes the center announce protocol.FeatureCheck in Hello.
type Checker interface {
	Check(ctx context.Context, req issuance.CheckRequest) (*protocol.Checked, error)
}

// startCheck runs a Check on its own goroutine within the connection's
// in-flight slots, as an issue does: it looks a record up and must not
// hold up heartbeats.
func (c *conn) startCheck(m protocol.Check) {
	checker, ok := c.s.cfg.Issuer.(Checker)
	if !ok {
		c.sendError(m.RequestID, protocol.CodeUnexpectedMessage, "this center does not answer check")
		return
	}
	if c.s.isDraining() {
		c.sendError(m.RequestID, protocol.CodeUnavailable, "center is shutting down")
		return
	}
	select {
	case c.slots <- struct{}{}:
	default:
		c.sendError(m.RequestID, protocol.CodeRateLimited, "too many requests in flight on this connection")
		return
	}
	c.s.inflight.Add(1)
	c.s.inflightN.Add(1)
	go func() {
		defer func() { <-c.slots; c.s.inflightN.Add(-1); c.s.inflight.Done() }()
		ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.IssueTimeout)
		defer cancel()
		// Checks are audited (issuance), not counted with the issue
		// metrics: their latency would blur the issue histogram.
		res, err := checker.Check(ctx, issuance.CheckRequest{KioskID: c.kiosk.ID, Check: m})
		if err != nil {
			c.send(refusal.Public(m.RequestID, err))
			return
		}
		c.send(*res)
	}()
}
