package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/center/internal/store"
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

	ctx, cancel := context.WithTimeout(c.s.base, 5*time.Second)
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
			detail := "frame could not be decoded"
			if de != nil {
				detail = de.Detail
			}
			c.s.cfg.Metrics.badFrames.WithLabelValues(string(code)).Inc()
			// The decoder's own error may quote the frame; the detail never does.
			c.s.cfg.Log.Warn("bad frame from kiosk", "kiosk", c.kiosk.ID, "code", code, "detail", detail)
			c.sendError("", code, detail)
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
		c.s.inflightN.Add(1)
		go func() {
			defer func() { <-c.slots; c.s.inflightN.Add(-1); c.s.inflight.Done() }()
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
		// The kiosk's detail is its own text: only the code is logged.
		c.s.cfg.Log.Warn("kiosk reported an error", "kiosk", c.kiosk.ID, "code", m.Code, "request", m.RequestID)
	default:
		c.sendError("", protocol.CodeUnexpectedMessage, m.Type()+" is sent by the center, not by kiosks")
	}
}

func (c *conn) issue(req protocol.Issue) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(c.s.base, c.s.cfg.IssueTimeout)
	resp, err := c.s.cfg.Issuer.Issue(ctx, issuance.Request{KioskID: c.kiosk.ID, Issue: req})
	cancel()
	result := "ok"
	switch {
	case err != nil:
		perr := refusal.Public(req.RequestID, err)
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
