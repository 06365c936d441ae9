package terminal

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

const req = "0123456789abcdef0123456789abcdef"

// newTerm returns a Terminal with an open event stream (so the terminal is
// present) and that stream.
func newTerm(t *testing.T, cfg Config) (*Terminal, <-chan Event) {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	term := New(cfg)
	ch, cancel := term.Subscribe()
	t.Cleanup(cancel)
	return term, ch
}

func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event stream closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

// async runs f and returns its result on a channel.
func async(f func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- f() }()
	return c
}

func wait(t *testing.T, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("call did not return")
	}
	return nil
}

// authorize starts an authorisation and returns its event and result.
func authorize(t *testing.T, term *Terminal, ch <-chan Event, ctx context.Context, amount int) (Payment, <-chan error) {
	t.Helper()
	res := async(func() error { return term.Authorize(ctx, req, amount) })
	ev := next(t, ch)
	if ev.Type != EventPaymentAuthorize || ev.Payment == nil {
		t.Fatalf("event %+v, want payment.authorize", ev)
	}
	return *ev.Payment, res
}

func TestPaymentPaidAndCaptured(t *testing.T) {
	term, ch := newTerm(t, Config{})
	p, res := authorize(t, term, ch, context.Background(), 240)
	if p.ID != req+"-1" || p.IdempotencyKey != p.ID || p.RequestID != req || p.AmountYen != 240 || p.Attempt != 1 || p.State != PaymentPending {
		t.Fatalf("authorize event %+v", p)
	}
	if c := term.Counts(); c.PaymentsPending != 1 || c.Streams != 1 {
		t.Errorf("counts %+v", c)
	}
	got, err := term.AnswerPayment(p.ID, true, "")
	if err != nil || got.State != PaymentAuthorized {
		t.Fatalf("answer: %+v, %v", got, err)
	}
	if err := wait(t, res); err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	cap := async(func() error { return term.Capture(context.Background(), req) })
	ev := next(t, ch)
	if ev.Type != EventPaymentCapture || ev.Payment.ID != p.ID || ev.Payment.State != PaymentCapturing {
		t.Fatalf("capture event %+v", ev)
	}
	if c := term.Counts(); c.CapturesPending != 1 {
		t.Errorf("counts %+v", c)
	}
	if got, err := term.Acknowledge(p.ID, AckCaptured); err != nil || got.State != PaymentCaptured {
		t.Fatalf("ack: %+v, %v", got, err)
	}
	if err := wait(t, cap); err != nil {
		t.Fatalf("Capture: %v", err)
	}
	if c := term.Counts(); c != (Counts{Streams: 1}) {
		t.Errorf("counts after capture %+v", c)
	}
	if len(term.Pending()) != 0 {
		t.Errorf("pending after capture: %+v", term.Pending())
	}
}

func TestPaymentAnswersAreIdempotent(t *testing.T) {
	type answer struct {
		paid   bool
		reason string
	}
	for _, tc := range []struct {
		name   string
		first  answer
		then   answer
		want   error
		authOK bool
	}{
		{"paid twice", answer{true, ""}, answer{true, ""}, nil, true},
		{"failed twice", answer{false, "declined"}, answer{false, "declined"}, nil, false},
		{"failed twice, other reason", answer{false, "declined"}, answer{false, "other"}, nil, false},
		{"paid then failed", answer{true, ""}, answer{false, "declined"}, ErrConflict, true},
		{"failed then paid", answer{false, ""}, answer{true, ""}, ErrConflict, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			term, ch := newTerm(t, Config{})
			p, res := authorize(t, term, ch, context.Background(), 120)
			first, err := term.AnswerPayment(p.ID, tc.first.paid, tc.first.reason)
			if err != nil {
				t.Fatal(err)
			}
			authErr := wait(t, res)
			if (authErr == nil) != tc.authOK {
				t.Fatalf("Authorize = %v, want ok %v", authErr, tc.authOK)
			}
			if !tc.authOK && !errors.Is(authErr, ErrDeclined) {
				t.Errorf("Authorize = %v, want ErrDeclined", authErr)
			}
			again, err := term.AnswerPayment(p.ID, tc.then.paid, tc.then.reason)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("second answer: %v, want %v", err, tc.want)
			}
			if again.State != first.State {
				t.Errorf("state changed from %s to %s", first.State, again.State)
			}
		})
	}
}

func TestPaymentAnswerInvalid(t *testing.T) {
	term, ch := newTerm(t, Config{})
	p, res := authorize(t, term, ch, context.Background(), 120)
	for _, tc := range []struct {
		name   string
		id     string
		paid   bool
		reason string
		want   error
	}{
		{"unknown payment", req + "-9", true, "", ErrUnknown},
		{"reason with paid", p.ID, true, "declined", ErrInvalid},
		{"unknown reason", p.ID, false, "Taro Yamada", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := term.AnswerPayment(tc.id, tc.paid, tc.reason); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := term.AnswerPayment(p.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, res); err != nil {
		t.Fatal(err)
	}
}

func TestPaymentExpiryVoids(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		reason string
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, VoidExpired},
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, VoidCancelled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			term, ch := newTerm(t, Config{})
			ctx, cancel := tc.ctx()
			defer cancel()
			p, res := authorize(t, term, ch, ctx, 120)
			if err := wait(t, res); !errors.Is(err, ErrNoAnswer) {
				t.Fatalf("Authorize = %v, want ErrNoAnswer", err)
			}
			ev := next(t, ch)
			if ev.Type != EventPaymentVoid || ev.Payment.ID != p.ID || ev.Payment.VoidReason != tc.reason || ev.Payment.State != PaymentVoiding {
				t.Fatalf("event %+v, want payment.void (%s)", ev, tc.reason)
			}
			// A late answer is refused either way: the kiosk gave up.
			for _, paid := range []bool{true, false} {
				if _, err := term.AnswerPayment(p.ID, paid, ""); !errors.Is(err, ErrExpired) {
					t.Errorf("late answer paid=%v: %v, want ErrExpired", paid, err)
				}
			}
			if c := term.Counts(); c.VoidsPending != 1 {
				t.Errorf("counts %+v", c)
			}
			if _, err := term.Acknowledge(p.ID, AckCaptured); !errors.Is(err, ErrConflict) {
				t.Errorf("capture ack of a void: %v", err)
			}
			for range 2 {
				if got, err := term.Acknowledge(p.ID, AckVoided); err != nil || got.State != PaymentVoided {
					t.Fatalf("void ack: %+v, %v", got, err)
				}
			}
		})
	}
}

func TestAuthorizeNeedsTerminal(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	term := New(Config{Now: clock, Presence: 30 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := term.Authorize(context.Background(), req, 120); !errors.Is(err, ErrTerminalAbsent) {
		t.Fatalf("no terminal: %v, want ErrTerminalAbsent", err)
	}
	term.Touch()
	if !term.Present() {
		t.Fatal("not present after a request")
	}
	advance(31 * time.Second)
	if term.Present() {
		t.Fatal("still present 31 s after the last request")
	}
	_, cancel := term.Subscribe()
	if !term.Present() {
		t.Fatal("not present with a stream open")
	}
	advance(time.Hour)
	if !term.Present() {
		t.Fatal("stream open but not present")
	}
	cancel()
	if !term.Present() {
		t.Fatal("not present just after the stream closed")
	}
	advance(31 * time.Second)
	if term.Present() {
		t.Fatal("present long after the stream closed")
	}
}

func TestCaptureUnacknowledgedStaysPending(t *testing.T) {
	term, ch := newTerm(t, Config{AckTimeout: 50 * time.Millisecond})
	p, res := authorize(t, term, ch, context.Background(), 120)
	term.AnswerPayment(p.ID, true, "")
	if err := wait(t, res); err != nil {
		t.Fatal(err)
	}
	if err := term.Capture(context.Background(), req); !errors.Is(err, ErrNotAcknowledged) {
		t.Fatalf("Capture = %v, want ErrNotAcknowledged", err)
	}
	next(t, ch) // the capture event
	// A new stream starts with the capture again.
	ch2, cancel := term.Subscribe()
	defer cancel()
	ev := next(t, ch2)
	if ev.Type != EventPaymentCapture || ev.Payment.ID != p.ID {
		t.Fatalf("replayed %+v, want the capture", ev)
	}
	if pend := term.Pending(); len(pend) != 1 || pend[0].Type != EventPaymentCapture {
		t.Fatalf("pending %+v", pend)
	}
	// Capturing again while unacknowledged announces nothing new.
	if err := term.Capture(context.Background(), req); !errors.Is(err, ErrNotAcknowledged) {
		t.Fatalf("second Capture = %v", err)
	}
	if _, err := term.Acknowledge(p.ID, AckCaptured); err != nil {
		t.Fatal(err)
	}
	if err := term.Capture(context.Background(), req); err != nil {
		t.Fatalf("Capture after the ack = %v", err)
	}
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

func TestVoidAfterPrintFailureThenRetry(t *testing.T) {
	term, ch := newTerm(t, Config{})
	p1, res := authorize(t, term, ch, context.Background(), 120)
	term.AnswerPayment(p1.ID, true, "")
	if err := wait(t, res); err != nil {
		t.Fatal(err)
	}
	void := async(func() error { return term.Void(context.Background(), req) })
	ev := next(t, ch)
	if ev.Type != EventPaymentVoid || ev.Payment.VoidReason != VoidPrintFailed {
		t.Fatalf("event %+v", ev)
	}
	term.Acknowledge(p1.ID, AckVoided)
	if err := wait(t, void); err != nil {
		t.Fatal(err)
	}
	// The retry is a new authorisation with its own ID: a repeated answer
	// for the first one cannot pay the second.
	p2, res := authorize(t, term, ch, context.Background(), 120)
	if p2.ID != req+"-2" || p2.Attempt != 2 {
		t.Fatalf("retry payment %+v", p2)
	}
	if got, err := term.AnswerPayment(p1.ID, true, ""); err != nil || got.State != PaymentVoided {
		t.Fatalf("repeat for attempt 1: %+v, %v", got, err)
	}
	if got, _ := term.Payment(p2.ID); got.State != PaymentPending {
		t.Fatalf("attempt 2 is %s after a repeat for attempt 1", got.State)
	}
	term.AnswerPayment(p2.ID, true, "")
	if err := wait(t, res); err != nil {
		t.Fatal(err)
	}
	if err := term.Void(context.Background(), "ffffffffffffffffffffffffffffffff"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Void of an unknown request: %v", err)
	}
}

func TestSlowStreamIsClosed(t *testing.T) {
	term := New(Config{Buffer: 1, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ch, cancel := term.Subscribe()
	defer cancel()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for range 3 {
		go term.Authorize(ctx, req, 120)
	}
	deadline := time.After(5 * time.Second)
	n := 0
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				if n > 2 {
					t.Fatalf("stream delivered %d events before closing; buffer is 1", n)
				}
				if c := term.Counts(); c.Streams != 0 {
					t.Errorf("closed stream still counted: %+v", c)
				}
				return
			}
			n++
			if n == 1 {
				time.Sleep(100 * time.Millisecond) // fall behind
			}
		case <-deadline:
			t.Fatal("slow stream was not closed")
		}
	}
}

func TestCloseEndsStreams(t *testing.T) {
	term, ch := newTerm(t, Config{})
	term.Close()
	if _, ok := <-ch; ok {
		t.Fatal("stream open after Close")
	}
	ch2, cancel := term.Subscribe()
	cancel()
	if _, ok := <-ch2; ok {
		t.Fatal("new stream open after Close")
	}
}

func TestPruneForgetsFinishedPayments(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	term, ch := newTerm(t, Config{Now: clock, Retention: time.Minute})
	p, res := authorize(t, term, ch, context.Background(), 120)
	term.AnswerPayment(p.ID, false, "declined")
	wait(t, res)
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	other := "fedcba9876543210fedcba9876543210"
	go term.Authorize(context.Background(), other, 120)
	ev := next(t, ch)
	if _, ok := term.Payment(p.ID); ok {
		t.Error("declined payment kept past the retention")
	}
	term.mu.Lock()
	_, counted := term.attempts["p:"+req]
	term.mu.Unlock()
	if counted {
		t.Error("attempt counter kept for a forgotten request")
	}
	term.AnswerPayment(ev.Payment.ID, false, "")
}

func FuzzAnswer(f *testing.F) {
	f.Add(req+"-1", true, "", "captured")
	f.Add(req+"-1", false, "declined", "voided")
	f.Add("", false, "paper_out", "")
	f.Add("../../etc", true, "\x00", "captured\n")
	f.Fuzz(func(t *testing.T, id string, paid bool, reason, ack string) {
		term, ch := newTerm(t, Config{AckTimeout: time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p, res := authorize(t, term, ch, ctx, 120)
		if id == "=" {
			id = p.ID
		}
		got, err := term.AnswerPayment(id, paid, reason)
		if err == nil {
			if id != p.ID || (paid && reason != "") || (!paid && reason != "" && !oneOf(reason, FailReasons)) {
				t.Fatalf("accepted answer id=%q paid=%v reason=%q", id, paid, reason)
			}
			if (got.State == PaymentAuthorized) != paid {
				t.Fatalf("state %s after paid=%v", got.State, paid)
			}
		}
		if _, err := term.Acknowledge(p.ID, Ack(ack)); err == nil {
			t.Fatalf("acknowledged %q with nothing to acknowledge", ack)
		}
		cancel()
		wait(t, res)
	})
}
