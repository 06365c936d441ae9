package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// hardFrameLimit closes the connection; frames between protocol's limit and
// this one are answered with message_too_large and the connection goes on.
const hardFrameLimit = 1 << 20

const writeTimeout = 10 * time.Second

// A conn is one kiosk's websocket. An idle connection costs one goroutine
// (its reader, parked in Read) and no write buffer: frames are written by
// whoever has one to send (the reader answering a ping, an issuance
// goroutine answering its request) under wmu, with a buffer borrowed from
// a pool for the length of the write, and heartbeats come from the
// server's shared pinger (heartbeat.go).
type conn struct {
	s      *Server
	ws     *websocket.Conn
	kiosk  store.Kiosk
	kstate *kioskState // limits shared by this kiosk's connections
	opened time.Time
	// counterNames: the kiosk announced protocol.KioskFeatureCounter.
	counterNames bool

	wmu    sync.Mutex // serialises data frames
	closed atomic.Bool
	slots  chan struct{} // in-flight issue tokens
	frames bucket        // message rate
	// lastSeen is when the store last recorded this kiosk as seen; only the
	// reader touches it.
	lastSeen time.Time
	// deadlineSet is when the read deadline was last pushed forward, so
	// frames arriving in bursts do not each reset the timer.
	deadlineSet time.Time
}

func newConn(s *Server, ws *websocket.Conn, k store.Kiosk, ks *kioskState) *conn {
	return &conn{
		s: s, ws: ws, kiosk: k, kstate: ks, opened: time.Now(),
		slots:  make(chan struct{}, s.cfg.MaxInFlight),
		frames: newBucket(s.cfg.FrameRate, s.cfg.FrameBurst),
	}
}

// run serves the connection until it ends.
func (c *conn) run() {
	defer c.close()
	ctx, cancel := context.WithTimeout(c.s.base, 5*time.Second)
	h, err := c.s.hello(ctx, c.kiosk, c.counterNames)
	cancel()
	if err != nil {
		c.s.cfg.Log.Error("build hello", "kiosk", c.kiosk.ID, "err", err)
		return
	}
	c.send(h)

	c.ws.SetReadLimit(hardFrameLimit)
	c.extendDeadline(true)
	c.ws.SetPongHandler(func(string) error { c.extendDeadline(false); return nil })
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			if !c.closed.Load() && !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				c.s.sampled.Info(c.kiosk.ID, "kiosk connection ended", "kiosk", c.kiosk.ID, "err", err)
			}
			return
		}
		c.extendDeadline(false)
		c.s.cfg.Metrics.frames.Inc()
		if !c.frames.take(time.Now()) {
			// A kiosk sends a handful of frames a minute; a flood is a
			// fault or an attack. It is told once, then cut off if it
			// goes on.
			c.s.cfg.Metrics.limited.WithLabelValues("frames").Inc()
			if c.frames.overLimitFor(time.Now()) > c.s.cfg.FloodGrace {
				c.s.sampled.Warn(c.kiosk.ID, "kiosk disconnected for flooding", "kiosk", c.kiosk.ID)
				c.s.cfg.Metrics.closedForAbuse.Inc()
				c.closeWith(websocket.ClosePolicyViolation, "too many frames")
				return
			}
			c.refuseOverRate(typ, data)
			continue
		}
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
			code, detail := protocol.CodeBadMessage, "frame could not be decoded"
			if errors.As(err, &de) {
				code, detail = de.Code, de.Detail
			}
			c.s.cfg.Metrics.badFrames.WithLabelValues(string(code)).Inc()
			// The decoder's own error may quote the frame; the detail never does.
			c.s.sampled.Warn(c.kiosk.ID, "bad frame from kiosk", "kiosk", c.kiosk.ID, "code", code, "detail", detail)
			c.sendError("", code, detail)
			continue
		}
		c.handle(m)
	}
}

// refuseOverRate answers a request frame that came over the frame rate
// with rate_limited and when to send it again. Dropped unanswered, it
// would leave its kiosk waiting for its whole timeout (a resident at the
// screen) and then reconnecting; answered, the kiosk backs off and repeats
// it. Frames without a request (pings, status) are dropped silently; a
// kiosk that goes on is cut off by the flood grace.
func (c *conn) refuseOverRate(typ int, data []byte) {
	if typ != websocket.TextMessage {
		return
	}
	m, err := protocol.Decode(data, protocol.MaxKioskFrame)
	if err != nil {
		return
	}
	var id string
	switch m := m.(type) {
	case protocol.Issue:
		id = m.RequestID
	case protocol.Check:
		id = m.RequestID
	case protocol.Outcome:
		id = m.RequestID
	case protocol.Renew:
		id = m.RequestID
	default:
		return
	}
	e := protocol.NewError(id, protocol.CodeRateLimited, "too many frames on this connection; send it again after retryAfterMs")
	e.RetryAfterMs = c.frames.refillMs()
	c.send(e)
}

// extendDeadline moves the read deadline to three heartbeats from now, at
// most once a second (setting it costs a timer update).
func (c *conn) extendDeadline(force bool) {
	now := time.Now()
	if !force && now.Sub(c.deadlineSet) < time.Second {
		return
	}
	c.deadlineSet = now
	c.ws.SetReadDeadline(now.Add(3 * c.s.cfg.Heartbeat))
}

func (c *conn) handle(m protocol.Message) {
	switch m := m.(type) {
	case protocol.Issue:
		if c.s.isDraining() {
			c.sendError(m.RequestID, protocol.CodeUnavailable, "center is shutting down")
			return
		}
		if err := c.kstate.admitIssue(m, c.s.cfg.Now()); err != nil {
			c.s.cfg.Metrics.limited.WithLabelValues("kiosk_issues").Inc()
			c.send(refusal.Public(m.RequestID, err))
			return
		}
		select {
		case c.slots <- struct{}{}:
		default:
			c.s.cfg.Metrics.limited.WithLabelValues("in_flight").Inc()
			c.sendError(m.RequestID, protocol.CodeRateLimited, "too many requests in flight on this connection")
			return
		}
		c.s.inflight.Add(1)
		c.s.inflightN.Add(1)
		go func() {
			defer func() { <-c.slots; c.s.inflightN.Add(-1); c.s.inflight.Done() }()
			c.issue(m)
		}()
	case protocol.Check:
		c.startCheck(m)
	case protocol.Outcome:
		c.outcome(m)
	case protocol.Renew:
		c.renew(m)
	case protocol.Status:
		c.s.live.status(c.kiosk.ID, m, c.s.cfg.Now())
	case protocol.Ping:
		c.send(protocol.Pong(m))
	case protocol.Pong:
	case *protocol.Error:
		// The kiosk's detail is its own text: only the code is logged.
		code := m.Code
		if !code.Known() {
			code = "unknown"
		}
		c.s.sampled.Warn(c.kiosk.ID, "kiosk reported an error", "kiosk", c.kiosk.ID, "code", code, "request", m.RequestID)
	default:
		c.sendError("", protocol.CodeUnexpectedMessage, m.Type()+" is sent by the center, not by kiosks")
	}
}

func (c *conn) issue(req protocol.Issue) {
	start := time.Now()
	resp, err := c.s.issue(req, c.kiosk.ID)
	result := "ok"
	switch {
	case err != nil:
		perr := refusal.Public(req.RequestID, err)
		if perr.Code == protocol.CodeBusy {
			perr.RetryAfterMs = c.s.retryAfter()
		}
		result = string(perr.Code)
		c.send(perr)
	case resp.Replayed:
		result = "replayed"
		c.send(*resp)
	default:
		c.send(*resp)
	}
	c.s.cfg.Metrics.issued.WithLabelValues(result).Inc()
	c.s.cfg.Metrics.latency.Observe(time.Since(start).Seconds())
}

func (c *conn) outcome(o protocol.Outcome) {
	ctx, cancel := context.WithTimeout(c.s.base, c.s.cfg.IssueTimeout)
	err := c.s.cfg.Issuer.Settle(ctx, c.kiosk.ID, c.kiosk.StoreCode, o)
	cancel()
	if err != nil {
		c.send(refusal.Public(o.RequestID, err))
		return
	}
	c.s.cfg.Metrics.outcomes.WithLabelValues(string(o.Outcome)).Inc()
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

// send writes one frame. A write that fails or times out ends the
// connection; the kiosk reconnects and resends what it is waiting for.
func (c *conn) send(m protocol.Message) {
	b, err := protocol.Encode(m)
	if err != nil {
		c.s.cfg.Log.Error("encode frame", "kiosk", c.kiosk.ID, "type", m.Type(), "err", err)
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return
	}
	c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.ws.Close()
	}
}

// ping sends a heartbeat; a kiosk that does not take it within the
// deadline is disconnected (its read deadline would end it soon anyway).
func (c *conn) ping(deadline time.Duration) {
	if c.closed.Load() {
		return
	}
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(deadline)); err != nil {
		c.ws.Close()
	}
}

// close releases the connection (once).
func (c *conn) close() {
	if c.closed.CompareAndSwap(false, true) {
		c.ws.Close()
	}
}

// closeWith sends a close frame with code and reason, then closes.
func (c *conn) closeWith(code int, reason string) {
	if c.closed.Load() {
		return
	}
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	c.close()
}

// closeGoingAway closes the connection at shutdown or on an operator's
// order. Answers already being written finish first (wmu): were one lost,
// the kiosk would retry at another instance, which finds the request in the
// register and replays it. A stalled kiosk is cut off after a second.
func (c *conn) closeGoingAway(reason string) {
	locked := make(chan struct{})
	go func() {
		c.wmu.Lock()
		close(locked)
	}()
	select {
	case <-locked:
		defer c.wmu.Unlock()
	case <-time.After(time.Second):
		// The writer is stuck; closing the socket below frees it, and the
		// goroutine above then takes and releases the lock.
		go func() { <-locked; c.wmu.Unlock() }()
	}
	c.closeWith(websocket.CloseGoingAway, reason)
}
