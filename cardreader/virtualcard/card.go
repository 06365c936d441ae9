// Package virtualcard is a software My Number card: it answers the
// input-assist application's APDUs the way the real chip does, so that every
// test and the demo exercise the same reading code a kiosk uses.
//
// A Card holds the four signed files (made with pkg/carddata's Authority from
// a synthetic identity), a 4-digit PIN with a real retry counter (three
// tries, reset on success, 63 Cx while counting down, 69 83 once blocked),
// per-file access rules (My Number, the four items and the signature file
// answer 69 82 until the PIN is verified) and ISO/IEC 7816-4 status words
// for everything it does not support.
//
// It plugs in two ways: in process, through a Slot that implements
// cardreader.Reader (unit tests), or over the vsmartcard vpcd protocol into a
// real pcscd (package vpcd and the cardsim command), where it appears as the
// reader "Virtual PCD".
//
// Faults can be injected for tests: data tampered after signing, removal
// after the Nth APDU, slow answers and garbage answers.
package virtualcard

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

// ErrRemoved is returned by Process when an injected fault has pulled the
// card out of the reader.
var ErrRemoved = errors.New("virtualcard: card removed")

// Options shape the card's behaviour.
type Options struct {
	// ExtendedLength makes the card accept extended-length APDUs and say so
	// in its ATR. Without it, extended APDUs answer 67 00.
	ExtendedLength bool
	// Foreign makes a card without the input-assist application: a transit
	// card or a bank card placed on the reader by mistake.
	Foreign bool
}

// Faults are injected misbehaviours for tests. The zero value is a healthy card.
type Faults struct {
	// RemoveAfter pulls the card after it has answered this many APDUs
	// (0 disables).
	RemoveAfter int
	// Delay is added before every answer.
	Delay time.Duration
	// Garbage makes every answer random bytes.
	Garbage bool
}

// Card is one virtual My Number card. It is safe for concurrent use.
type Card struct {
	mu         sync.Mutex
	opts       Options
	files      map[uint16][]byte
	pin        [4]byte
	tries      int
	verified   bool
	apSelected bool
	current    uint16
	faults     Faults
	answered   int
	removed    bool
}

// protected lists the files that need a verified PIN.
var protected = map[uint16]bool{
	carddata.EFMyNumber:  true,
	carddata.EFFourItems: true,
	carddata.EFSignature: true,
}

// New makes a card holding raw (as personalised by carddata.Authority) and
// protected by pin.
func New(raw carddata.Raw, pin string, opts Options) (*Card, error) {
	if len(pin) != 4 {
		return nil, errors.New("virtualcard: PIN must be 4 digits")
	}
	for _, c := range []byte(pin) {
		if c < '0' || c > '9' {
			return nil, errors.New("virtualcard: PIN must be 4 digits")
		}
	}
	c := &Card{opts: opts, tries: cardreader.MaxPINTries}
	copy(c.pin[:], pin)
	// EF 0001 is a fixed 16-byte file on real cards: the 14-byte TLV and padding.
	mn := append(bytes.Clone(raw.MyNumber), 0xFF, 0xFF)
	c.files = map[uint16][]byte{
		carddata.EFMyNumber:    mn,
		carddata.EFFourItems:   bytes.Clone(raw.FourItems),
		carddata.EFSignature:   bytes.Clone(raw.Signature),
		carddata.EFCertificate: bytes.Clone(raw.Certificate),
		// Synthetic AP information; the kiosk does not read it.
		carddata.EFAPInfo: {0xFF, 0x40, 0x05, 0xDF, 0x41, 0x02, 0x00, 0x01},
		carddata.EFPIN:    nil,
	}
	return c, nil
}

// NewForeign makes a card that is not a My Number card.
func NewForeign() *Card {
	return &Card{opts: Options{Foreign: true}, files: map[uint16][]byte{}}
}

// ATR returns the card's answer to reset. Public readers recognise the My
// Number card by the prefix 3B 88 80 01; the historical bytes carry the
// ISO/IEC 7816-4 card capabilities (tag 73), whose third byte says whether
// extended-length APDUs are supported.
func (c *Card) ATR() []byte {
	caps := byte(0x00)
	if c.opts.ExtendedLength && !c.opts.Foreign {
		caps = 0x40
	}
	atr := []byte{0x3B, 0x88, 0x80, 0x01, 0x00, 0x73, 0x00, 0x00, caps, 0x00, 0x90, 0x00}
	if c.opts.Foreign {
		// A FeliCa-like transit card as PC/SC readers report it.
		atr = []byte{0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06, 0x11, 0x00, 0x3B, 0x00, 0x00, 0x00, 0x00}
	}
	tck := byte(0)
	for _, b := range atr[1:] {
		tck ^= b
	}
	return append(atr, tck)
}

// SetFaults replaces the injected faults.
func (c *Card) SetFaults(f Faults) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = f
	c.answered = 0
	c.removed = false
}

// Delay returns the injected per-answer delay.
func (c *Card) Delay() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.faults.Delay
}

// TamperMyNumber changes one digit of My Number after signing, as a forger
// copying someone else's signed data would. The check digit is kept valid so
// that only the signature can catch it.
func (c *Card) TamperMyNumber() {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.files[carddata.EFMyNumber][2:14]
	// The 5th and 11th digits carry the same check-digit weight (2), so any
	// change whose two deltas sum to 0 mod 11 keeps the check digit valid.
	a, b := &f[4], &f[10]
	switch {
	case *a != *b:
		*a, *b = *b, *a
	case *a == '0':
		*a, *b = '2', '9' // +2 and +9
	case *a == '9':
		*a, *b = '7', '0' // -2 and -9
	default:
		*a, *b = *a+1, *b-1
	}
}

// TamperFourItems changes one byte of the name after signing.
func (c *Card) TamperFourItems() {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.files[carddata.EFFourItems]
	i := bytes.Index(f, []byte{0xDF, 0x22})
	// Flip the low bit of the name's last byte: still UTF-8 for kanji, a
	// different character, the same length.
	nameLen := int(f[i+2])
	f[i+2+nameLen] ^= 0x01
}

// Reset is a power cycle: the PIN verification and the selection are lost;
// the retry counter is not (it lives in the chip's non-volatile memory).
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.verified, c.apSelected, c.current = false, false, 0
}

// TriesLeft returns the PIN retry counter, for tests.
func (c *Card) TriesLeft() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tries
}

// Answered returns how many APDUs the card has answered since the faults were last set.
func (c *Card) Answered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answered
}

// Process answers one command APDU. It returns ErrRemoved once an injected
// removal has happened; the caller then behaves as an empty reader.
func (c *Card) Process(apdu []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return nil, ErrRemoved
	}
	if c.faults.RemoveAfter > 0 && c.answered >= c.faults.RemoveAfter {
		c.removed = true
		c.verified = false
		return nil, ErrRemoved
	}
	c.answered++
	if c.faults.Garbage {
		g := make([]byte, 1+rand.IntN(8))
		for i := range g {
			g[i] = byte(rand.IntN(256))
		}
		return g, nil
	}
	return c.answer(apdu).Bytes(), nil
}

// Removed reports whether an injected fault has pulled the card.
func (c *Card) Removed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removed
}

func sw(code uint16) cardreader.Response { return cardreader.Response{SW: code} }

func (c *Card) answer(apdu []byte) cardreader.Response {
	cmd, err := cardreader.ParseCommand(apdu)
	if err != nil {
		return sw(cardreader.SWWrongLength)
	}
	if cmd.Extended() && !c.opts.ExtendedLength {
		return sw(cardreader.SWWrongLength)
	}
	if cmd.CLA != 0x00 {
		return sw(cardreader.SWCLAUnsupported)
	}
	switch cmd.INS {
	case 0xA4:
		return c.selectFile(cmd)
	case 0x20:
		return c.verify(cmd)
	case 0xB0:
		return c.readBinary(cmd)
	default:
		return sw(cardreader.SWINSUnsupported)
	}
}

func (c *Card) selectFile(cmd cardreader.Command) cardreader.Response {
	if cmd.P2 != 0x0C && cmd.P2 != 0x00 {
		return sw(cardreader.SWWrongP1P2)
	}
	switch cmd.P1 {
	case 0x04: // by DF name
		if c.opts.Foreign || !bytes.Equal(cmd.Data, carddata.AID) {
			return sw(cardreader.SWFileNotFound)
		}
		c.apSelected, c.current = true, 0
		return sw(cardreader.SWOK)
	case 0x02: // EF under the current DF
		if len(cmd.Data) != 2 {
			return sw(cardreader.SWWrongLength)
		}
		id := uint16(cmd.Data[0])<<8 | uint16(cmd.Data[1])
		if _, ok := c.files[id]; !ok || !c.apSelected {
			return sw(cardreader.SWFileNotFound)
		}
		c.current = id
		return sw(cardreader.SWOK)
	default:
		return sw(cardreader.SWWrongP1P2)
	}
}

func (c *Card) verify(cmd cardreader.Command) cardreader.Response {
	if cmd.P1 != 0x00 || cmd.P2 != 0x80 {
		return sw(cardreader.SWWrongP1P2)
	}
	if !c.apSelected || c.current != carddata.EFPIN {
		return sw(cardreader.SWNoCurrentEF)
	}
	if c.tries == 0 {
		return sw(cardreader.SWPINBlocked)
	}
	switch len(cmd.Data) {
	case 0: // status only: never spends a try
		if c.verified {
			return sw(cardreader.SWOK)
		}
		return sw(0x63C0 | uint16(c.tries))
	case 4:
		if subtle.ConstantTimeCompare(cmd.Data, c.pin[:]) == 1 {
			c.tries, c.verified = cardreader.MaxPINTries, true
			return sw(cardreader.SWOK)
		}
		c.tries--
		c.verified = false
		return sw(0x63C0 | uint16(c.tries))
	default:
		return sw(cardreader.SWWrongLength)
	}
}

func (c *Card) readBinary(cmd cardreader.Command) cardreader.Response {
	if cmd.P1&0x80 != 0 {
		return sw(cardreader.SWFunctionUnsupported) // short EF identifiers
	}
	if len(cmd.Data) != 0 {
		return sw(cardreader.SWWrongLength)
	}
	if !c.apSelected || c.current == 0 || c.current == carddata.EFPIN {
		return sw(cardreader.SWNoCurrentEF)
	}
	if protected[c.current] && !c.verified {
		return sw(cardreader.SWSecurityStatus)
	}
	f := c.files[c.current]
	off := int(cmd.P1)<<8 | int(cmd.P2)
	if off >= len(f) {
		return sw(cardreader.SWOffsetOutside)
	}
	ne := cmd.Ne
	if ne == 0 {
		return sw(cardreader.SWWrongLength)
	}
	end := off + ne
	if end > len(f) {
		return cardreader.Response{Data: bytes.Clone(f[off:]), SW: cardreader.SWEndOfFile}
	}
	return cardreader.Response{Data: bytes.Clone(f[off:end]), SW: cardreader.SWOK}
}

// String describes the card without its contents.
func (c *Card) String() string {
	if c.opts.Foreign {
		return "virtual foreign card"
	}
	return fmt.Sprintf("virtual My Number card (extended length %v)", c.opts.ExtendedLength)
}
