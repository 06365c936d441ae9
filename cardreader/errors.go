// Package cardreader reads the My Number card's card-info input-assist
// application (券面事項入力補助AP) through a smart-card reader.
//
// A Reader is one slot (a PC/SC reader, or the in-process virtual card for
// tests); it waits for a card and connects to it, giving a Transport that
// carries APDUs. Open selects the application on that transport and returns
// a Session, which reads the PIN retry counter without spending a try,
// verifies the resident's PIN, and reads the four signed files in as few
// APDUs as the card and reader allow:
//
//	card, _ := reader.Connect(ctx)
//	defer card.Close()
//	s, err := cardreader.Open(ctx, card)      // ErrNotMyNumberCard for other cards
//	left, err := s.PINTriesLeft(ctx)          // shown to the resident before asking
//	err = s.VerifyPIN(ctx, pin)               // *PINIncorrectError, ErrPINBlocked
//	raw, err := s.ReadCardData(ctx)           // carddata.Raw, ready to verify and send
//
// The PIN goes to the card only. Nothing in this package logs, stores or
// formats card contents into errors; the caller owns the returned bytes and
// wipes them (carddata.Raw.Wipe) when the session ends.
//
// The parsing and signature verification of what is read live in
// pkg/carddata, because the issuance center verifies the same bytes and must
// build without PC/SC.
package cardreader

import (
	"errors"
	"fmt"
)

// Errors from card sessions. Status words the card returns are mapped to
// these; test with errors.Is or errors.As.
var (
	// ErrNotMyNumberCard means the card does not have the input-assist
	// application: it is some other card, or upside down.
	ErrNotMyNumberCard = errors.New("cardreader: not a My Number card (input-assist application not found)")
	// ErrPINBlocked means the PIN is locked after three wrong entries; only the
	// municipal counter can reset it. The kiosk must not try again. Cards say
	// so with 63 C0, 69 83 (authentication method blocked) or 69 84
	// (reference data not usable); all three mean this error.
	ErrPINBlocked = errors.New("cardreader: PIN is blocked; it can be reset only at the municipal office")
	// ErrPINFormat means the PIN is not exactly four ASCII digits. It is
	// refused before it reaches the card, so no try is spent.
	ErrPINFormat = errors.New("cardreader: PIN must be exactly 4 digits")
	// ErrSecurityStatus means a protected file was read before the PIN was verified.
	ErrSecurityStatus = errors.New("cardreader: access denied: PIN not verified")
	// ErrFileNotFound means the card has no such file or application.
	ErrFileNotFound = errors.New("cardreader: file not found on card")
	// ErrCardRemoved means the card left the reader. Start again with the card in place.
	ErrCardRemoved = errors.New("cardreader: card removed")
	// ErrNoReader means no reader is attached, or none with the configured name.
	ErrNoReader = errors.New("cardreader: no card reader found")
	// ErrNoCard means the reader is empty.
	ErrNoCard = errors.New("cardreader: no card in the reader")
	// ErrCardData means the card answered with data that does not have the
	// layout of the input-assist application (a damaged or foreign card).
	ErrCardData = errors.New("cardreader: unexpected data from card")
	// ErrTimeout means the card or reader did not answer before the deadline.
	ErrTimeout = errors.New("cardreader: card did not answer in time")
)

// PINIncorrectError reports a wrong PIN and how many tries remain before the
// PIN blocks. With zero tries left it also matches ErrPINBlocked.
type PINIncorrectError struct {
	TriesLeft int
}

func (e *PINIncorrectError) Error() string {
	if e.TriesLeft == 0 {
		return "cardreader: PIN incorrect; the PIN is now blocked"
	}
	return fmt.Sprintf("cardreader: PIN incorrect; %d tries left", e.TriesLeft)
}

// Is makes errors.Is(err, ErrPINIncorrect) true for any wrong PIN, and
// errors.Is(err, ErrPINBlocked) true once no tries are left.
func (e *PINIncorrectError) Is(target error) bool {
	return target == ErrPINIncorrect || (target == ErrPINBlocked && e.TriesLeft == 0)
}

// ErrPINIncorrect matches every *PINIncorrectError with errors.Is; use
// errors.As to learn the tries left.
var ErrPINIncorrect = errors.New("cardreader: PIN incorrect")

// StatusError is a status word with no more specific meaning here.
type StatusError struct {
	SW uint16
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("cardreader: card answered %04X", e.SW)
}
