package virtualcard

import (
	"context"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/cardreader"
)

// Slot is an in-process card reader holding at most one virtual card. It
// implements cardreader.Reader for unit tests and for the demo when no
// pcscd is wanted.
type Slot struct {
	name    string
	mu      sync.Mutex
	card    *Card
	changed chan struct{} // closed and replaced on every insert or removal
	// Extended, when false, makes the slot behave like a reader without
	// extended-length support even if the card has it.
	readerExtended bool
}

// NewSlot returns an empty slot. readerExtended says whether the simulated
// reader passes extended-length APDUs.
func NewSlot(name string, readerExtended bool) *Slot {
	return &Slot{name: name, changed: make(chan struct{}), readerExtended: readerExtended}
}

// Insert places a card in the slot, replacing any card there.
func (s *Slot) Insert(c *Card) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.card != nil {
		s.card.Reset()
	}
	s.card = c
	s.notifyLocked()
}

// Remove takes the card out of the slot.
func (s *Slot) Remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.card != nil {
		s.card.Reset()
	}
	s.card = nil
	s.notifyLocked()
}

func (s *Slot) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Name implements cardreader.Reader.
func (s *Slot) Name() string { return s.name }

// present also treats a card pulled by an injected fault as gone.
func (s *Slot) state() (*Card, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.card != nil && s.card.Removed() {
		s.card.Reset()
		s.card = nil
		s.notifyLocked()
	}
	return s.card, s.changed
}

// CardPresent implements cardreader.Reader.
func (s *Slot) CardPresent(ctx context.Context) (bool, error) {
	c, _ := s.state()
	return c != nil, nil
}

// WaitForCard implements cardreader.Reader.
func (s *Slot) WaitForCard(ctx context.Context) error {
	return s.wait(ctx, true)
}

// WaitForRemoval implements cardreader.Reader.
func (s *Slot) WaitForRemoval(ctx context.Context) error {
	return s.wait(ctx, false)
}

func (s *Slot) wait(ctx context.Context, present bool) error {
	for {
		c, changed := s.state()
		if (c != nil) == present {
			return nil
		}
		// Injected removals happen inside Process without a notification,
		// so poll as well as wait.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Connect implements cardreader.Reader.
func (s *Slot) Connect(ctx context.Context) (cardreader.Transport, error) {
	c, _ := s.state()
	if c == nil {
		return nil, cardreader.ErrNoCard
	}
	c.Reset()
	return &slotTransport{slot: s, card: c, ext: s.readerExtended && c.opts.ExtendedLength}, nil
}

type slotTransport struct {
	slot *Slot
	card *Card
	ext  bool
}

func (t *slotTransport) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	if c, _ := t.slot.state(); c != t.card {
		return nil, cardreader.ErrCardRemoved
	}
	if d := t.card.Delay(); d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out, err := t.card.Process(apdu)
	if err != nil {
		t.slot.state() // let waiters see the removal
		return nil, cardreader.ErrCardRemoved
	}
	return out, nil
}

func (t *slotTransport) ExtendedLength() bool { return t.ext }

func (t *slotTransport) Close() error {
	t.card.Reset()
	return nil
}
