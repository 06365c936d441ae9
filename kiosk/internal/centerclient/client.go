// Package centerclient is the kiosk's connection to the issuance center: a
// websocket over mutual TLS 1.3 with the kiosk's enrolled certificate and
// the center's CA pinned, kept open with heartbeats and re-established with
// exponential backoff and jitter when it drops.
//
// Issue is safe to retry: the request carries its own 128-bit request ID,
// and when the connection it was written on ends before the answer
// arrives, Issue sends the very same request once on the next connection,
// so the center replays the certificate it already made instead of issuing
// a second one. Whether to resend is decided by the connection the request
// was written on, so a reconnect at any moment, even between the write
// and the wait, leads to exactly one resend on the new connection.
//
// Outcomes (printed, failed, …) are queued in memory and sent once on
// every connection until the center acknowledges them: settlement never
// depends on a connection staying up.
//
// Answers are matched to callers by request ID and by what the caller
// waits for: a certificate (or refusal) for Issue, an acknowledgement for
// ReportOutcome. A certificate that arrives after Issue gave up never
// counts as the acknowledgement of the outcome reported for it.
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
//
// Goroutines: Run owns the connection loop and, for each connection, one
// heartbeat goroutine that it joins before the connection counts as gone;
// when Run returns, nothing the client started is still running. Issue,
// ReportOutcome and SetStatus run on their callers' goroutines.
type Client struct {
	cfg Config

	mu        sync.Mutex
	conn      *connection   // the connection up now; nil while there is none
	connected chan struct{} // closed while a connection is up; replaced on loss
	hello     protocol.Hello
	haveHello bool
	waiters   map[waiterKey]chan protocol.Message
	outcomes  map[string]protocol.Outcome // queued until acknowledged
	status    *protocol.Status
	changed   chan struct{} // closed on every connect/disconnect
	// reconnectNow: the connection was ended on purpose (Reconnect);
	// connect again without the backoff.
	reconnectNow bool

	// testHookSent, when set by a test, runs after a caller's Issue or
	// Outcome has been written, before the caller waits for the answer.
	testHookSent func(protocol.Message)
}

// waiterKey names what a caller waits for. Issue and ReportOutcome for
// the same request wait apart, so that an answer to one (a certificate
// arriving after its caller gave up) can never complete the other.
type waiterKey struct {
	requestID string
	answer    answerKind
}

type answerKind uint8

const (
	answerCertificate answerKind = iota + 1 // Issue: a certificate or a refusal
	answerAck                               // ReportOutcome: an ack or an error
	answerChecked                           // Check: checked or a refusal
	answerRenewed                           // Renew: renewed or a refusal
)

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
		waiters:   map[waiterKey]chan protocol.Message{},
		outcomes:  map[string]protocol.Outcome{},
		changed:   make(chan struct{}),
	}
}

// Run connects and reconnects until ctx ends. It returns once the last
// connection and everything it started have ended.
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
		c.mu.Lock()
		now := c.reconnectNow
		c.reconnectNow = false
		c.mu.Unlock()
		if now {
			c.cfg.Log.Info("reconnecting to the center on purpose", "err", err)
			continue
		}
		// Full jitter: many kiosks losing the center at once must not
		// reconnect in lockstep.
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		c.cfg.Log.Warn("center connection lost; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// connection is one websocket with its writer lock.
type connection struct {
	ws *websocket.Conn
	wm sync.Mutex
	// gone is closed once the connection has ended and is no longer the
	// client's: whatever was written on it and not answered is lost.
	gone chan struct{}
}

func (cn *connection) write(m protocol.Message) error {
	cn.wm.Lock()
	defer cn.wm.Unlock()
	return cn.writeLocked(m)
}

func (cn *connection) writeLocked(m protocol.Message) error {
	b, err := protocol.Encode(m)
	if err != nil {
		return err
	}
	cn.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return cn.ws.WriteMessage(websocket.TextMessage, b)
}

// send writes m on cn. A failed write leaves the websocket unusable, so
// the connection is closed: its reader fails, the client reconnects, and
// cn.gone tells the caller to send again on the next connection.
func (cn *connection) send(m protocol.Message) bool {
	if err := cn.write(m); err != nil {
		cn.ws.Close()
		return false
	}
	return true
}

// session runs one connection until it fails.
func (c *Client) session(ctx context.Context) error {
	d := websocket.Dialer{TLSClientConfig: c.cfg.TLS, HandshakeTimeout: 10 * time.Second}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	// The optional hello fields this kiosk decodes (the center leaves
	// them out for a kiosk that does not list them).
	hdr := http.Header{protocol.HeaderKioskFeatures: {protocol.KioskFeatureCounter}}
	ws, resp, err := d.DialContext(dctx, c.cfg.URL, hdr)
	cancel()
	if err != nil {
		if resp != nil {
			return fmt.Errorf("centerclient: connect: HTTP %d: %w", resp.StatusCode, err)
		}
		return fmt.Errorf("centerclient: connect: %w", err)
	}
	defer ws.Close()
	ws.SetReadLimit(protocol.MaxCenterFrame)
	cn := &connection{ws: ws, gone: make(chan struct{})}

	// The first frame must be Hello.
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	m, err := c.readMessage(ws)
	if err != nil {
		return err
	}
	h, ok := m.(protocol.Hello)
	if !ok {
		return fmt.Errorf("centerclient: first frame is %s, not hello", m.Type())
	}
	heartbeat := time.Duration(h.HeartbeatSeconds) * time.Second

	// From here on callers write on cn. Every outcome queued before this
	// point is sent below; one queued after it is sent by ReportOutcome on
	// cn: each goes out exactly once per connection.
	c.mu.Lock()
	c.conn, c.hello, c.haveHello = cn, h, true
	close(c.connected)
	c.notifyLocked()
	resend := make([]protocol.Outcome, 0, len(c.outcomes))
	for _, o := range c.outcomes {
		resend = append(resend, o)
	}
	c.mu.Unlock()
	c.cfg.Log.Info("connected to center", "kiosk", h.KioskID, "municipalities", len(h.Municipalities))
	defer c.drop(cn)

	// Heartbeat: a protocol ping every interval; the read deadline allows
	// three missed intervals before the connection is declared dead.
	hctx, stop := context.WithCancel(ctx)
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		c.heartbeat(hctx, cn, heartbeat)
	}()
	// Closing the socket first ends any write the heartbeat is blocked in,
	// so the wait for it is short.
	defer func() {
		stop()
		ws.Close()
		<-beating
	}()

	for _, o := range resend {
		if err := cn.write(o); err != nil {
			return fmt.Errorf("centerclient: resend outcome: %w", err)
		}
	}
	if err := c.writeStatus(cn); err != nil {
		return fmt.Errorf("centerclient: send status: %w", err)
	}
	ws.SetPingHandler(func(data string) error {
		ws.SetReadDeadline(time.Now().Add(3 * heartbeat))
		cn.wm.Lock()
		defer cn.wm.Unlock()
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})
	for {
		ws.SetReadDeadline(time.Now().Add(3 * heartbeat))
		m, err := c.readMessage(ws)
		if err != nil {
			return err
		}
		c.dispatch(m)
	}
}

// drop ends cn as the client's connection and tells everyone waiting on it.
func (c *Client) drop(cn *connection) {
	c.mu.Lock()
	c.conn = nil
	c.connected = make(chan struct{})
	c.notifyLocked()
	c.mu.Unlock()
	close(cn.gone)
}

// heartbeat pings the center every interval and resends, every
// outcomeResend, the outcomes nobody waits for any more, until ctx ends or
// a write fails; either closes the socket, which ends the session's reader.
func (c *Client) heartbeat(ctx context.Context, cn *connection, interval time.Duration) {
	defer cn.ws.Close()
	t := time.NewTicker(interval)
	defer t.Stop()
	resend := time.NewTicker(outcomeResend)
	defer resend.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n++
			if err := cn.write(protocol.Ping{Nonce: strconv.Itoa(n)}); err != nil {
				return
			}
		case <-resend.C:
			for _, o := range c.unacknowledged() {
				if err := cn.write(o); err != nil {
					return
				}
			}
		}
	}
}

func (c *Client) readMessage(ws *websocket.Conn) (protocol.Message, error) {
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
			c.cfg.Log.Warn("undecodable frame from center", "err", err)
			continue
		}
		return m, nil
	}
}

func (c *Client) dispatch(m protocol.Message) {
	switch m := m.(type) {
	case protocol.CertificateResponse:
		// Nobody waiting: an answer that came after its caller gave up.
		c.deliver(waiterKey{m.RequestID, answerCertificate}, m)
	case protocol.Checked:
		c.deliver(waiterKey{m.RequestID, answerChecked}, m)
	case protocol.Renewed:
		c.deliver(waiterKey{m.RequestID, answerRenewed}, m)
	case protocol.Ack:
		c.mu.Lock()
		delete(c.outcomes, m.RequestID)
		c.mu.Unlock()
		c.deliver(waiterKey{m.RequestID, answerAck}, m)
	case *protocol.Error:
		c.dispatchError(m)
	case protocol.Hello:
		c.mu.Lock()
		c.hello = m
		c.notifyLocked()
		c.mu.Unlock()
	}
}

// dispatchError hands an error to the caller it answers. The frame does
// not say whether it answers an issue or an outcome, so its code decides:
// unknown_request answers only outcomes; unavailable, internal_error,
// bad_message and kiosk_not_allowed answer either, and go to a waiting
// Issue first (the flow never waits for both of one request at once);
// every other code is a refusal of an issue, which an outcome waiting for
// its ack never takes.
func (c *Client) dispatchError(e *protocol.Error) {
	id := e.RequestID
	if id == "" {
		c.cfg.Log.Warn("center reported an error", "code", e.Code, "detail", e.Detail)
		return
	}
	toIssue := e.Code != protocol.CodeUnknownRequest
	toOutcome := answersOutcome[e.Code]
	// A check and a renewal have request IDs of their own, never an issue's.
	if toIssue && (c.deliver(waiterKey{id, answerChecked}, e) || c.deliver(waiterKey{id, answerRenewed}, e) || c.deliver(waiterKey{id, answerCertificate}, e)) {
		return
	}
	if toOutcome && c.deliver(waiterKey{id, answerAck}, e) {
		return
	}
	if e.Code == protocol.CodeUnknownRequest {
		// The center no longer holds this request (restart); stop resending its outcome.
		c.mu.Lock()
		_, queued := c.outcomes[id]
		delete(c.outcomes, id)
		c.mu.Unlock()
		if queued {
			c.cfg.Log.Warn("center forgot a request before its outcome was recorded", "request", id)
		}
		return
	}
	c.cfg.Log.Info("answer from the center nobody waits for any more", "request", id, "code", e.Code)
}

// answersOutcome lists the codes the center answers an outcome with
// (issuance.Service.Settle).
var answersOutcome = map[protocol.Code]bool{
	protocol.CodeUnknownRequest: true, protocol.CodeUnavailable: true, protocol.CodeInternal: true,
	protocol.CodeBadMessage: true, protocol.CodeKioskNotAllowed: true,
}

// deliver hands m to the caller waiting under key and reports whether
// there was one.
func (c *Client) deliver(key waiterKey, m protocol.Message) bool {
	c.mu.Lock()
	w, ok := c.waiters[key]
	c.mu.Unlock()
	if ok {
		select {
		case w <- m:
		default: // one answer is enough: a duplicate is dropped
		}
	}
	return ok
}

// await registers a waiter under key; the caller must call the returned
// function when it stops waiting.
func (c *Client) await(key waiterKey) (<-chan protocol.Message, func()) {
	ch := make(chan protocol.Message, 1)
	c.mu.Lock()
	c.waiters[key] = ch
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		if c.waiters[key] == ch { // not a later waiter's
			delete(c.waiters, key)
		}
		c.mu.Unlock()
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
	_, err := c.current(ctx)
	return err
}

// current returns the connection up now, waiting for one until ctx ends.
func (c *Client) current(ctx context.Context) (*connection, error) {
	for {
		c.mu.Lock()
		cn, ch := c.conn, c.connected
		c.mu.Unlock()
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
		}
	}
}

// Issue sends req and waits for its answer until ctx ends. It sends the
// same request once on every connection that ends before the answer
// arrives, again 500 ms after an unavailable answer, and again after the
// center's retryAfterMs (jittered) after a busy one. A refusal comes back
// as a *protocol.Error (test with errors.As).
func (c *Client) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	ch, done := c.await(waiterKey{req.RequestID, answerCertificate})
	defer done()
	for {
		cn, err := c.current(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: no answer to request %s: %w", ErrNotConnected, req.RequestID, ctx.Err())
		}
		if cn.send(req) && c.testHookSent != nil {
			c.testHookSent(req)
		}
		// Whether a resend is needed is decided by the connection written
		// on, not by the client's state read later: a reconnect between the
		// write and this wait still closes cn.gone.
		var m protocol.Message
		select {
		case m = <-ch:
		case <-cn.gone:
			select {
			case m = <-ch: // the answer made it just before the connection ended
			default:
				continue // lost with the connection: ask again on the next
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: no answer to request %s: %w", ErrNotConnected, req.RequestID, ctx.Err())
		}
		switch m := m.(type) {
		case protocol.CertificateResponse:
			return &m, nil
		case *protocol.Error:
			if wait, again := retryWait(m); again && ctx.Err() == nil {
				// The center is at capacity, draining or still running our
				// first attempt: ask again, on whichever connection is up then.
				if sleep(ctx, wait) {
					continue
				}
			}
			return nil, m
		}
	}
}

// ReportOutcome queues an outcome for the center and waits up to ctx for
// its acknowledgement. The outcome is sent now if a connection is up, and
// with every queued outcome on each later connection until the center
// acknowledges it (or answers unknown_request), whether or not anyone
// still waits: settlement never depends on a connection staying up.
func (c *Client) ReportOutcome(ctx context.Context, o protocol.Outcome) error {
	ch, done := c.await(waiterKey{o.RequestID, answerAck})
	defer done()
	// Queueing and taking the connection together: if a connection comes
	// up after this, it sends the queued outcome itself.
	c.mu.Lock()
	c.outcomes[o.RequestID] = o
	cn := c.conn
	c.mu.Unlock()
	for {
		if cn != nil && cn.send(o) && c.testHookSent != nil {
			c.testHookSent(o)
		}
		var m protocol.Message
		select {
		case m = <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: outcome of %s queued for resending: %w", ErrNotConnected, o.RequestID, ctx.Err())
		}
		e, isErr := m.(*protocol.Error)
		if !isErr {
			return nil // acknowledged
		}
		if e.Retryable && ctx.Err() == nil {
			// The center could not record it yet: send it again on this
			// connection. A connection that came up meanwhile has sent it
			// already with the queue; none up, the next one will.
			c.mu.Lock()
			answeredOn := c.conn
			c.mu.Unlock()
			if sleep(ctx, 500*time.Millisecond) {
				c.mu.Lock()
				cn = c.conn
				c.mu.Unlock()
				if cn != answeredOn {
					cn = nil
				}
				continue
			}
		}
		if e.Code == protocol.CodeUnknownRequest {
			c.mu.Lock()
			delete(c.outcomes, o.RequestID)
			c.mu.Unlock()
		}
		return e
	}
}

// retryWait says whether Issue sends the request again after e, and when:
// after unavailable in 500 ms; after busy when the center says
// (retryAfterMs, 500 ms if it does not), with jitter in [½, 1½) of it so
// that kiosks turned away together do not come back together; after
// rate_limited only when the center says when (a frame over the
// connection's rate, in a second or so; the kiosk's issue rate says
// nothing and is final).
func retryWait(e *protocol.Error) (time.Duration, bool) {
	switch e.Code {
	case protocol.CodeUnavailable:
		return 500 * time.Millisecond, true
	case protocol.CodeRateLimited:
		if e.RetryAfterMs <= 0 || e.RetryAfterMs > 5000 {
			return 0, false
		}
		return time.Duration(e.RetryAfterMs) * time.Millisecond, true
	case protocol.CodeBusy:
		d := time.Duration(e.RetryAfterMs) * time.Millisecond
		if d <= 0 {
			d = 500 * time.Millisecond
		}
		return d/2 + time.Duration(rand.Int64N(int64(d))), true
	}
	return 0, false
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// outcomeResend is how often unacknowledged outcomes are sent again.
const outcomeResend = 30 * time.Second

// unacknowledged returns the queued outcomes no caller waits for.
func (c *Client) unacknowledged() []protocol.Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []protocol.Outcome
	for id, o := range c.outcomes {
		if _, waiting := c.waiters[waiterKey{id, answerAck}]; !waiting {
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
		if err := c.writeStatus(cn); err != nil {
			cn.ws.Close()
		}
	}
}

// writeStatus writes the latest status on cn. It reads the status under
// the connection's writer lock, so that of two racing status writes the
// later on the wire always carries the newer status.
func (c *Client) writeStatus(cn *connection) error {
	cn.wm.Lock()
	defer cn.wm.Unlock()
	c.mu.Lock()
	s := c.status
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	return cn.writeLocked(*s)
}
