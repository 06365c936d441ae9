package payment

import (
	"context"
	"errors"
	"testing"
)

func TestSimulatorLifecycle(t *testing.T) {
	ctx := context.Background()
	s := NewSimulator()
	if err := s.Authorize(ctx, "a", 120); err != nil {
		t.Fatal(err)
	}
	if err := s.Void(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Capture(ctx, "a"); !errors.Is(err, ErrUnknown) {
		t.Fatal("captured a voided payment")
	}
	if err := s.Authorize(ctx, "a", 120); err != nil {
		t.Fatal("retry after a void must be allowed")
	}
	if err := s.Capture(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Authorize(ctx, "a", 120); err == nil {
		t.Fatal("a paid request was authorised again")
	}
	s.DeclineNext(1)
	if err := s.Authorize(ctx, "b", 240); !errors.Is(err, ErrDeclined) {
		t.Fatal(err)
	}
	if got := s.CapturedYen(); got != 120 {
		t.Fatalf("captured %d", got)
	}
	if l := s.Ledger(); l["a"].Captures != 1 {
		t.Fatalf("ledger %+v", l)
	}
}
