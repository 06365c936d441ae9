// Package centerclient is the kiosk's connection to the issuance center: a
// websocket over mutual TLS 1.3 with the kiosk's enrolled certificate and
// the center's CA pinned, kept open with heartbeats and re-established with
// exponential backoff and jitter when it drops.
//
// Issue is safe to retry: the request carries its own 128-bit request ID,
// and when the connection drops before the answer arrives, Issue resends
// the very same request on the next connection, so the center replays the
// certificate it already made instead of issuing a second one. Outcomes
// (printed, failed, …) are queued in memory and resent after reconnects
// until the center acknowledges them: settlement never depends on a
// connection staying up.
//
// Nothing here logs message contents; logs carry request IDs and codes.
package centerclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// ErrNotConnected means the center could not be reached before the deadline.
var ErrNotConnected = errors.New("centerclient: not connected to the issuance center")

// Config configures a Client.
type Config struct {
	// URL is the center's kiosk endpoint, wss://host:port/v1/kiosk.
	URL string
	// TLS holds the kiosk certificate and the pinned center CA.
	TLS *tls.Config
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 250 ms, 30 s).
	MinBackoff, MaxBackoff time.Duration
	Log                    *slog.Logger
}

// Client keeps one connection to the center. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu        sync.Mutex
	conn      *connection
	connected chan struct{} // closed while a connection is up; replaced on loss
	hello     protocol.Hello
	haveHello bool
	waiters   map[string]chan protocol.Message // by request ID
	outcomes  map[string]protocol.Outcome      // sent, not yet acknowledged
	status    *protocol.Status
	changed   chan struct{} // closed on every connect/disconnect
}

// New returns a Client; call Run to connect.
func New(cfg Config) *Client {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Client{
		cfg:       cfg,
		connected: make(chan struct{}),
		waiters:   map[string]chan protocol.Message{},
		outcomes:  map[string]protocol.Outcome{},
		changed:   make(chan struct{}),
	}
}

// Run connects and reconnects until ctx ends.
func (c *Client) Run(ctx context.Context) {
	backoff := c.cfg.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = c.cfg.MinBackoff
		}
		// Full jitter: many kiosks losing the center at once must not
		// reconnect in lockstep.
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		c.cfg.Log.Warn("center connection lost; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// connection is one websocket with its writer lock.
type connection struct {
	ws *websocket.Conn
	wm sync.Mutex
}

func (cn *connection) write(m protocol.Message) error {
	b, err := protocol.Encode(m)
	if err != nil {
		return err
	}
	cn.wm.Lock()
	defer cn.wm.Unlock()
	cn.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return cn.ws.WriteMessage(websocket.TextMessage, b)
}

// session runs one connection until it fails.
func (c *Client) session(ctx context.Context) error {
	d := websocket.Dialer{TLSClientConfig: c.cfg.TLS, HandshakeTimeout: 10 * time.Second}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	ws, resp, err := d.DialContext(dctx, c.cfg.URL, http.Header{})
	cancel()
	if err != nil {
		if resp != nil {
			return fmt.Errorf("centerclient: connect: HTTP %d: %w", resp.StatusCode, err)
		}
		return fmt.Errorf("centerclient: connect: %w", err)
	}
	defer ws.Close()
	ws.SetReadLimit(protocol.MaxCenterFrame)
	cn := &connection{ws: ws}

	// The first frame must be Hello.
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	m, err := readMessage(ws)
	if err != nil {
		return err
	}
	h, ok := m.(protocol.Hello)
	if !ok {
		return fmt.Errorf("centerclient: first frame is %s, not hello", m.Type())
	}
	heartbeat := time.Duration(h.HeartbeatSeconds) * time.Second

	c.mu.Lock()
	c.conn, c.hello, c.haveHello = cn, h, true
	close(c.connected)
	c.notifyLocked()
	var resend []protocol.Outcome
	for _, o := range c.outcomes {
		resend = append(resend, o)
	}
	status := c.status
	c.mu.Unlock()
	c.cfg.Log.Info("connected to center", "kiosk", h.KioskID, "municipalities", len(h.Municipalities))
	defer func() {
		c.mu.Lock()
		c.conn = nil
		c.connected = make(chan struct{})
		c.notifyLocked()
		c.mu.Unlock()
	}()
	for _, o := range resend {
		if err := cn.write(o); err != nil {
			return err
		}
	}
	if status != nil {
		cn.write(*status)
	}

	// Heartbeat: a protocol ping every interval; the read deadline allows
	// three missed intervals before the connection is declared dead.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		resend := time.NewTicker(outcomeResend)
		defer resend.Stop()
		n := 0
		for {
			select {
			case <-sctx.Done():
				ws.Close()
				return
			case <-t.C:
				n++
				if err := cn.write(protocol.Ping{Nonce: strconv.Itoa(n)}); err != nil {
					ws.Close()
					return
				}
			case <-resend.C:
				// Outcomes nobody is waiting for any more (the session
				// moved on) are resent until the center acknowledges them.
				for _, o := range c.unacknowledged() {
					cn.write(o)
				}
			}
		}
	}()
	ws.SetPingHandler(func(data string) error {
		ws.SetReadDeadline(time.Now().Add(3 * heartbeat))
		cn.wm.Lock()
		defer cn.wm.Unlock()
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})
	for {
		ws.SetReadDeadline(time.Now().Add(3 * heartbeat))
		m, err := readMessage(ws)
		if err != nil {
			return err
		}
		c.dispatch(m)
	}
}

func readMessage(ws *websocket.Conn) (protocol.Message, error) {
	for {
		typ, b, err := ws.ReadMessage()
		if err != nil {
			return nil, fmt.Errorf("centerclient: read: %w", err)
		}
		if typ != websocket.TextMessage {
			continue
		}
		m, err := protocol.Decode(b, protocol.MaxCenterFrame)
		if err != nil {
			// A frame we cannot read is the center's bug; keep the connection.
			slog.Default().Warn("undecodable frame from center", "err", err)
			continue
		}
		return m, nil
	}
}

func (c *Client) dispatch(m protocol.Message) {
	var id string
	switch m := m.(type) {
	case protocol.CertificateResponse:
		id = m.RequestID
	case *protocol.Error:
		id = m.RequestID
		if id == "" {
			c.cfg.Log.Warn("center reported an error", "code", m.Code, "detail", m.Detail)
			return
		}
	case protocol.Ack:
		c.mu.Lock()
		delete(c.outcomes, m.RequestID)
		c.mu.Unlock()
		id = m.RequestID
	case protocol.Hello:
		c.mu.Lock()
		c.hello = m
		c.notifyLocked()
		c.mu.Unlock()
		return
	default:
		return
	}
	c.mu.Lock()
	w, ok := c.waiters[id]
	c.mu.Unlock()
	if ok {
		select {
		case w <- m:
		default:
		}
	} else if e, isErr := m.(*protocol.Error); isErr && e.Code == protocol.CodeUnknownRequest {
		// The center no longer holds this request (restart); stop resending its outcome.
		c.mu.Lock()
		delete(c.outcomes, id)
		c.mu.Unlock()
		c.cfg.Log.Warn("center forgot a request before its outcome was recorded", "request", id)
	}
}

func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Hello returns the center's latest hello and whether one was received.
func (c *Client) Hello() (protocol.Hello, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello, c.haveHello
}

// Connected reports whether a connection is up now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// Changed returns a channel closed at the next connect or disconnect.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// WaitConnected blocks until a connection is up or ctx ends.
func (c *Client) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		up, ch := c.conn != nil, c.connected
		c.mu.Unlock()
		if up {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
		}
	}
}

// send writes m on the current connection, waiting for one if needed.
func (c *Client) send(ctx context.Context, m protocol.Message) error {
	for {
		if err := c.WaitConnected(ctx); err != nil {
			return err
		}
		c.mu.Lock()
		cn := c.conn
		c.mu.Unlock()
		if cn == nil {
			continue
		}
		if err := cn.write(m); err != nil {
			// The reader will notice and reconnect; try on the next connection.
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		return nil
	}
}

// Issue sends req and waits for its answer until ctx ends, resending the
// same request after every reconnect. A refusal comes back as a
// *protocol.Error (test with errors.As).
func (c *Client) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	ch := make(chan protocol.Message, 1)
	c.mu.Lock()
	c.waiters[req.RequestID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, req.RequestID)
		c.mu.Unlock()
	}()
	for {
		if err := c.send(ctx, req); err != nil {
			return nil, err
		}
		// Watch for the connection changing after the send: send itself
		// may have waited out a reconnect, which is no reason to resend.
		c.mu.Lock()
		lost := c.changed
		c.mu.Unlock()
		select {
		case m := <-ch:
			switch m := m.(type) {
			case protocol.CertificateResponse:
				return &m, nil
			case *protocol.Error:
				if m.Code == protocol.CodeUnavailable && ctx.Err() == nil {
					// The center is draining or still running our first
					// attempt: wait for a reconnect and ask again.
					select {
					case <-time.After(500 * time.Millisecond):
					case <-ctx.Done():
					}
					continue
				}
				return nil, m
			}
		case <-lost:
			// Connection changed before the answer: resend the same request.
			continue
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: no answer to request %s: %w", ErrNotConnected, req.RequestID, ctx.Err())
		}
	}
}

// ReportOutcome queues an outcome for the center and waits up to ctx for
// its acknowledgement. If ctx ends first the outcome stays queued and is
// resent after every reconnect until acknowledged.
func (c *Client) ReportOutcome(ctx context.Context, o protocol.Outcome) error {
	ch := make(chan protocol.Message, 1)
	c.mu.Lock()
	c.outcomes[o.RequestID] = o
	c.waiters[o.RequestID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, o.RequestID)
		c.mu.Unlock()
	}()
	for {
		if err := c.send(ctx, o); err != nil {
			return err
		}
		c.mu.Lock()
		lost := c.changed
		c.mu.Unlock()
		select {
		case m := <-ch:
			if e, ok := m.(*protocol.Error); ok {
				if e.Retryable && ctx.Err() == nil {
					// The center could not record it yet: send it again.
					select {
					case <-time.After(500 * time.Millisecond):
					case <-ctx.Done():
					}
					continue
				}
				if e.Code == protocol.CodeUnknownRequest {
					c.mu.Lock()
					delete(c.outcomes, o.RequestID)
					c.mu.Unlock()
				}
				return e
			}
			return nil
		case <-lost:
			continue
		case <-ctx.Done():
			return fmt.Errorf("%w: outcome of %s queued for resending: %w", ErrNotConnected, o.RequestID, ctx.Err())
		}
	}
}

// outcomeResend is how often unacknowledged outcomes are sent again.
const outcomeResend = 30 * time.Second

func (c *Client) unacknowledged() []protocol.Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []protocol.Outcome
	for id, o := range c.outcomes {
		if _, waiting := c.waiters[id]; !waiting {
			out = append(out, o)
		}
	}
	return out
}

// PendingOutcomes returns how many outcomes await acknowledgement.
func (c *Client) PendingOutcomes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.outcomes)
}

// SetStatus records the kiosk's device status and sends it now if connected
// (and after every reconnect).
func (c *Client) SetStatus(s protocol.Status) {
	c.mu.Lock()
	c.status = &s
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		cn.write(s)
	}
}
