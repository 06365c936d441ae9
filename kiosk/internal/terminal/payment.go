package terminal

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PaymentState is where one authorisation stands.
type PaymentState string

// Payment states.
//
//	pending ──paid──→ authorized ──Capture──→ capturing ──ack──→ captured
//	   │                  └──────Void──────→ voiding ────ack──→ voided
//	   ├──failed──→ declined
//	   └──deadline──→ voiding (void reason "expired") ──ack──→ voided
const (
	PaymentPending    PaymentState = "pending"    // awaiting paid or failed
	PaymentAuthorized PaymentState = "authorized" // paid; printing
	PaymentDeclined   PaymentState = "declined"   // failed; nothing to do
	PaymentCapturing  PaymentState = "capturing"  // printed: keep the money, then acknowledge
	PaymentCaptured   PaymentState = "captured"
	PaymentVoiding    PaymentState = "voiding" // not printed: release the money, then acknowledge
	PaymentVoided     PaymentState = "voided"
)

// Void reasons.
const (
	VoidPrintFailed = "print_failed" // the printer failed; the resident is not charged
	VoidExpired     = "expired"      // the terminal did not answer in time
	VoidCancelled   = "cancelled"    // the kiosk stopped waiting (shutting down)
)

// Answer results and reasons for a payment.
const (
	ResultPaid   = "paid"
	ResultFailed = "failed"
)

// FailReasons are the reasons a terminal may give for a failed payment
// (informational: the resident sees the same message for all).
var FailReasons = []string{"declined", "cancelled", "timeout", "other"}

// Payment is one authorisation as the terminal sees it.
type Payment struct {
	// ID names this authorisation: <requestId>-<attempt>.
	ID string `json:"paymentId"`
	// RequestID is the issuance request the fee is for (32 hex digits); the
	// center settles by it.
	RequestID string `json:"requestId"`
	Attempt   int    `json:"attempt"`
	AmountYen int    `json:"amountYen"`
	// IdempotencyKey is stable across repeats of this authorisation's
	// events and unique per authorisation (it equals ID): pass it to the
	// payment processor so a repeated event never charges twice.
	IdempotencyKey string       `json:"idempotencyKey"`
	State          PaymentState `json:"state"`
	// Deadline is when the kiosk stops waiting for the answer.
	Deadline time.Time `json:"deadline,omitzero"`
	// Result is the terminal's answer (paid or failed), once given.
	Result string `json:"result,omitempty"`
	// Reason is the failure reason given with "failed".
	Reason string `json:"reason,omitempty"`
	// VoidReason says why a void was asked for.
	VoidReason string `json:"voidReason,omitempty"`
}

type payment struct {
	view     Payment
	order    uint64
	answered chan struct{} // closed when answered or expired
	acked    chan struct{} // closed when a capture or void is acknowledged
	finished time.Time     // zero while the terminal still has something to do
}

// Authorize implements flow.Payment: it asks the terminal for the fee and
// waits for its answer until ctx ends. With no answer by then the payment
// expires and the terminal is told to void it.
func (t *Terminal) Authorize(ctx context.Context, requestID string, amountYen int) error {
	if requestID == "" || amountYen < 0 {
		return fmt.Errorf("%w: payment needs a request ID and an amount of at least 0", ErrInvalid)
	}
	t.mu.Lock()
	if !t.presentLocked() {
		t.mu.Unlock()
		return ErrTerminalAbsent
	}
	t.pruneLocked()
	t.attempts["p:"+requestID]++
	n := t.attempts["p:"+requestID]
	t.created++
	id := fmt.Sprintf("%s-%d", requestID, n)
	p := &payment{
		order:    t.created,
		answered: make(chan struct{}),
		acked:    make(chan struct{}),
		view: Payment{ID: id, RequestID: requestID, Attempt: n, AmountYen: amountYen,
			IdempotencyKey: id, State: PaymentPending},
	}
	if d, ok := ctx.Deadline(); ok {
		p.view.Deadline = d.UTC()
	}
	t.payments[id] = p
	v := p.view
	t.publishLocked(EventPaymentAuthorize, &v, nil)
	t.mu.Unlock()
	t.cfg.Log.Info("payment requested from the store terminal", "payment", id, "amountYen", amountYen)

	select {
	case <-p.answered:
	case <-ctx.Done():
		t.mu.Lock()
		if p.view.State == PaymentPending {
			// No answer: whatever the terminal may have taken must go back.
			p.view.State, p.view.VoidReason = PaymentVoiding, VoidExpired
			if errors.Is(ctx.Err(), context.Canceled) {
				p.view.VoidReason = VoidCancelled
			}
			close(p.answered)
			v := p.view
			t.publishLocked(EventPaymentVoid, &v, nil)
			t.mu.Unlock()
			t.cfg.Log.Warn("store terminal did not answer the payment request; voiding", "payment", id)
			return fmt.Errorf("%w (%w)", ErrNoAnswer, ctx.Err())
		}
		t.mu.Unlock()
	}
	t.mu.Lock()
	res, reason, state := p.view.Result, p.view.Reason, p.view.State
	t.mu.Unlock()
	if res == ResultPaid {
		return nil
	}
	if state == PaymentVoiding {
		return ErrNoAnswer
	}
	return fmt.Errorf("%w (reason %q)", ErrDeclined, reason)
}

// latestLocked finds the request's newest authorisation in one
// of the given states.
func (t *Terminal) latestLocked(requestID string, states ...PaymentState) *payment {
	var best *payment
	for _, p := range t.payments {
		if p.view.RequestID != requestID {
			continue
		}
		for _, s := range states {
			if p.view.State == s && (best == nil || p.view.Attempt > best.view.Attempt) {
				best = p
			}
		}
	}
	return best
}

// Capture implements flow.Payment: the paper is out, so the terminal keeps
// the money. It waits for the acknowledgement up to Config.AckTimeout (or
// ctx); unacknowledged, the capture stays pending and is announced again.
func (t *Terminal) Capture(ctx context.Context, requestID string) error {
	return t.settle(ctx, requestID, PaymentCapturing, PaymentCaptured, EventPaymentCapture, "")
}

// Void implements flow.Payment: nothing was printed, so the terminal
// releases the money. It waits for the acknowledgement like Capture.
func (t *Terminal) Void(ctx context.Context, requestID string) error {
	return t.settle(ctx, requestID, PaymentVoiding, PaymentVoided, EventPaymentVoid, VoidPrintFailed)
}

// settle moves the request's authorised payment to step (capturing or
// voiding), announces it, and waits for the acknowledgement that takes it
// to done. Settling a payment already done is a no-op.
func (t *Terminal) settle(ctx context.Context, requestID string, to, done PaymentState, typ EventType, voidReason string) error {
	t.mu.Lock()
	p := t.latestLocked(requestID, PaymentAuthorized, to, done)
	if p == nil {
		t.mu.Unlock()
		return fmt.Errorf("%w: no authorised payment for request %s", ErrUnknown, requestID)
	}
	if p.view.State == done {
		t.mu.Unlock()
		return nil
	}
	if p.view.State == PaymentAuthorized {
		p.view.State, p.view.VoidReason = to, voidReason
		v := p.view
		t.publishLocked(typ, &v, nil)
	}
	id := p.view.ID
	t.mu.Unlock()
	t.cfg.Log.Info("payment step sent to the store terminal", "payment", id, "step", to)

	actx, cancel := context.WithTimeout(ctx, t.cfg.AckTimeout)
	defer cancel()
	select {
	case <-p.acked:
		return nil
	case <-actx.Done():
		return fmt.Errorf("%w (payment %s, %s)", ErrNotAcknowledged, id, to)
	}
}

// AnswerPayment records the terminal's answer to an authorisation: paid
// (true) or failed with a reason from FailReasons. Repeating the answer
// returns the payment as it is now; a different answer is ErrConflict; an
// answer after the payment expired is ErrExpired.
func (t *Terminal) AnswerPayment(id string, paid bool, reason string) (Payment, error) {
	result := ResultFailed
	if paid {
		result = ResultPaid
		if reason != "" {
			return Payment{}, fmt.Errorf("%w: a paid answer has no reason", ErrInvalid)
		}
	} else if reason != "" && !oneOf(reason, FailReasons) {
		return Payment{}, fmt.Errorf("%w: reason must be one of %v", ErrInvalid, FailReasons)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.payments[id]
	if !ok {
		return Payment{}, fmt.Errorf("%w: payment %q", ErrUnknown, id)
	}
	switch {
	case p.view.State == PaymentPending:
		p.view.Result, p.view.Reason = result, reason
		if paid {
			p.view.State = PaymentAuthorized
		} else {
			p.view.State = PaymentDeclined
			p.finished = t.cfg.Now()
		}
		close(p.answered)
		t.cfg.Log.Info("store terminal answered a payment request", "payment", id, "result", result, "reason", reason)
	case p.view.Result == "":
		return p.view, fmt.Errorf("%w: payment %s expired; it is being voided", ErrExpired, id)
	case p.view.Result != result:
		return p.view, fmt.Errorf("%w: payment %s was answered %q before", ErrConflict, id, p.view.Result)
	}
	return p.view, nil
}

// Ack is the terminal's acknowledgement of a capture or a void.
type Ack string

// Acknowledgements.
const (
	AckCaptured Ack = "captured"
	AckVoided   Ack = "voided"
)

// Acknowledge records that the terminal captured or voided a payment.
// Repeating it is harmless; acknowledging the other step is ErrConflict.
func (t *Terminal) Acknowledge(id string, a Ack) (Payment, error) {
	var from, to PaymentState
	switch a {
	case AckCaptured:
		from, to = PaymentCapturing, PaymentCaptured
	case AckVoided:
		from, to = PaymentVoiding, PaymentVoided
	default:
		return Payment{}, fmt.Errorf("%w: acknowledgement %q", ErrInvalid, a)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.payments[id]
	if !ok {
		return Payment{}, fmt.Errorf("%w: payment %q", ErrUnknown, id)
	}
	switch p.view.State {
	case from:
		p.view.State = to
		p.finished = t.cfg.Now()
		close(p.acked)
		t.cfg.Log.Info("store terminal acknowledged a payment step", "payment", id, "state", to)
	case to:
	default:
		return p.view, fmt.Errorf("%w: payment %s is %s; there is nothing to acknowledge as %s", ErrConflict, id, p.view.State, a)
	}
	return p.view, nil
}

// Payment returns a payment by ID.
func (t *Terminal) Payment(id string) (Payment, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.payments[id]
	if !ok {
		return Payment{}, false
	}
	return p.view, true
}

func oneOf(s string, set []string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}
