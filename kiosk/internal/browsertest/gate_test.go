package browsertest

import (
	"context"
	"sync"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// gate holds a step of the session (a card command, the center's answer,
// the print job) so that the screen showing it can be checked and
// photographed; a screen that is normally gone in milliseconds is then
// tested deterministically, not by luck.
type gate struct {
	mu   sync.Mutex
	ins  int           // -1 open; 0 holds everything; > 0 holds card commands with this INS only
	open chan struct{} // closed on release
}

func newGate() *gate {
	g := &gate{ins: -1, open: make(chan struct{})}
	close(g.open)
	return g
}

// hold closes the gate for ins (0: for everything).
func (g *gate) hold(ins int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ins < 0 {
		g.open = make(chan struct{})
	}
	g.ins = ins
}

// release opens the gate.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ins >= 0 {
		g.ins = -1
		close(g.open)
	}
}

// wait blocks while the gate holds ins.
func (g *gate) wait(ctx context.Context, ins int) error {
	g.mu.Lock()
	held := g.ins == 0 || (g.ins > 0 && g.ins == ins)
	ch := g.open
	g.mu.Unlock()
	if !held {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// INS bytes of the card commands a test holds.
const (
	insSelect     = 0xA4
	insReadBinary = 0xB0
)

// gatedReader passes each card command through a gate.
type gatedReader struct {
	cardreader.Reader
	g *gate
}

func (r gatedReader) Connect(ctx context.Context) (cardreader.Transport, error) {
	t, err := r.Reader.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return gatedTransport{t, r.g}, nil
}

type gatedTransport struct {
	cardreader.Transport
	g *gate
}

func (t gatedTransport) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	ins := -2
	if len(apdu) > 1 {
		ins = int(apdu[1])
	}
	if err := t.g.wait(ctx, ins); err != nil {
		return nil, err
	}
	return t.Transport.Transmit(ctx, apdu)
}

// gatedCenter holds the center's answer at a gate.
type gatedCenter struct {
	flow.Center
	g *gate
}

func (c gatedCenter) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	if err := c.g.wait(ctx, 0); err != nil {
		return nil, err
	}
	return c.Center.Issue(ctx, req)
}

// Check holds the center's answer to a check at the gate too; a center
// without checks answers as an older center does.
func (c gatedCenter) Check(ctx context.Context, req protocol.Check) (*protocol.Checked, error) {
	if err := c.g.wait(ctx, 0); err != nil {
		return nil, err
	}
	ch, ok := c.Center.(flow.Checker)
	if !ok {
		return nil, protocol.NewError(req.RequestID, protocol.CodeUnexpectedMessage, "")
	}
	return ch.Check(ctx, req)
}

// gatedPrinter holds each print job at a gate.
type gatedPrinter struct {
	flow.Printer
	g *gate
}

func (p gatedPrinter) Print(ctx context.Context, name string, pdf []byte, copies int) error {
	if err := p.g.wait(ctx, 0); err != nil {
		return err
	}
	return p.Printer.Print(ctx, name, pdf, copies)
}
