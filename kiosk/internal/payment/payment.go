// Package payment connects the kiosk flow to the store terminal's cash
// register. The flow authorises the fee before printing, captures it when
// the paper is out, and voids it when printing fails, so that a resident is
// never charged for a certificate they did not get.
//
// Simulator is the register used by the demo, the headless mode and tests:
// it approves every authorisation (or fails on request) and keeps a ledger
// of what happened to each request, for checking that nobody was charged
// twice or charged for a failed print.
package payment

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Errors.
var (
	// ErrDeclined means the resident's payment did not go through.
	ErrDeclined = errors.New("payment: declined")
	// ErrUnknown means a capture or void named no open authorisation.
	ErrUnknown = errors.New("payment: no authorisation for this request")
)

// Status of one request's payment.
type Status string

// Statuses.
const (
	Authorized Status = "authorized"
	Captured   Status = "captured"
	Voided     Status = "voided"
)

// Entry is one request's payment in the simulator's ledger.
type Entry struct {
	AmountYen int
	Status    Status
	// Captures counts captures; more than one would be a double charge.
	Captures int
}

// Simulator is an in-memory cash register.
type Simulator struct {
	mu      sync.Mutex
	ledger  map[string]*Entry
	decline int
}

// NewSimulator returns a register that approves everything.
func NewSimulator() *Simulator { return &Simulator{ledger: map[string]*Entry{}} }

// DeclineNext makes the next n authorisations fail.
func (s *Simulator) DeclineNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decline = n
}

// Authorize implements flow.Payment.
func (s *Simulator) Authorize(ctx context.Context, requestID string, amountYen int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.decline > 0 {
		s.decline--
		return ErrDeclined
	}
	e, ok := s.ledger[requestID]
	if !ok {
		e = &Entry{}
		s.ledger[requestID] = e
	}
	if e.Status == Captured {
		return fmt.Errorf("payment: request %s is already paid", requestID)
	}
	e.AmountYen, e.Status = amountYen, Authorized
	return nil
}

// Capture implements flow.Payment.
func (s *Simulator) Capture(ctx context.Context, requestID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.ledger[requestID]
	if !ok || e.Status != Authorized {
		return ErrUnknown
	}
	e.Status = Captured
	e.Captures++
	return nil
}

// Void implements flow.Payment.
func (s *Simulator) Void(ctx context.Context, requestID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.ledger[requestID]
	if !ok || e.Status != Authorized {
		return ErrUnknown
	}
	e.Status = Voided
	return nil
}

// Ledger returns a copy of the ledger.
func (s *Simulator) Ledger() map[string]Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Entry, len(s.ledger))
	for id, e := range s.ledger {
		out[id] = *e
	}
	return out
}

// CapturedYen returns the total amount captured.
func (s *Simulator) CapturedYen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for _, e := range s.ledger {
		if e.Status == Captured {
			total += e.AmountYen
		}
	}
	return total
}
