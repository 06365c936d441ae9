package agent

import (
	"context"
	"sync"

	"github.com/kioskcert/kioskcert/cardreader"
)

// gate is the card reader as the flow sees it in armed mode (config
// integrator.start "terminal"): while idle, a card on the reader starts a
// session only after the store terminal has handed over its screen (Arm).
// The flow waits for a card in WaitForCard, so holding that call back is
// all it takes; each Arm lets exactly one session start.
type gate struct {
	cardreader.Reader

	mu      sync.Mutex
	armed   bool
	changed chan struct{} // closed and replaced on every Arm or Disarm
}

func newGate(r cardreader.Reader) *gate {
	return &gate{Reader: r, changed: make(chan struct{})}
}

// Arm implements localapi.Starter.
func (g *gate) Arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.armed {
		g.armed = true
		close(g.changed)
		g.changed = make(chan struct{})
	}
}

// Disarm implements localapi.Starter.
func (g *gate) Disarm() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	was := g.armed
	if was {
		g.armed = false
		close(g.changed)
		g.changed = make(chan struct{})
	}
	return was
}

// Armed implements localapi.Starter.
func (g *gate) Armed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.armed
}

func (g *gate) state() (bool, chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.armed, g.changed
}

// WaitForCard waits until the kiosk is armed and a card is on the reader,
// then uses up the Arm. A Disarm while waiting for the card goes back to
// waiting for an Arm.
func (g *gate) WaitForCard(ctx context.Context) error {
	for {
		armed, changed := g.state()
		if !armed {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed: // disarmed (or armed again) while waiting
				cancel()
			case <-wctx.Done():
			}
		}()
		err := g.Reader.WaitForCard(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			g.mu.Lock()
			if g.armed {
				g.armed = false
				close(g.changed)
				g.changed = make(chan struct{})
				g.mu.Unlock()
				return nil
			}
			g.mu.Unlock()
			// Disarmed just as the card came: wait for the next Arm.
			continue
		}
		if armedNow, _ := g.state(); armedNow {
			return err // the reader failed
		}
	}
}
