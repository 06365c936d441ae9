package flow_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow/flowtest"
	"github.com/kioskcert/kioskcert/kiosk/internal/leaktest"
	"github.com/kioskcert/kioskcert/kiosk/internal/payment"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/printertest"
)

// laggingReader returns from WaitForRemoval only lag after its context
// ends, as a PC/SC reader does while its 1-second status-change call runs
// out: a removal wait nobody joins is then still running after the flow
// has returned.
type laggingReader struct {
	*virtualcard.Slot
	lag time.Duration
}

func (r laggingReader) WaitForRemoval(ctx context.Context) error {
	err := r.Slot.WaitForRemoval(ctx)
	if ctx.Err() != nil {
		time.Sleep(r.lag)
	}
	return err
}

// TestNoGoroutineOutlivesRun stops the kiosk while each removal wait runs
// and checks that Run returns only after every goroutine the flow started.
func TestNoGoroutineOutlivesRun(t *testing.T) {
	tests := []struct {
		name string
		// reach brings the flow to the state where it is stopped.
		reach func(t *testing.T, k *flow.Kiosk, slot *virtualcard.Slot, card *virtualcard.Card, pin string, snaps <-chan flow.Snapshot)
	}{
		{"card phase (PIN entry)", func(t *testing.T, k *flow.Kiosk, slot *virtualcard.Slot, card *virtualcard.Card, pin string, snaps <-chan flow.Snapshot) {
			waitReady(t, k)
			slot.Insert(card)
			waitState(t, snaps, flow.StatePIN)
		}},
		{"take the card after reading", func(t *testing.T, k *flow.Kiosk, slot *virtualcard.Slot, card *virtualcard.Card, pin string, snaps <-chan flow.Snapshot) {
			waitReady(t, k)
			slot.Insert(card)
			waitState(t, snaps, flow.StatePIN)
			k.Input(flow.Input{Type: flow.InputPIN, PIN: []byte(pin)})
			waitState(t, snaps, flow.StateRemoveCard)
		}},
		{"card left from the last session", func(t *testing.T, k *flow.Kiosk, slot *virtualcard.Slot, card *virtualcard.Card, pin string, snaps <-chan flow.Snapshot) {
			// The card was placed before the kiosk started.
			waitState(t, snaps, flow.StateRemoveCard)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cards := flowtest.Cards(t)
			card, resident, err := cards.Card("hanako", virtualcard.Options{})
			if err != nil {
				t.Fatal(err)
			}
			slot := virtualcard.NewSlot("test", true)
			if tt.name == "card left from the last session" {
				slot.Insert(card)
			}
			k, err := flow.New(flow.Config{
				Reader: laggingReader{slot, 300 * time.Millisecond}, Verifier: cards.Verifier, Center: flowtest.NewCenter(cards),
				Renderer: flowtest.Renderer(t), Printer: agent.Printer{P: printertest.New()}, Payment: payment.NewSimulator(),
				Timeouts: flow.Timeouts{Reminder: 20 * time.Millisecond}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			snaps, unsubscribe := k.Subscribe()
			defer unsubscribe()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { k.Run(ctx); close(done) }()
			tt.reach(t, k, slot, card, resident.PIN, snaps)

			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10 s of its context ending")
			}
			leaktest.Check(t, "kiosk/internal/flow.(*Kiosk)", "kiosk/internal/flow.(*removalWatch)")
		})
	}
}

func waitReady(t *testing.T, k *flow.Kiosk) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !k.Snapshot().Ready {
		if time.Now().After(deadline) {
			t.Fatal("the kiosk did not become ready for a card within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
