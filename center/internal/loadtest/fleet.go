package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// A fleet is the national picture: every kiosk keeps a connection open all
// day (most of them idle, answering heartbeats), and residents arrive at
// random — an open-loop Poisson stream at a given rate, not one request
// after another per kiosk — so a slow center meets a queue, as it would in
// a wave of demand. Each arrival takes a random idle kiosk; when none is
// idle the arrival is counted as not offered.
//
// Every answer is checked against the request that caused it (RunFleet's
// binding check: request ID, card digest, copies, kinds, issuer, holder and
// birth date of the resident whose card that kiosk sent), and every kiosk
// reconnects on its own, with the jittered back-off real kiosks use, when
// its connection drops — after a fault the fleet injects, or a center
// restart.

// FleetConfig shapes one fleet process's run.
type FleetConfig struct {
	Addr   string
	Kiosks []Kiosk
	Cards  [][]Card
	// Source is the local address to dial from ("" for any): spreading
	// fleets over 127.0.0.2–127.0.0.9 spreads their ephemeral ports.
	Source string
	// Rate is the arrivals a second this fleet offers; Start and Duration
	// bound the arrivals (connections open before Start).
	Rate     float64
	Start    time.Time
	Duration time.Duration
	// ConnectConcurrency bounds dials in progress. Default 64.
	ConnectConcurrency int
	// DisconnectRate drops the connection mid-request (half right after the
	// Issue, half after the certificate: the kiosk repeats the request and
	// must get the same certificate). CancelRate ends requests with a
	// cancelled outcome instead of printed.
	DisconnectRate, CancelRate float64
	// Timeout bounds each request (all retries included). Default 30 s.
	Timeout time.Duration
	Seed    uint64
	Log     *slog.Logger
	// KeepResults keeps every request's result in the report (tests).
	KeepResults bool
	// OnConnected, when set, is called once every kiosk is connected (or
	// Start came); then, when WaitStart is set, arrivals begin only once it
	// is closed (a coordinator starting several fleets together).
	OnConnected func(connected int, seconds float64)
	WaitStart   <-chan struct{}
}

// FleetReport is one fleet's figures; Merge adds fleets up.
type FleetReport struct {
	Kiosks    int `json:"kiosks"`
	Connected int `json:"connected"` // at Start
	// ConnectSeconds is how long the fleet took to connect every kiosk.
	ConnectSeconds float64 `json:"connectSeconds"`
	// Arrivals offered, those that found no idle kiosk, requests completed
	// (certificate checked and outcome acknowledged).
	Offered   int `json:"offered"`
	NoKiosk   int `json:"noKiosk"`
	Completed int `json:"completed"`
	Cancelled int `json:"cancelled"`
	Replays   int `json:"replays"`
	// Errors by code; Mismatches are answers not bound to their request
	// (the failure that must never happen); ReplayMismatches repeats that
	// got another certificate.
	Errors           map[string]int `json:"errors"`
	Mismatches       int            `json:"mismatches"`
	ReplayMismatches int            `json:"replayMismatches"`
	// Retried counts retryable answers (busy, unavailable…) a request
	// overcame.
	Retried map[string]int `json:"retried"`
	// Issue is the issue→certificate latency histogram (Histogram).
	Issue   Histogram `json:"issue"`
	Elapsed float64   `json:"elapsedSeconds"`
	// Reconnects counts connections re-established after a drop.
	Reconnects int      `json:"reconnects"`
	Results    []Result `json:"results,omitempty"`
}

// Merge adds o into r.
func (r *FleetReport) Merge(o *FleetReport) {
	r.Kiosks += o.Kiosks
	r.Connected += o.Connected
	r.ConnectSeconds = max(r.ConnectSeconds, o.ConnectSeconds)
	r.Offered += o.Offered
	r.NoKiosk += o.NoKiosk
	r.Completed += o.Completed
	r.Cancelled += o.Cancelled
	r.Replays += o.Replays
	r.Mismatches += o.Mismatches
	r.ReplayMismatches += o.ReplayMismatches
	r.Reconnects += o.Reconnects
	r.Elapsed = max(r.Elapsed, o.Elapsed)
	if r.Errors == nil {
		r.Errors = map[string]int{}
	}
	if r.Retried == nil {
		r.Retried = map[string]int{}
	}
	for k, v := range o.Errors {
		r.Errors[k] += v
	}
	for k, v := range o.Retried {
		r.Retried[k] += v
	}
	r.Issue.Merge(&o.Issue)
	r.Results = append(r.Results, o.Results...)
}

// fleetKiosk is one kiosk of the fleet: its connection loop owns the
// websocket; a request borrows the kiosk while it runs.
type fleetKiosk struct {
	k     Kiosk
	cards []Card
	f     *fleet

	mu    sync.Mutex
	ws    *websocket.Conn
	ready chan struct{} // closed when ws is set; replaced on loss
	inbox chan protocol.Message
	busy  atomic.Bool
	n     int // requests made, to pick cards in turn
	// recent are this kiosk's last request IDs: their late answers are
	// expected, not binding failures.
	recent map[string]bool
}

type fleet struct {
	cfg        FleetConfig
	dialer     websocket.Dialer
	dialSlots  chan struct{}
	reconnects atomic.Int64
	connected  atomic.Int64
}

// RunFleet connects every kiosk, offers arrivals at cfg.Rate from
// cfg.Start for cfg.Duration, waits for the requests in flight, and
// reports. It returns an error only for a configuration it cannot run.
func RunFleet(ctx context.Context, cfg FleetConfig) (*FleetReport, error) {
	if cfg.Addr == "" || len(cfg.Kiosks) == 0 || len(cfg.Cards) != len(cfg.Kiosks) {
		return nil, errors.New("loadtest: a fleet needs the center's address, kiosks, and cards for each")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.ConnectConcurrency <= 0 {
		cfg.ConnectConcurrency = 64
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	f := &fleet{cfg: cfg, dialSlots: make(chan struct{}, cfg.ConnectConcurrency)}
	f.dialer = websocket.Dialer{HandshakeTimeout: cfg.Timeout, ReadBufferSize: 4096, WriteBufferSize: 4096}
	if cfg.Source != "" {
		f.dialer.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(cfg.Source)}, Timeout: cfg.Timeout}).DialContext
	}
	rep := &FleetReport{Kiosks: len(cfg.Kiosks), Errors: map[string]int{}, Retried: map[string]int{}}
	kiosks := make([]*fleetKiosk, len(cfg.Kiosks))
	connCtx, stopConns := context.WithCancel(ctx)
	var conns sync.WaitGroup
	connectStart := time.Now()
	for i, k := range cfg.Kiosks {
		fk := &fleetKiosk{k: k, cards: cfg.Cards[i], f: f, ready: make(chan struct{}), inbox: make(chan protocol.Message, 8)}
		kiosks[i] = fk
		conns.Add(1)
		go func() { defer conns.Done(); fk.connLoop(connCtx, rand.New(rand.NewPCG(cfg.Seed, uint64(i)))) }()
	}
	defer func() { stopConns(); conns.Wait() }()

	// Wait for the fleet to connect (or for Start), ten minutes at most.
	giveUp := time.Now().Add(10 * time.Minute)
	for f.connected.Load() < int64(len(kiosks)) && (cfg.Start.IsZero() || time.Now().Before(cfg.Start)) && ctx.Err() == nil && time.Now().Before(giveUp) {
		time.Sleep(20 * time.Millisecond)
	}
	rep.ConnectSeconds = time.Since(connectStart).Seconds()
	if cfg.OnConnected != nil {
		cfg.OnConnected(int(f.connected.Load()), rep.ConnectSeconds)
	}
	if cfg.WaitStart != nil {
		select {
		case <-cfg.WaitStart:
		case <-ctx.Done():
		}
	}
	if !cfg.Start.IsZero() {
		select {
		case <-time.After(time.Until(cfg.Start)):
		case <-ctx.Done():
		}
	}
	rep.Connected = int(f.connected.Load())

	var mu sync.Mutex // guards rep while requests finish
	var reqs sync.WaitGroup
	rng := rand.New(rand.NewPCG(cfg.Seed, 1<<62))
	start := time.Now()
	end := start.Add(cfg.Duration)
	next := start
	for cfg.Rate > 0 && ctx.Err() == nil {
		// Poisson arrivals: exponential gaps with mean 1/Rate.
		next = next.Add(time.Duration(rng.ExpFloat64() / cfg.Rate * float64(time.Second)))
		if next.After(end) {
			break
		}
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		fk := pickIdle(kiosks, rng)
		mu.Lock()
		rep.Offered++
		if fk == nil {
			rep.NoKiosk++
			mu.Unlock()
			continue
		}
		mu.Unlock()
		fault := NoFault
		if cfg.DisconnectRate > 0 && rng.Float64() < cfg.DisconnectRate {
			fault = []Fault{BeforeResponse, AfterResponse}[rng.IntN(2)]
		}
		cancel := cfg.CancelRate > 0 && rng.Float64() < cfg.CancelRate
		reqs.Add(1)
		go func() {
			defer reqs.Done()
			res := fk.request(ctx, fault, cancel)
			fk.busy.Store(false)
			mu.Lock()
			defer mu.Unlock()
			rep.record(res, cfg.KeepResults)
		}()
	}
	reqs.Wait()
	rep.Elapsed = time.Since(start).Seconds()
	rep.Reconnects = int(f.reconnects.Load())
	return rep, nil
}

func (r *FleetReport) record(res Result, keep bool) {
	for _, c := range res.Retries {
		r.Retried[c]++
	}
	if keep {
		r.Results = append(r.Results, res)
	}
	switch res.Err {
	case "":
		r.Issue.Add(res.Issue)
		if res.Replayed {
			r.Replays++
		}
		if res.Acked {
			r.Completed++
		}
		if res.Cancelled {
			r.Cancelled++
		}
	case ErrCodeBinding:
		r.Mismatches++
		r.Errors[res.Err]++
	case ErrCodeReplayMismatch:
		r.ReplayMismatches++
		r.Errors[res.Err]++
	default:
		r.Errors[res.Err]++
	}
}

// pickIdle takes a random idle, connected kiosk (a few tries, then a scan
// from a random point).
func pickIdle(ks []*fleetKiosk, rng *rand.Rand) *fleetKiosk {
	for range 8 {
		k := ks[rng.IntN(len(ks))]
		if k.connectedNow() && k.busy.CompareAndSwap(false, true) {
			return k
		}
	}
	off := rng.IntN(len(ks))
	for i := range ks {
		k := ks[(off+i)%len(ks)]
		if k.connectedNow() && k.busy.CompareAndSwap(false, true) {
			return k
		}
	}
	return nil
}

func (fk *fleetKiosk) connectedNow() bool {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	return fk.ws != nil
}

// connLoop keeps the kiosk connected: dial, read until the connection
// ends, wait a jittered back-off, dial again — what a kiosk agent does.
func (fk *fleetKiosk) connLoop(ctx context.Context, rng *rand.Rand) {
	backoff := 250 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		ws, err := fk.f.dial(ctx, fk.k)
		if err != nil {
			wait := backoff/2 + time.Duration(rng.Int64N(int64(backoff)))
			backoff = min(2*backoff, 30*time.Second)
			fk.f.cfg.Log.Debug("dial failed", "kiosk", fk.k.ID, "err", err)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 250 * time.Millisecond
		if first {
			fk.f.connected.Add(1)
			first = false
		} else {
			fk.f.reconnects.Add(1)
		}
		fk.mu.Lock()
		fk.ws = ws
		close(fk.ready)
		fk.mu.Unlock()
		stop := context.AfterFunc(ctx, func() { ws.Close() })
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				break
			}
			m, err := protocol.Decode(b, protocol.MaxCenterFrame)
			if err != nil {
				fk.f.cfg.Log.Warn("undecodable frame from the center", "kiosk", fk.k.ID, "err", err)
				continue
			}
			if _, ok := m.(protocol.Pong); ok {
				continue
			}
			select {
			case fk.inbox <- m:
			default: // nobody is waiting and the inbox is full: a stale answer
			}
		}
		stop()
		ws.Close()
		fk.mu.Lock()
		fk.ws = nil
		fk.ready = make(chan struct{})
		fk.mu.Unlock()
		// A dropped kiosk waits before reconnecting too, so a restarted
		// center is not met by every kiosk in the same instant.
		select {
		case <-time.After(time.Duration(rng.Int64N(int64(backoff)))):
		case <-ctx.Done():
		}
	}
}

func (f *fleet) dial(ctx context.Context, k Kiosk) (*websocket.Conn, error) {
	select {
	case f.dialSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-f.dialSlots }()
	d := f.dialer
	d.TLSClientConfig = k.TLS
	ws, _, err := d.DialContext(ctx, "wss://"+f.cfg.Addr+server.Path, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadDeadline(time.Now().Add(f.cfg.Timeout))
	_, b, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, err
	}
	ws.SetReadDeadline(time.Time{})
	if m, err := protocol.Decode(b, protocol.MaxCenterFrame); err != nil {
		ws.Close()
		return nil, err
	} else if h, ok := m.(protocol.Hello); !ok || h.KioskID != k.ID {
		ws.Close()
		return nil, fmt.Errorf("loadtest: kiosk %s: first frame is not its hello", k.ID)
	}
	return ws, nil
}

// conn waits for the kiosk's connection (until deadline).
func (fk *fleetKiosk) conn(deadline time.Time) (*websocket.Conn, error) {
	for {
		fk.mu.Lock()
		ws, ready := fk.ws, fk.ready
		fk.mu.Unlock()
		if ws != nil {
			return ws, nil
		}
		select {
		case <-ready:
		case <-time.After(time.Until(deadline)):
			return nil, errors.New("loadtest: not connected before the deadline")
		}
	}
}

func (fk *fleetKiosk) send(m protocol.Message, deadline time.Time) error {
	ws, err := fk.conn(deadline)
	if err != nil {
		return err
	}
	b, err := protocol.Encode(m)
	if err != nil {
		return err
	}
	ws.SetWriteDeadline(deadline)
	return ws.WriteMessage(websocket.TextMessage, b)
}

// drop closes the current connection (a fault): the connection loop
// reconnects.
func (fk *fleetKiosk) drop() {
	fk.mu.Lock()
	ws := fk.ws
	fk.mu.Unlock()
	if ws != nil {
		ws.Close()
	}
}

// await reads the inbox until the answer to requestID (certificate, ack or
// error). Answers to this kiosk's earlier requests that arrive late are
// skipped; anything else is a binding failure.
func (fk *fleetKiosk) await(requestID string, want string, deadline time.Time, earlier map[string]bool) (protocol.Message, error) {
	for {
		select {
		case m := <-fk.inbox:
			id := ""
			switch m := m.(type) {
			case protocol.CertificateResponse:
				id = m.RequestID
			case protocol.Ack:
				id = m.RequestID
			case *protocol.Error:
				id = m.RequestID
				if id == "" {
					continue // an answer to a frame, not to a request
				}
			default:
				continue
			}
			if id == requestID {
				if _, isErr := m.(*protocol.Error); isErr || m.Type() == want {
					return m, nil
				}
				continue // a duplicate answer of the other kind (a late replay)
			}
			if earlier[id] {
				continue
			}
			return nil, fmt.Errorf("%w: %s for request %s while waiting for %s", errBinding, m.Type(), id, requestID)
		case <-time.After(time.Until(deadline)):
			return nil, errors.New("loadtest: no answer before the deadline")
		}
	}
}

// request runs one resident's request on the kiosk: issue (resent after
// every reconnect, retried on retryable errors with jitter), binding
// check, then the printed (or cancelled) outcome until acknowledged.
func (fk *fleetKiosk) request(ctx context.Context, fault Fault, cancel bool) Result {
	card := fk.cards[fk.n%len(fk.cards)]
	fk.n++
	req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: card.Municipality, Kind: card.Kind, Copies: 1, Card: card.Raw}
	res := Result{KioskID: fk.k.ID, RequestID: req.RequestID, Kind: card.Kind, Fault: fault}
	fail := func(code string, err error) Result {
		res.Err = code
		if err != nil {
			res.Detail = err.Error()
		}
		return res
	}
	deadline := time.Now().Add(fk.f.cfg.Timeout)
	earlier := fk.earlier()
	fk.remember(req.RequestID)
	start := time.Now()
	resp, code, err := fk.issueUntilAnswered(req, fault, deadline, earlier, &res)
	if err != nil {
		if errors.Is(err, errBinding) {
			return fail(ErrCodeBinding, err)
		}
		return fail(code, err)
	}
	if err := checkBinding(req, card, resp); err != nil {
		return fail(ErrCodeBinding, err)
	}
	if fault == AfterResponse {
		first := resp
		fk.drop()
		again, code, err := fk.issueUntilAnswered(req, NoFault, deadline, earlier, &res)
		if err != nil {
			if errors.Is(err, errBinding) {
				return fail(ErrCodeBinding, err)
			}
			return fail(code, err)
		}
		if err := checkBinding(req, card, again); err != nil {
			return fail(ErrCodeBinding, err)
		}
		if err := sameCertificates(first, again); err != nil {
			return fail(ErrCodeReplayMismatch, err)
		}
		resp = again
	}
	res.Issue = time.Since(start)
	res.Replayed = resp.Replayed
	for _, c := range resp.Certificates {
		res.CertificateIDs = append(res.CertificateIDs, c.ID)
	}
	o := protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: req.Copies}
	if cancel {
		o = protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled}
		res.Cancelled = true
	}
	// Delivery at least once: resend after a drop until acknowledged.
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if err := fk.send(o, deadline); err != nil {
			continue
		}
		m, err := fk.await(req.RequestID, protocol.TypeAck, minTime(deadline, time.Now().Add(5*time.Second)), earlier)
		if errors.Is(err, errBinding) {
			return fail(ErrCodeBinding, err)
		}
		if err != nil {
			continue
		}
		if e, ok := m.(*protocol.Error); ok {
			if e.Retryable {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fail(string(e.Code), e)
		}
		res.Acked = true
		res.Cycle = time.Since(start)
		return res
	}
	return fail(ErrCodeConnection, errors.New("outcome not acknowledged before the deadline"))
}

func (fk *fleetKiosk) issueUntilAnswered(req protocol.Issue, fault Fault, deadline time.Time, earlier map[string]bool, res *Result) (*protocol.CertificateResponse, string, error) {
	for time.Now().Before(deadline) {
		if err := fk.send(req, deadline); err != nil {
			continue
		}
		if fault == BeforeResponse {
			fault = NoFault
			fk.drop()
			continue
		}
		m, err := fk.await(req.RequestID, protocol.TypeCertificate, minTime(deadline, time.Now().Add(15*time.Second)), earlier)
		if errors.Is(err, errBinding) {
			return nil, "", err
		}
		if err != nil {
			continue // the connection dropped: resend on the next
		}
		if e, ok := m.(*protocol.Error); ok {
			if !e.Retryable {
				return nil, string(e.Code), e
			}
			res.Retries = append(res.Retries, string(e.Code))
			wait := 50 * time.Millisecond
			if e.RetryAfterMs > 0 {
				wait = time.Duration(e.RetryAfterMs) * time.Millisecond
			}
			time.Sleep(wait/2 + time.Duration(rand.Int64N(int64(wait))))
			continue
		}
		resp := m.(protocol.CertificateResponse)
		return &resp, "", nil
	}
	return nil, ErrCodeConnection, errors.New("no certificate before the deadline")
}

// earlier returns the kiosk's request IDs of the last few requests, whose
// late answers are not binding failures.
func (fk *fleetKiosk) earlier() map[string]bool {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	return maps.Clone(fk.recent)
}

func (fk *fleetKiosk) remember(id string) {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	if fk.recent == nil || len(fk.recent) > 16 {
		fk.recent = map[string]bool{}
	}
	fk.recent[id] = true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
