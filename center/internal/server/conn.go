package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// hardFrameLimit closes the connection; frames between protocol's limit and
// this one are answered with message_too_large and the connection goes on.
const hardFrameLimit = 1 << 20

const writeTimeout = 10 * time.Second

type conn struct {
	s     *Server
	ws    *websocket.Conn
	kiosk store.Kiosk

	out      chan []byte // frames to write, in order
	closing  chan struct{}
	once     sync.Once
	slots    chan struct{} // in-flight issue tokens
	lastSeen time.Time
}

func newConn(s *Server, ws *websocket.Conn, k store.Kiosk) *conn {
	return &conn{
		s: s, ws: ws, kiosk: k,
		out:     make(chan []byte, 16),
		closing: make(chan struct{}),
		slots:   make(chan struct{}, s.cfg.MaxInFlight),
	}
}

// run serves the connection until it ends.
func (c *conn) run() {
	defer c.ws.Close()
	writerDone := make(chan struct{})
	go c.writer(writerDone)
	defer func() {
		c.stop()
		<-writerDone
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	h, err := c.s.hello(ctx, c.kiosk)
	cancel()
	if err != nil {
		c.s.cfg.Log.Error("build hello", "kiosk", c.kiosk.ID, "err", err)
		return
	}
	c.send(h)

	c.ws.SetReadLimit(hardFrameLimit)
	deadline := func() { c.ws.SetReadDeadline(time.Now().Add(3 * c.s.cfg.Heartbeat)) }
	deadline()
	c.ws.SetPongHandler(func(string) error { deadline(); return nil })
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				c.s.cfg.Log.Info("kiosk connection ended", "kiosk", c.kiosk.ID, "err", err)
			}
			return
		}
		deadline()
		c.s.cfg.Metrics.frames.Inc()
		if now := c.s.cfg.Now(); now.Sub(c.lastSeen) > time.Minute {
			c.lastSeen = now
			c.s.touch(c.kiosk.ID)
		}
		if typ != websocket.TextMessage {
			c.sendError("", protocol.CodeBadMessage, "frames must be text")
			continue
		}
		m, err := protocol.Decode(data, protocol.MaxKioskFrame)
		if err != nil {
			var de *protocol.DecodeError
			code := protocol.CodeBadMessage
			if errors.As(err, &de) {
				code = de.Code
			}
			c.s.cfg.Metrics.badFrames.WithLabelValues(string(code)).Inc()
			c.s.cfg.Log.Warn("bad frame from kiosk", "kiosk", c.kiosk.ID, "code", code, "err", err)
			c.sendError("", code, err.Error())
			continue
		}
		c.handle(m)
	}
}

func (c *conn) handle(m protocol.Message) {
	switch m := m.(type) {
	case protocol.Issue:
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
		go func() {
			defer func() { <-c.slots; c.s.inflight.Done() }()
			c.issue(m)
		}()
	case protocol.Outcome:
		c.outcome(m)
	case protocol.Status:
		c.s.live.status(c.kiosk.ID, m, c.s.cfg.Now())
	case protocol.Ping:
		c.send(protocol.Pong(m))
	case protocol.Pong:
	case *protocol.Error:
		c.s.cfg.Log.Warn("kiosk reported an error", "kiosk", c.kiosk.ID, "code", m.Code, "request", m.RequestID, "detail", m.Detail)
	default:
		c.sendError("", protocol.CodeUnexpectedMessage, m.Type()+" is sent by the center, not by kiosks")
	}
}

func (c *conn) issue(req protocol.Issue) {
	start := time.Now()
	e, first, ok := c.s.pending.claim(c.kiosk.ID, req)
	if !ok {
		c.s.cfg.Metrics.issued.WithLabelValues(string(protocol.CodeRequestIDReused)).Inc()
		c.sendError(req.RequestID, protocol.CodeRequestIDReused, "request ID already used with different data")
		return
	}
	if first {
		ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.IssueTimeout)
		var resp *protocol.CertificateResponse
		perr := c.issuedBefore(ctx, req.RequestID)
		if perr == nil {
			resp, perr = c.s.cfg.Issuer.Issue(ctx, issuance.Request{KioskID: c.kiosk.ID, Issue: req})
		}
		cancel()
		c.s.pending.finish(req.RequestID, e, resp, perr)
	} else {
		select {
		case <-e.done:
		case <-time.After(c.s.cfg.IssueTimeout):
			c.sendError(req.RequestID, protocol.CodeUnavailable, "the first attempt of this request is still running")
			return
		}
	}
	result := "ok"
	if e.err != nil {
		result = string(e.err.Code)
		c.send(e.err)
	} else {
		resp := *e.resp
		resp.Replayed = !first
		if !first {
			result = "replayed"
		}
		c.send(resp)
	}
	c.s.cfg.Metrics.issued.WithLabelValues(result).Inc()
	c.s.cfg.Metrics.latency.Observe(time.Since(start).Seconds())
}

// issuedBefore refuses a request this center issued before it restarted
// (the answer it lost with its memory cannot be replayed): issuing again
// would give one request two certificates. The kiosk starts a new request.
func (c *conn) issuedBefore(ctx context.Context, requestID string) *protocol.Error {
	evs, err := c.s.cfg.Store.Events(ctx, store.EventQuery{RequestID: requestID})
	if err != nil {
		c.s.cfg.Log.Error("look up earlier issuance", "kiosk", c.kiosk.ID, "request", requestID, "err", err)
		return protocol.NewError(requestID, protocol.CodeInternal, "")
	}
	for _, ev := range evs {
		if ev.Type == store.EventIssued {
			c.s.cfg.Log.Warn("request issued before a restart and retried; refused", "kiosk", c.kiosk.ID, "request", requestID)
			return protocol.NewError(requestID, protocol.CodeRequestIDReused, "this request was issued before the center restarted; start a new request")
		}
	}
	return nil
}

// issuedFacts are what settlement needs of an issued request: no
// certificate content, only what the audit log holds anyway.
type issuedFacts struct {
	municipality  string
	kind          certificate.Kind
	certificateID string
	copies        int
}

// outcomeEvents are the audit events that settle a request.
var outcomeEvents = map[store.EventType]bool{
	store.EventPrinted: true, "print_failed": true, "print_refused": true, "cancelled": true,
}

func (c *conn) outcome(o protocol.Outcome) {
	e, state := c.s.pending.beginOutcome(c.kiosk.ID, o.RequestID)
	switch state {
	case outcomeUnknown:
		c.settleFromAudit(o)
		return
	case outcomeBusy:
		c.sendError(o.RequestID, protocol.CodeUnavailable, "the request is still being issued or settled; send the outcome again")
		return
	}
	if e.resp == nil || len(e.resp.Certificates) == 0 {
		// Held for a refusal (such as a retry of a request issued before a
		// restart): whatever was issued under this ID is in the audit log.
		c.s.pending.endOutcome(o.RequestID, e, false)
		c.settleFromAudit(o)
		return
	}
	first := e.resp.Certificates[0]
	f := &issuedFacts{first.Issuer.MunicipalityCode, first.Kind, first.ID, e.resp.Copies}
	perr := c.recordOutcome(o, f)
	// The entry is released before the kiosk is answered: an Ack then means
	// the request is forgotten, and a report corrected right after an error
	// is not refused as busy.
	c.s.pending.endOutcome(o.RequestID, e, perr == nil)
	c.answerOutcome(o, perr)
}

// settleFromAudit records an outcome for a request this center no longer
// holds in memory (it restarted after answering). The audit log has what
// settlement needs; a report already recorded is acknowledged again.
func (c *conn) settleFromAudit(o protocol.Outcome) {
	c.s.settleMu.Lock()
	defer c.s.settleMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := c.s.cfg.Store.Events(ctx, store.EventQuery{RequestID: o.RequestID, KioskID: c.kiosk.ID})
	if err != nil {
		c.s.cfg.Log.Error("look up request for outcome", "kiosk", c.kiosk.ID, "request", o.RequestID, "err", err)
		c.answerOutcome(o, protocol.NewError(o.RequestID, protocol.CodeInternal, "outcome not recorded; send it again"))
		return
	}
	var f *issuedFacts
	copies, settled := 0, false
	for _, ev := range evs {
		switch {
		case ev.Type == store.EventRequested:
			copies = ev.Copies
		case ev.Type == store.EventIssued && f == nil:
			f = &issuedFacts{municipality: ev.Municipality, kind: ev.Kind, certificateID: ev.CertificateID}
		case outcomeEvents[ev.Type]:
			settled = true
		}
	}
	switch {
	case f == nil:
		c.answerOutcome(o, protocol.NewError(o.RequestID, protocol.CodeUnknownRequest, "no request with this ID was issued to this kiosk"))
	case settled:
		c.answerOutcome(o, nil)
	default:
		f.copies = copies
		c.s.cfg.Log.Info("outcome settled from the audit log after a restart", "kiosk", c.kiosk.ID, "request", o.RequestID)
		c.answerOutcome(o, c.recordOutcome(o, f))
	}
}

// recordOutcome writes the outcome's audit event.
func (c *conn) recordOutcome(o protocol.Outcome, f *issuedFacts) *protocol.Error {
	ev := store.Event{
		Time: c.s.cfg.Now(), KioskID: c.kiosk.ID, StoreCode: c.kiosk.StoreCode,
		RequestID: o.RequestID, Result: o.Outcome,
	}
	if f != nil {
		ev.Municipality, ev.Kind, ev.CertificateID = f.municipality, f.kind, f.certificateID
	}
	switch o.Outcome {
	case protocol.OutcomePrinted:
		if f == nil || o.Copies != f.copies {
			// Not recorded: the kiosk must report the copies it was issued.
			return protocol.NewError(o.RequestID, protocol.CodeBadMessage, "printed copies differ from the copies issued")
		}
		ev.Type, ev.Copies = store.EventPrinted, o.Copies
	case protocol.OutcomeFailed:
		ev.Type = "print_failed"
	case protocol.OutcomeRefused:
		ev.Type = "print_refused"
		c.s.cfg.Log.Warn("kiosk refused to print a certificate", "kiosk", c.kiosk.ID, "request", o.RequestID, "reason", o.Reason)
	case protocol.OutcomeCancelled:
		ev.Type = "cancelled"
	}
	if o.Reason != "" {
		ev.Result = string(o.Reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.s.cfg.Store.AppendEvent(ctx, ev); err != nil {
		c.s.cfg.Log.Error("audit outcome", "kiosk", c.kiosk.ID, "request", o.RequestID, "err", err)
		return protocol.NewError(o.RequestID, protocol.CodeInternal, "outcome not recorded; send it again")
	}
	c.s.cfg.Metrics.outcomes.WithLabelValues(o.Outcome).Inc()
	return nil
}

func (c *conn) answerOutcome(o protocol.Outcome, perr *protocol.Error) {
	if perr != nil {
		c.send(perr)
		return
	}
	c.send(protocol.Ack{RequestID: o.RequestID})
}

func (c *conn) sendError(requestID string, code protocol.Code, detail string) {
	if !protocol.ValidRequestID(requestID) {
		// A malformed ID is not echoed: the error would not encode.
		requestID = ""
	}
	if len(detail) > 512 {
		detail = strings.ToValidUTF8(detail[:512], "")
	}
	c.send(protocol.NewError(requestID, code, detail))
}

func (c *conn) send(m protocol.Message) {
	b, err := protocol.Encode(m)
	if err != nil {
		c.s.cfg.Log.Error("encode frame", "kiosk", c.kiosk.ID, "type", m.Type(), "err", err)
		return
	}
	select {
	case c.out <- b:
	case <-c.closing:
	}
}

// writer is the only goroutine that writes to the websocket: frames in
// order, and a ping every heartbeat.
func (c *conn) writer(done chan struct{}) {
	defer close(done)
	ping := time.NewTicker(c.s.cfg.Heartbeat)
	defer ping.Stop()
	for {
		select {
		case b := <-c.out:
			if b == nil { // closeGoingAway: everything queued before it is written
				c.writeGoingAway()
				return
			}
			c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				c.stop()
				c.ws.Close()
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, []byte(itoa(int(time.Now().Unix()))), time.Now().Add(writeTimeout)); err != nil {
				c.stop()
				c.ws.Close()
				return
			}
		case <-c.closing:
			return
		}
	}
}

func (c *conn) stop() { c.once.Do(func() { close(c.closing) }) }

// closeGoingAway closes the connection at shutdown. The close frame is
// queued behind the frames already queued, so that the answer to an
// issuance that finished while draining reaches the kiosk: were it lost,
// the kiosk would retry at another instance, which never saw the request
// and would issue a second certificate. A writer that does not get to it
// within a second (a stalled kiosk) is cut short.
func (c *conn) closeGoingAway() {
	select {
	case c.out <- nil:
		select {
		case <-c.closing:
			return
		case <-time.After(time.Second):
		}
	case <-c.closing:
		return
	case <-time.After(time.Second):
	}
	c.writeGoingAway()
}

func (c *conn) writeGoingAway() {
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "center shutting down"), time.Now().Add(time.Second))
	c.stop()
	c.ws.Close()
}
