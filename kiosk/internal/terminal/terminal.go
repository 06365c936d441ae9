// Package terminal plugs the store terminal's own software into the kiosk
// flow as its cash register and its printer. The terminal software talks to
// the kiosk agent over the integrator API (kiosk/internal/localapi,
// docs/INTEGRATION.md); this package is the state behind that API.
//
// The flow calls a Terminal like any payment (flow.Payment) or printer
// (printer.Printer). Each call becomes an event on the terminal's event
// stream, and the call returns when the terminal has answered through the
// API, or when the flow's deadline passes:
//
//	flow                           Terminal                         terminal software
//	Authorize(req, ¥120) ──→ event payment.authorize ──────────→ collects ¥120
//	                     ←── AnswerPayment(id, paid) ←───────── POST /payments/{id}
//	Print(job)           ──→ event print.job ──────────────────→ GET  /print-jobs/{id}.pdf (once)
//	                     ←── ReportPrint(id, printed) ←──────── POST /print-jobs/{id}
//	Capture(req)         ──→ event payment.capture ────────────→ keeps the money
//	                     ←── Acknowledge(id, captured) ←─────── POST /payments/{id}/captured
//
// Money. The fee is authorised (held) before printing, captured only after
// the terminal reports the paper printed, and voided otherwise. When the
// terminal does not answer an authorisation in time the payment expires
// and a payment.void event tells the terminal to release anything it may
// have taken; a late "paid" is refused. Captures and voids stay pending,
// and are announced again on every new event stream, until the terminal
// acknowledges them.
//
// Paper. The PDF is personal data. It leaves the agent only through
// FetchPDF, once: the bytes are handed over and forgotten. A job whose
// result or deadline comes first is forgotten without being fetched. A
// "printed" report for a job whose PDF was never fetched is refused: the
// paper must be the document this kiosk produced.
//
// Identifiers. A payment is named <requestId>-<attempt> and a print job
// <job name>-<attempt>, because the flow retries a failed print once under
// the same request: a late repeat of an answer for the first attempt must
// not land on the second. Answers are idempotent: repeating one is
// harmless, contradicting one is refused (ErrConflict).
//
// Presence. A terminal is present while it holds an event stream open, or
// for Config.Presence after any authenticated request. Without one, Print
// reports the printer offline and Authorize fails at once, so a resident
// is not left waiting for a terminal that is not there.
//
// Nothing here carries personal data except the PDF bytes: events and
// answers hold request IDs, amounts, copies, sizes and result codes.
package terminal

import (
	"cmp"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
)

// Errors. The API maps them to HTTP status codes (docs/INTEGRATION.md).
var (
	// ErrTerminalAbsent means no terminal software is connected.
	ErrTerminalAbsent = errors.New("terminal: no store terminal is connected to the integrator API: start the terminal software and keep its event stream open")
	// ErrDeclined means the terminal answered that the payment failed.
	ErrDeclined = errors.New("terminal: the store terminal reported that the payment failed")
	// ErrNoAnswer means the terminal did not answer an authorisation in
	// time; the payment expired and a payment.void event was sent.
	ErrNoAnswer = errors.New("terminal: the store terminal did not answer the payment request in time; a void was sent")
	// ErrNotAcknowledged means the terminal has not yet acknowledged a
	// capture or void. It stays pending and is announced again.
	ErrNotAcknowledged = errors.New("terminal: the store terminal has not acknowledged yet; the request stays pending")
	// ErrUnknown means no payment or print job has that ID (never, or
	// finished longer ago than Config.Retention).
	ErrUnknown = errors.New("terminal: no such payment or print job")
	// ErrConflict means an answer contradicts the one given before, or asks
	// for a step the payment or job is not waiting for.
	ErrConflict = errors.New("terminal: the answer contradicts an earlier one or does not fit the current state")
	// ErrExpired means the kiosk stopped waiting before the answer came
	// (see the payment.void or print.cancel event).
	ErrExpired = errors.New("terminal: too late: the kiosk stopped waiting")
	// ErrPDFGone means the PDF was fetched already or its job has ended:
	// it can be fetched once.
	ErrPDFGone = errors.New("terminal: the PDF was already fetched or its job has ended; it can be fetched once")
	// ErrNotFetched means "printed" was reported for a job whose PDF was
	// never fetched.
	ErrNotFetched = errors.New("terminal: a job cannot be printed before its PDF is fetched")
	// ErrInvalid means an answer is malformed (unknown result or reason).
	ErrInvalid = errors.New("terminal: invalid answer")
)

// EventType names an event on the terminal's stream.
type EventType string

// Events. Each asks the terminal for one action.
const (
	// EventPaymentAuthorize asks for the fee: answer paid or failed.
	EventPaymentAuthorize EventType = "payment.authorize"
	// EventPaymentCapture says the paper is out: keep the money, then
	// acknowledge.
	EventPaymentCapture EventType = "payment.capture"
	// EventPaymentVoid says nothing was printed: release the money, then
	// acknowledge.
	EventPaymentVoid EventType = "payment.void"
	// EventPrintJob announces a job: fetch its PDF once, print it, report.
	EventPrintJob EventType = "print.job"
	// EventPrintCancel says the kiosk stopped waiting for a job: do not
	// print it (informational; nothing to answer).
	EventPrintCancel EventType = "print.cancel"
)

// Event is one message on the terminal's stream. Exactly one of Payment
// and PrintJob is set. Events can repeat (every new stream starts with the
// open requests again): handle them by payment or job ID.
type Event struct {
	Seq      uint64    `json:"seq"`
	Type     EventType `json:"type"`
	Time     time.Time `json:"time"`
	Payment  *Payment  `json:"payment,omitempty"`
	PrintJob *PrintJob `json:"printJob,omitempty"`
}

// Config tunes a Terminal. The zero value is usable.
type Config struct {
	// AckTimeout bounds the wait for a capture or void acknowledgement when
	// the flow's context has no earlier deadline; default 5 s. The flow
	// goes on after it (the take-your-certificate reminder must not wait
	// for the cash register); the request stays pending.
	AckTimeout time.Duration
	// Presence is how long an authenticated request counts as the terminal
	// being there when it holds no event stream open; default 30 s.
	Presence time.Duration
	// Retention keeps finished payments and jobs, so a repeated answer gets
	// the same reply; default 15 min (longer than any session).
	Retention time.Duration
	// MaxOpen bounds the captures and voids awaiting acknowledgement; past
	// it the oldest is dropped with an error log. Default 256.
	MaxOpen int
	// Buffer is each event stream's queue; a stream that falls this far
	// behind is closed (the terminal reconnects and gets the open requests
	// again). Default 64.
	Buffer int
	Log    *slog.Logger
	Now    func() time.Time
}

func (c *Config) defaults() {
	setD := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setD(&c.AckTimeout, 5*time.Second)
	setD(&c.Presence, 30*time.Second)
	setD(&c.Retention, 15*time.Minute)
	if c.MaxOpen <= 0 {
		c.MaxOpen = 256
	}
	if c.Buffer <= 0 {
		c.Buffer = 64
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Terminal is the store terminal as the flow's payment and printer. It is
// safe for concurrent use.
type Terminal struct {
	cfg Config

	mu       sync.Mutex
	seq      uint64
	created  uint64 // creation order of payments and jobs
	payments map[string]*payment
	jobs     map[string]*job
	attempts map[string]int // per request ID (payments) and job name (jobs)
	subs     map[*subscriber]struct{}
	lastSeen time.Time
	state    printer.State // as the terminal last reported its printer
	closed   bool
}

// New returns a Terminal whose printer is ready until the terminal says
// otherwise.
func New(cfg Config) *Terminal {
	cfg.defaults()
	return &Terminal{
		cfg:      cfg,
		payments: map[string]*payment{},
		jobs:     map[string]*job{},
		attempts: map[string]int{},
		subs:     map[*subscriber]struct{}{},
	}
}

type subscriber struct{ ch chan Event }

// Subscribe opens an event stream: first the open requests (payments
// awaiting an answer or an acknowledgement, jobs awaiting a result), then
// new events as they happen. The channel is closed when cancel is called,
// when the Terminal is closed, or when the subscriber falls Config.Buffer
// events behind; the terminal then subscribes again and gets the open
// requests again. An open stream makes the terminal present.
func (t *Terminal) Subscribe() (<-chan Event, func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	open := t.openEventsLocked()
	s := &subscriber{ch: make(chan Event, len(open)+t.cfg.Buffer)}
	for _, ev := range open {
		s.ch <- ev
	}
	if t.closed {
		close(s.ch)
		return s.ch, func() {}
	}
	t.subs[s] = struct{}{}
	return s.ch, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if _, ok := t.subs[s]; ok {
			delete(t.subs, s)
			close(s.ch)
		}
		// The stream just ended: the terminal was there until now.
		t.lastSeen = t.cfg.Now()
	}
}

// Pending returns the open requests as events, oldest first: what a new
// event stream starts with.
func (t *Terminal) Pending() []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.openEventsLocked()
}

// openEventsLocked builds one event per open request, in creation order.
func (t *Terminal) openEventsLocked() []Event {
	type item struct {
		order uint64
		ev    Event
	}
	var items []item
	for _, p := range t.payments {
		var typ EventType
		switch p.view.State {
		case PaymentPending:
			typ = EventPaymentAuthorize
		case PaymentCapturing:
			typ = EventPaymentCapture
		case PaymentVoiding:
			typ = EventPaymentVoid
		default:
			continue
		}
		v := p.view
		items = append(items, item{p.order, t.eventLocked(typ, &v, nil)})
	}
	for _, j := range t.jobs {
		if j.view.State == JobWaiting || j.view.State == JobFetched {
			v := j.view
			items = append(items, item{j.order, t.eventLocked(EventPrintJob, nil, &v)})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.order, b.order) })
	out := make([]Event, len(items))
	for i := range items {
		out[i] = items[i].ev
	}
	return out
}

func (t *Terminal) eventLocked(typ EventType, p *Payment, j *PrintJob) Event {
	t.seq++
	return Event{Seq: t.seq, Type: typ, Time: t.cfg.Now().UTC(), Payment: p, PrintJob: j}
}

// publishLocked sends an event to every stream. A stream whose queue is
// full is closed rather than waited for: the flow never blocks on a slow
// terminal, and the terminal recovers by subscribing again.
func (t *Terminal) publishLocked(typ EventType, p *Payment, j *PrintJob) {
	ev := t.eventLocked(typ, p, j)
	for s := range t.subs {
		select {
		case s.ch <- ev:
		default:
			delete(t.subs, s)
			close(s.ch)
			t.cfg.Log.Warn("terminal event stream fell behind; closed it (the terminal should reconnect)")
		}
	}
}

// Touch records an authenticated request from the terminal.
func (t *Terminal) Touch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastSeen = t.cfg.Now()
}

// Present reports whether a terminal is connected: an event stream is
// open, or it made a request within Config.Presence.
func (t *Terminal) Present() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.presentLocked()
}

func (t *Terminal) presentLocked() bool {
	return len(t.subs) > 0 || (!t.lastSeen.IsZero() && t.cfg.Now().Sub(t.lastSeen) < t.cfg.Presence)
}

// Counts is how many requests wait for the terminal.
type Counts struct {
	Streams          int `json:"streams"`          // event streams open now
	PaymentsPending  int `json:"paymentsPending"`  // authorisations awaiting paid or failed
	CapturesPending  int `json:"capturesPending"`  // captures awaiting acknowledgement
	VoidsPending     int `json:"voidsPending"`     // voids awaiting acknowledgement
	PrintJobsPending int `json:"printJobsPending"` // jobs awaiting a result
}

// Counts returns the open requests by kind.
func (t *Terminal) Counts() Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := Counts{Streams: len(t.subs)}
	for _, p := range t.payments {
		switch p.view.State {
		case PaymentPending:
			c.PaymentsPending++
		case PaymentCapturing:
			c.CapturesPending++
		case PaymentVoiding:
			c.VoidsPending++
		}
	}
	for _, j := range t.jobs {
		if j.view.State == JobWaiting || j.view.State == JobFetched {
			c.PrintJobsPending++
		}
	}
	return c
}

// Close ends every event stream (the agent is stopping). Calls waiting for
// the terminal end with their contexts.
func (t *Terminal) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for s := range t.subs {
		delete(t.subs, s)
		close(s.ch)
	}
}

// pruneLocked forgets finished payments and jobs older than Retention,
// drops the oldest unacknowledged captures and voids beyond MaxOpen, and
// forgets attempt counters nothing refers to any more.
func (t *Terminal) pruneLocked() {
	now := t.cfg.Now()
	for id, p := range t.payments {
		if !p.finished.IsZero() && now.Sub(p.finished) > t.cfg.Retention {
			delete(t.payments, id)
		}
	}
	for id, j := range t.jobs {
		if !j.finished.IsZero() && now.Sub(j.finished) > t.cfg.Retention {
			delete(t.jobs, id)
		}
	}
	var open []*payment
	for _, p := range t.payments {
		if p.view.State == PaymentCapturing || p.view.State == PaymentVoiding {
			open = append(open, p)
		}
	}
	if len(open) > t.cfg.MaxOpen {
		slices.SortFunc(open, func(a, b *payment) int { return cmp.Compare(a.order, b.order) })
		for _, p := range open[:len(open)-t.cfg.MaxOpen] {
			t.cfg.Log.Error("dropping a payment step the store terminal never acknowledged", "payment", p.view.ID, "state", p.view.State)
			delete(t.payments, p.view.ID)
		}
	}
	used := map[string]bool{}
	for _, p := range t.payments {
		used["p:"+p.view.RequestID] = true
	}
	for _, j := range t.jobs {
		used["j:"+j.view.Name] = true
	}
	for k := range t.attempts {
		if !used[k] {
			delete(t.attempts, k)
		}
	}
}
