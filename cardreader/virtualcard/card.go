// Package virtualcard is a software My Number card: it answers the
// input-assist application's APDUs the way the real chip does, so that every
// test and the demo exercise the same reading code a kiosk uses.
//
// A Card holds the four signed files (made with pkg/carddata's Authority from
// a synthetic identity), a 4-digit PIN with a real retry counter (three
// tries, reset on success, 63 Cx while counting down; once blocked, VERIFY
// answers 69 84 and the status query 63 C0), per-file access rules (My
// Number, the four items and the signature file answer 69 82 until the PIN
// is verified; selecting an application again forgets the verification)
// and ISO/IEC 7816-4 status words for everything it does not support.
//
// Where outside tools written for real cards (jpki/myna, AokiApp/jsapdu)
// show what a real card answers, the virtual card answers the same: EF 0001
// is 17 bytes (the 14-byte TLV and padding), EF 0005 carries the
// application's basic information (DF 41 version and extended-length flag,
// DF 42 key ID), READ BINARY takes short EF identifiers, the card-surface
// application has its PIN counters and the public-key (JPKI) application
// its token, certificates and PINs. docs/CARD.md lists every command and
// status word with its source.
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
	// in its ATR and in EF 0005. Without it, extended APDUs answer 67 00.
	ExtendedLength bool
	// Foreign makes a card without the input-assist application: a transit
	// card or a bank card placed on the reader by mistake.
	Foreign bool
	// JPKISignPassword is the public-key application's signature password
	// (6–16 upper-case letters and digits) guarding its signing
	// certificate; empty means DefaultJPKISignPassword.
	JPKISignPassword string
}

// DefaultJPKISignPassword guards the virtual card's JPKI signing
// certificate unless Options says otherwise.
const DefaultJPKISignPassword = "KIOSKCERT1"

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

// Application identifiers, as jpki/myna and AokiApp/jsapdu select them.
var (
	// AIDJPKI is the public-key (公的個人認証) application.
	AIDJPKI = []byte{0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01}
	// AIDSurface is the card-surface confirmation (券面事項確認) application.
	AIDSurface = []byte{0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x02}
)

// EFs of the applications beside the input-assist one's (carddata.EF*).
const (
	EFInputAssistPINA uint16 = 0x0014 // 暗証番号A (My Number)
	EFInputAssistPINB uint16 = 0x0015 // 暗証番号B
	EFSurfacePINB     uint16 = 0x0012
	EFSurfacePINA     uint16 = 0x0013
	EFJPKISignCert    uint16 = 0x0001
	EFJPKISignCACert  uint16 = 0x0002
	EFJPKIToken       uint16 = 0x0006
	EFJPKIAuthCert    uint16 = 0x000A
	EFJPKIAuthCACert  uint16 = 0x000B
	EFJPKIAuthPIN     uint16 = 0x0018
	EFJPKISignPIN     uint16 = 0x001B
)

// JPKIToken is EF 0006 of the public-key application on a My Number card
// (a Juki card says JPKIAPICCTOKEN); tools check it to tell the two apart.
const JPKIToken = "JPKIAPICCTOKEN2"

// myNumberEFSize is EF 0001's size: the 14-byte TLV and padding. jpki/myna
// reads 17 bytes and requires 90 00, so a real card's file holds at least 17.
const myNumberEFSize = 17

// pin is one PIN's reference data and retry counter.
type pin struct {
	value          []byte // nil: the counter is modelled, VERIFY with data is not
	max, tries     int
	minLen, maxLen int
	verified       bool
}

// application is one DF: its files, its PINs and which PIN guards which file.
type application struct {
	aid   []byte
	files map[uint16][]byte
	pins  map[uint16]*pin
	guard map[uint16]uint16 // file → PIN EF that must be verified to read it
	// lazy fills files on first read (certificates that cost a key to make).
	lazy func()
}

// Card is one virtual My Number card. It is safe for concurrent use.
type Card struct {
	mu       sync.Mutex
	opts     Options
	apps     []*application
	text     *application // the input-assist application
	files    map[uint16][]byte
	current  *application
	ef       uint16
	faults   Faults
	answered int
	removed  bool
}

// New makes a card holding raw (as personalised by carddata.Authority) and
// protected by pin. The card also carries, as real cards do, the
// card-surface application's PIN counters and a public-key (JPKI)
// application with its token, certificates and PINs (the authentication PIN
// is pin; the signature password is Options.JPKISignPassword).
func New(raw carddata.Raw, pinValue string, opts Options) (*Card, error) {
	if len(pinValue) != 4 {
		return nil, errors.New("virtualcard: PIN must be 4 digits")
	}
	for _, c := range []byte(pinValue) {
		if c < '0' || c > '9' {
			return nil, errors.New("virtualcard: PIN must be 4 digits")
		}
	}
	if opts.JPKISignPassword == "" {
		opts.JPKISignPassword = DefaultJPKISignPassword
	}
	if !validSignPassword(opts.JPKISignPassword) {
		return nil, errors.New("virtualcard: JPKI signature password must be 6-16 upper-case letters and digits")
	}
	c := &Card{opts: opts}
	mn := make([]byte, myNumberEFSize)
	for i := range mn {
		mn[i] = 0xFF
	}
	copy(mn, raw.MyNumber)
	var apKeyID []byte
	if cert, err := carddata.ParseCertificate(raw.Certificate); err == nil {
		apKeyID = cert.SubjectKeyID[:]
	} else {
		apKeyID = make([]byte, carddata.KeyIDLen)
	}
	myNumberDigits := []byte(nil)
	if n, err := carddata.ParseMyNumber(raw.MyNumber); err == nil {
		myNumberDigits = []byte(n)
	}
	c.text = &application{
		aid: carddata.AID,
		files: map[uint16][]byte{
			carddata.EFMyNumber:    mn,
			carddata.EFFourItems:   bytes.Clone(raw.FourItems),
			carddata.EFSignature:   bytes.Clone(raw.Signature),
			carddata.EFCertificate: bytes.Clone(raw.Certificate),
			carddata.EFAPInfo:      apInfo(opts.ExtendedLength, apKeyID),
		},
		pins: map[uint16]*pin{
			carddata.EFPIN:    {value: []byte(pinValue), max: cardreader.MaxPINTries, tries: cardreader.MaxPINTries, minLen: 4, maxLen: 4},
			EFInputAssistPINA: {value: myNumberDigits, max: 10, tries: 10, minLen: 12, maxLen: 12},
			EFInputAssistPINB: {max: 10, tries: 10},
		},
		guard: map[uint16]uint16{
			carddata.EFMyNumber:  carddata.EFPIN,
			carddata.EFFourItems: carddata.EFPIN,
			carddata.EFSignature: carddata.EFPIN,
		},
	}
	c.files = c.text.files
	surface := &application{
		aid:   AIDSurface,
		files: map[uint16][]byte{},
		pins: map[uint16]*pin{
			EFSurfacePINA: {value: myNumberDigits, max: 10, tries: 10, minLen: 12, maxLen: 12},
			EFSurfacePINB: {max: 10, tries: 10},
		},
		guard: map[uint16]uint16{},
	}
	token := bytes.Repeat([]byte{' '}, 32)
	copy(token, JPKIToken)
	jpki := &application{
		aid:   AIDJPKI,
		files: map[uint16][]byte{EFJPKIToken: token},
		pins: map[uint16]*pin{
			EFJPKIAuthPIN: {value: []byte(pinValue), max: 3, tries: 3, minLen: 4, maxLen: 4},
			EFJPKISignPIN: {value: []byte(opts.JPKISignPassword), max: 5, tries: 5, minLen: 6, maxLen: 16},
		},
		guard: map[uint16]uint16{EFJPKISignCert: EFJPKISignPIN},
	}
	jpki.lazy = func() {
		for id, der := range jpkiCertificates() {
			jpki.files[id] = der
		}
	}
	c.apps = []*application{c.text, surface, jpki}
	return c, nil
}

// apInfo is EF 0005, the application's basic information: FF 40 wrapping
// DF 41 (the application's version, two bytes, and whether it takes
// extended-length APDUs) and DF 42 (the ID of the application's public key,
// the subject key ID of EF 0004). jpki/myna prints the two as "APID" and
// "公開鍵ID".
func apInfo(ext bool, keyID []byte) []byte {
	flag := byte(0x00)
	if ext {
		flag = 0x01
	}
	df41 := []byte{0xDF, 0x41, 0x03, 0x00, 0x01, flag}
	df42 := append([]byte{0xDF, 0x42, byte(len(keyID))}, keyID...)
	body := append(df41, df42...)
	return append([]byte{0xFF, 0x40, byte(len(body))}, body...)
}

func validSignPassword(p string) bool {
	if len(p) < 6 || len(p) > 16 {
		return false
	}
	for _, c := range []byte(p) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
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
// the retry counters are not (they live in the chip's non-volatile memory).
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropSecurityState()
	c.current, c.ef = nil, 0
}

// dropSecurityState forgets every verified PIN. Real cards do it on reset
// and when an application is selected, so a PIN verified for one resident's
// session never carries into a new one.
func (c *Card) dropSecurityState() {
	for _, a := range c.apps {
		for _, p := range a.pins {
			p.verified = false
		}
	}
}

// TriesLeft returns the input-assist PIN's retry counter, for tests.
func (c *Card) TriesLeft() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.text == nil {
		return 0
	}
	return c.text.pins[carddata.EFPIN].tries
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
		c.dropSecurityState()
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
		for _, a := range c.apps {
			if bytes.Equal(cmd.Data, a.aid) {
				// Selecting an application starts its security state afresh:
				// a PIN verified earlier does not survive.
				c.dropSecurityState()
				c.current, c.ef = a, 0
				return sw(cardreader.SWOK)
			}
		}
		return sw(cardreader.SWFileNotFound)
	case 0x02: // EF under the current DF
		if len(cmd.Data) != 2 {
			return sw(cardreader.SWWrongLength)
		}
		id := uint16(cmd.Data[0])<<8 | uint16(cmd.Data[1])
		if !c.exists(id) {
			return sw(cardreader.SWFileNotFound)
		}
		c.ef = id
		return sw(cardreader.SWOK)
	default:
		return sw(cardreader.SWWrongP1P2)
	}
}

// exists reports whether id is a file or a PIN of the current application.
func (c *Card) exists(id uint16) bool {
	a := c.current
	if a == nil {
		return false
	}
	if a.lazy != nil {
		a.lazy()
		a.lazy = nil
	}
	_, file := a.files[id]
	_, isPIN := a.pins[id]
	return file || isPIN
}

func (c *Card) verify(cmd cardreader.Command) cardreader.Response {
	if cmd.P1 != 0x00 || cmd.P2 != 0x80 {
		return sw(cardreader.SWWrongP1P2)
	}
	if c.current == nil {
		return sw(cardreader.SWNoCurrentEF)
	}
	p := c.current.pins[c.ef]
	if p == nil {
		return sw(cardreader.SWNoCurrentEF)
	}
	if len(cmd.Data) == 0 { // status only: never spends a try
		if p.verified {
			return sw(cardreader.SWOK)
		}
		return sw(0x63C0 | uint16(p.tries))
	}
	if p.tries == 0 {
		// jpki/myna: VERIFY on a blocked PIN answers 69 84.
		return sw(cardreader.SWReferenceDataBlocked)
	}
	if len(cmd.Data) < p.minLen || len(cmd.Data) > p.maxLen {
		return sw(cardreader.SWWrongLength)
	}
	if p.value == nil {
		return sw(cardreader.SWConditionsNotMet)
	}
	if subtle.ConstantTimeCompare(cmd.Data, p.value) == 1 {
		p.tries, p.verified = p.max, true
		return sw(cardreader.SWOK)
	}
	p.tries--
	p.verified = false
	return sw(0x63C0 | uint16(p.tries))
}

func (c *Card) readBinary(cmd cardreader.Command) cardreader.Response {
	if len(cmd.Data) != 0 {
		return sw(cardreader.SWWrongLength)
	}
	off := int(cmd.P1)<<8 | int(cmd.P2)
	if cmd.P1&0x80 != 0 {
		// Short EF identifier (ISO/IEC 7816-4 §7.2.2): P1 = 100 + SFI, P2 =
		// offset. Every EF here has an ID in 0001–001E and so an SFI; the
		// command selects the file as it reads it.
		if cmd.P1&0x60 != 0 {
			return sw(cardreader.SWWrongP1P2)
		}
		id := uint16(cmd.P1 & 0x1F)
		if id == 0 || !c.exists(id) {
			return sw(cardreader.SWFileNotFound)
		}
		c.ef, off = id, int(cmd.P2)
	}
	a := c.current
	if a == nil || c.ef == 0 {
		return sw(cardreader.SWNoCurrentEF)
	}
	f, ok := a.files[c.ef]
	if !ok {
		return sw(cardreader.SWNoCurrentEF) // a PIN is not readable
	}
	if g, guarded := a.guard[c.ef]; guarded && !a.pins[g].verified {
		return sw(cardreader.SWSecurityStatus)
	}
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
