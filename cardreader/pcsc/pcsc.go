// Package pcsc is the cardreader.Reader for real PC/SC readers, through
// github.com/ebfe/scard (libpcsclite and pcscd on Linux, WinSCard on
// Windows).
//
// A Reader is bound to one reader name, chosen at Open by exact name, by a
// substring of the name, or as the first reader holding a card. Card
// insertion and removal are watched with SCardGetStatusChange on a context
// of their own, cancelled when the caller's context ends. Connections are
// exclusive, so no other application can talk to the resident's card during
// a session, and end with a card reset, so that no verified PIN outlives it.
//
// SCardTransmit cannot be interrupted; when the caller's deadline passes
// first, Transmit returns cardreader.ErrTimeout at once and the connection
// is reset when closed.
package pcsc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ebfe/scard"
	"github.com/kioskcert/kioskcert/cardreader"
)

// ExtendedMode says how to decide whether to send extended-length APDUs.
type ExtendedMode string

// Extended-length modes.
const (
	// ExtendedAuto trusts the card capabilities in the ATR's historical bytes.
	ExtendedAuto ExtendedMode = "auto"
	ExtendedOn   ExtendedMode = "on"
	ExtendedOff  ExtendedMode = "off"
)

// Options choose the reader and its behaviour.
type Options struct {
	// Reader is an exact reader name or a substring of one; empty picks the
	// first reader with a card in it, or the first reader.
	Reader string
	// Extended defaults to ExtendedAuto.
	Extended ExtendedMode
}

// Reader is one PC/SC reader.
type Reader struct {
	ctx  *scard.Context
	name string
	opts Options
}

// ListReaders returns the names of the attached readers.
func ListReaders() ([]string, error) {
	ctx, err := scard.EstablishContext()
	if err != nil {
		return nil, mapErr("establish PC/SC context", err)
	}
	defer ctx.Release()
	names, err := ctx.ListReaders()
	if err != nil {
		return nil, mapErr("list readers", err)
	}
	return names, nil
}

// Open binds a Reader according to opts.
func Open(opts Options) (*Reader, error) {
	if opts.Extended == "" {
		opts.Extended = ExtendedAuto
	}
	switch opts.Extended {
	case ExtendedAuto, ExtendedOn, ExtendedOff:
	default:
		return nil, fmt.Errorf("pcsc: extended-length mode %q: want auto, on or off", opts.Extended)
	}
	ctx, err := scard.EstablishContext()
	if err != nil {
		return nil, mapErr("establish PC/SC context", err)
	}
	names, err := ctx.ListReaders()
	if err != nil {
		ctx.Release()
		return nil, mapErr("list readers", err)
	}
	name, err := choose(ctx, names, opts.Reader)
	if err != nil {
		ctx.Release()
		return nil, err
	}
	return &Reader{ctx: ctx, name: name, opts: opts}, nil
}

func choose(ctx *scard.Context, names []string, want string) (string, error) {
	if len(names) == 0 {
		return "", cardreader.ErrNoReader
	}
	if want != "" {
		for _, n := range names {
			if n == want {
				return n, nil
			}
		}
		for _, n := range names {
			if strings.Contains(n, want) {
				return n, nil
			}
		}
		return "", fmt.Errorf("%w: none named %q (have %s)", cardreader.ErrNoReader, want, strings.Join(names, "; "))
	}
	states := make([]scard.ReaderState, len(names))
	for i, n := range names {
		states[i] = scard.ReaderState{Reader: n, CurrentState: scard.StateUnaware}
	}
	if err := ctx.GetStatusChange(states, 0); err == nil {
		for _, s := range states {
			if s.EventState&scard.StatePresent != 0 {
				return s.Reader, nil
			}
		}
	}
	return names[0], nil
}

// Close releases the PC/SC context.
func (r *Reader) Close() error {
	return r.ctx.Release()
}

// Name implements cardreader.Reader.
func (r *Reader) Name() string { return r.name }

// CardPresent implements cardreader.Reader.
func (r *Reader) CardPresent(ctx context.Context) (bool, error) {
	st, err := r.state(ctx, scard.StateUnaware, 0)
	if err != nil {
		return false, err
	}
	return st&scard.StatePresent != 0, nil
}

// WaitForCard implements cardreader.Reader.
func (r *Reader) WaitForCard(ctx context.Context) error {
	return r.waitFor(ctx, true)
}

// WaitForRemoval implements cardreader.Reader.
func (r *Reader) WaitForRemoval(ctx context.Context) error {
	return r.waitFor(ctx, false)
}

func (r *Reader) waitFor(ctx context.Context, present bool) error {
	cur := scard.StateUnaware
	for {
		// SCardCancel issued before SCardGetStatusChange starts is lost, so
		// each wait is short and the context is checked between them.
		if err := ctx.Err(); err != nil {
			return err
		}
		st, err := r.state(ctx, cur, 250*time.Millisecond)
		if err != nil {
			return err
		}
		if (st&scard.StatePresent != 0) == present {
			return nil
		}
		cur = st &^ scard.StateChanged
	}
}

// state runs one SCardGetStatusChange on a private context, so that a
// blocked wait never holds up Connect, and cancels it when ctx ends.
func (r *Reader) state(ctx context.Context, current scard.StateFlag, timeout time.Duration) (scard.StateFlag, error) {
	sctx, err := scard.EstablishContext()
	if err != nil {
		return 0, mapErr("establish PC/SC context", err)
	}
	defer sctx.Release()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			sctx.Cancel()
		case <-stop:
		}
	}()
	states := []scard.ReaderState{{Reader: r.name, CurrentState: current}}
	err = sctx.GetStatusChange(states, timeout)
	switch {
	case err == nil:
		return states[0].EventState, nil
	case errors.Is(err, scard.ErrTimeout):
		return current, nil
	case errors.Is(err, scard.ErrCancelled) && ctx.Err() != nil:
		return 0, ctx.Err()
	default:
		return 0, mapErr("watch reader "+r.name, err)
	}
}

// Connect implements cardreader.Reader.
func (r *Reader) Connect(ctx context.Context) (cardreader.Transport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	card, err := r.ctx.Connect(r.name, scard.ShareExclusive, scard.ProtocolAny)
	if err != nil {
		return nil, mapErr("connect to card in "+r.name, err)
	}
	st, err := card.Status()
	if err != nil {
		card.Disconnect(scard.ResetCard)
		return nil, mapErr("read card status", err)
	}
	ext := false
	switch r.opts.Extended {
	case ExtendedOn:
		ext = true
	case ExtendedAuto:
		ext = ATRSupportsExtendedLength(st.Atr)
	}
	return &transport{card: card, ext: ext, busy: make(chan struct{}, 1)}, nil
}

type transport struct {
	card *scard.Card
	ext  bool
	busy chan struct{} // holds a token while a Transmit is in flight
}

type result struct {
	b   []byte
	err error
}

func (t *transport) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	select {
	case t.busy <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", cardreader.ErrTimeout, ctx.Err())
	}
	cmd := bytes.Clone(apdu)
	ch := make(chan result, 1)
	go func() {
		b, err := t.card.Transmit(cmd)
		clear(cmd)
		<-t.busy
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, mapErr("transmit", r.err)
		}
		if len(r.b) < 2 {
			// A card always answers with a status word. The vpcd driver
			// (and some contactless readers) report a card that vanished
			// mid-command as an empty answer rather than an error.
			return nil, fmt.Errorf("%w: the card stopped answering (no status word)", cardreader.ErrCardRemoved)
		}
		return r.b, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", cardreader.ErrTimeout, ctx.Err())
	}
}

func (t *transport) ExtendedLength() bool { return t.ext }

func (t *transport) Close() error {
	select {
	case t.busy <- struct{}{}:
	default:
		// A Transmit abandoned at its deadline is still running and cannot
		// be interrupted: reset the card as soon as it returns, without
		// holding up the caller.
		go func() {
			t.busy <- struct{}{}
			t.card.Disconnect(scard.ResetCard)
		}()
		return nil
	}
	defer func() { <-t.busy }()
	if err := t.card.Disconnect(scard.ResetCard); err != nil && !isRemoval(err) {
		return mapErr("disconnect", err)
	}
	return nil
}

func isRemoval(err error) bool {
	return errors.Is(err, scard.ErrRemovedCard) || errors.Is(err, scard.ErrNoSmartcard) ||
		errors.Is(err, scard.ErrResetCard) || errors.Is(err, scard.ErrReaderUnavailable) ||
		errors.Is(err, scard.ErrUnpoweredCard) || errors.Is(err, scard.ErrUnresponsiveCard)
}

// mapErr turns PC/SC errors into cardreader's errors, keeping the original.
func mapErr(op string, err error) error {
	switch {
	case isRemoval(err):
		return fmt.Errorf("%w: %s: %w", cardreader.ErrCardRemoved, op, err)
	case errors.Is(err, scard.ErrNoReadersAvailable), errors.Is(err, scard.ErrUnknownReader):
		return fmt.Errorf("%w: %s: %w", cardreader.ErrNoReader, op, err)
	case errors.Is(err, scard.ErrNoService), errors.Is(err, scard.ErrServiceStopped):
		return fmt.Errorf("pcsc: %s: the PC/SC service (pcscd) is not running: %w", op, err)
	case errors.Is(err, scard.ErrSharingViolation):
		return fmt.Errorf("pcsc: %s: another application holds the card; close it and try again: %w", op, err)
	case errors.Is(err, scard.ErrTimeout):
		return fmt.Errorf("%w: %s: %w", cardreader.ErrTimeout, op, err)
	default:
		return fmt.Errorf("pcsc: %s: %w", op, err)
	}
}

// ATRSupportsExtendedLength reads the card capabilities (compact-TLV tag 7,
// third byte, bit 7) from the ATR's historical bytes, ISO/IEC 7816-4 §8.1.1.2.7.
func ATRSupportsExtendedLength(atr []byte) bool {
	hist := historicalBytes(atr)
	if len(hist) == 0 || (hist[0] != 0x00 && hist[0] != 0x80) {
		return false
	}
	objs := hist[1:]
	if hist[0] == 0x00 && len(objs) >= 3 {
		objs = objs[:len(objs)-3] // status indicator at the end
	}
	for len(objs) > 0 {
		tag, n := objs[0]>>4, int(objs[0]&0x0F)
		if 1+n > len(objs) {
			return false
		}
		if tag == 0x7 && n >= 3 {
			return objs[3]&0x40 != 0
		}
		objs = objs[1+n:]
	}
	return false
}

// historicalBytes walks the ATR's interface bytes to find the historical bytes.
func historicalBytes(atr []byte) []byte {
	if len(atr) < 2 {
		return nil
	}
	k := int(atr[1] & 0x0F)
	i := 1
	y := atr[1] >> 4
	for {
		for bit := byte(0); bit < 4; bit++ {
			if y&(1<<bit) != 0 {
				i++
			}
		}
		if y&0x8 == 0 {
			break
		}
		if i >= len(atr) {
			return nil
		}
		y = atr[i] >> 4
	}
	start := i + 1
	if start+k > len(atr) {
		return nil
	}
	return atr[start : start+k]
}
