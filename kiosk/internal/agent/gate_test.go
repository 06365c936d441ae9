package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
)

// waitCard runs g.WaitForCard and returns its result on a channel.
func waitCard(ctx context.Context, g *gate) <-chan error {
	c := make(chan error, 1)
	go func() { c <- g.WaitForCard(ctx) }()
	return c
}

func blocked(t *testing.T, c <-chan error, why string) {
	t.Helper()
	select {
	case err := <-c:
		t.Fatalf("WaitForCard returned %v %s", err, why)
	case <-time.After(150 * time.Millisecond):
	}
}

func returned(t *testing.T, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForCard did not return")
	}
	return nil
}

func TestGateHoldsCardsUntilArmed(t *testing.T) {
	slot := virtualcard.NewSlot("gate", true)
	g := newGate(slot)
	slot.Insert(&virtualcard.Card{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	c := waitCard(ctx, g)
	blocked(t, c, "with a card on the reader but not armed")
	g.Arm()
	if err := returned(t, c); err != nil {
		t.Fatal(err)
	}
	if g.Armed() {
		t.Fatal("the arm was not used up by the session it started")
	}
	// The next session needs a new arm, card or no card.
	c = waitCard(ctx, g)
	blocked(t, c, "after the arm was used")
	g.Arm()
	if err := returned(t, c); err != nil {
		t.Fatal(err)
	}
	// Arming twice before a session starts is one arm.
	g.Arm()
	g.Arm()
	if err := returned(t, waitCard(ctx, g)); err != nil {
		t.Fatal(err)
	}
	if g.Armed() {
		t.Fatal("a double arm let two sessions start")
	}
	blocked(t, waitCard(ctx, g), "after a double arm was used")
}

func TestGateDisarmWhileWaitingForCard(t *testing.T) {
	slot := virtualcard.NewSlot("gate", true)
	g := newGate(slot)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g.Arm()
	c := waitCard(ctx, g)
	blocked(t, c, "armed but no card")
	if !g.Disarm() {
		t.Fatal("Disarm reported no arm")
	}
	if g.Disarm() {
		t.Fatal("second Disarm reported an arm")
	}
	slot.Insert(&virtualcard.Card{})
	blocked(t, c, "with a card after the terminal withdrew the arm")
	g.Arm()
	if err := returned(t, c); err != nil {
		t.Fatal(err)
	}
	slot.Remove()
	c = waitCard(ctx, g)
	cancel()
	if err := returned(t, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
}
