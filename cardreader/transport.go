package cardreader

import "context"

// Transport carries APDUs to one connected card. Implementations must honour
// the context's deadline and report a card that left the reader as
// ErrCardRemoved.
type Transport interface {
	// Transmit sends one command APDU and returns the response APDU
	// (data followed by SW1 SW2).
	Transmit(ctx context.Context, apdu []byte) ([]byte, error)
	// ExtendedLength reports whether the card and the reader both accept
	// extended-length APDUs.
	ExtendedLength() bool
	// Close releases the card, resetting it so that no verified PIN state
	// survives for the next user.
	Close() error
}

// Reader is one card slot: a PC/SC reader, or the in-process virtual card.
type Reader interface {
	// Name is the reader's name as the platform reports it.
	Name() string
	// CardPresent reports whether a card is in the slot now.
	CardPresent(ctx context.Context) (bool, error)
	// WaitForCard blocks until a card is present or ctx ends.
	WaitForCard(ctx context.Context) error
	// WaitForRemoval blocks until the slot is empty or ctx ends. The kiosk
	// uses it to hold the flow until the resident has taken the card back.
	WaitForRemoval(ctx context.Context) error
	// Connect opens an exclusive connection to the card in the slot.
	Connect(ctx context.Context) (Transport, error)
}
