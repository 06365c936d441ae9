// Package vpcd connects a virtual card to a real pcscd through the
// vsmartcard project's vpcd reader driver, so that the card appears to every
// PC/SC application as a card in the reader "Virtual PCD".
//
// The driver listens on TCP (127.0.0.1:35963 by default, set by CHANNELID in
// /etc/reader.conf.d/vpcd). The card side connects; a connection is a card
// in the reader, and closing it is pulling the card out. Every message in
// either direction is a 2-byte big-endian length and a payload. A 1-byte
// payload from the driver is a control code (0 power off, 1 power on,
// 2 reset, 4 get ATR); anything longer is a command APDU. The card answers
// GET ATR with its ATR and every APDU with a response APDU.
package vpcd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// DefaultAddr is where the vpcd driver listens with Debian's default config.
const DefaultAddr = "127.0.0.1:35963"

// Control codes the driver sends.
const (
	ctrlPowerOff = 0
	ctrlPowerOn  = 1
	ctrlReset    = 2
	ctrlGetATR   = 4
)

// maxMessage bounds one message: an extended APDU plus headers.
const maxMessage = 65536 + 16

// ErrRemoved, returned by a Card's Process, makes Serve close the
// connection: the card leaves the reader.
var ErrRemoved = errors.New("vpcd: card removed")

// Card is what a virtual card must offer to sit in the reader.
type Card interface {
	ATR() []byte
	// Process answers one command APDU. Returning an error pulls the card.
	Process(apdu []byte) ([]byte, error)
	// Reset is a power cycle.
	Reset()
}

// Delayer is optionally implemented by cards that answer slowly.
type Delayer interface{ Delay() time.Duration }

// Connection is one card inserted into a vpcd reader.
type Connection struct {
	conn net.Conn
	done chan struct{}
	err  error
	once sync.Once
}

// Insert connects card to the vpcd driver at addr and serves it until Remove
// is called, the card pulls itself (Process errors), or the driver hangs up.
func Insert(ctx context.Context, addr string, card Card) (*Connection, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("vpcd: connect to the vpcd driver at %s (is pcscd running with vsmartcard-vpcd?): %w", addr, err)
	}
	c := &Connection{conn: conn, done: make(chan struct{})}
	go func() {
		c.err = serve(conn, card)
		conn.Close()
		close(c.done)
	}()
	return c, nil
}

// Remove pulls the card out of the reader and waits until it is out.
func (c *Connection) Remove() {
	c.once.Do(func() { c.conn.Close() })
	<-c.done
}

// Done is closed when the card has left the reader.
func (c *Connection) Done() <-chan struct{} { return c.done }

// Err reports why the connection ended, after Done is closed. A removal by
// Remove or by the card itself is not an error.
func (c *Connection) Err() error {
	<-c.done
	if errors.Is(c.err, net.ErrClosed) || errors.Is(c.err, io.EOF) || errors.Is(c.err, ErrRemoved) {
		return nil
	}
	return c.err
}

func serve(conn net.Conn, card Card) error {
	for {
		msg, err := readMessage(conn)
		if err != nil {
			return err
		}
		if len(msg) == 1 {
			switch msg[0] {
			case ctrlPowerOff, ctrlPowerOn, ctrlReset:
				card.Reset()
			case ctrlGetATR:
				if err := writeMessage(conn, card.ATR()); err != nil {
					return err
				}
			default:
				return fmt.Errorf("vpcd: unknown control code %d from driver", msg[0])
			}
			continue
		}
		if d, ok := card.(Delayer); ok && d.Delay() > 0 {
			time.Sleep(d.Delay())
		}
		resp, err := card.Process(msg)
		if err != nil {
			return ErrRemoved
		}
		if err := writeMessage(conn, resp); err != nil {
			return err
		}
	}
}

func readMessage(r net.Conn) ([]byte, error) {
	var hdr [2]byte
	quickAck(r)
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	quickAck(r)
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n == 0 {
		return nil, errors.New("vpcd: empty message from driver")
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeMessage(w io.Writer, payload []byte) error {
	if len(payload) > 0xFFFF || len(payload) > maxMessage {
		return fmt.Errorf("vpcd: message of %d bytes is too long for the 2-byte length", len(payload))
	}
	buf := make([]byte, 2+len(payload))
	binary.BigEndian.PutUint16(buf, uint16(len(payload)))
	copy(buf[2:], payload)
	_, err := w.Write(buf)
	return err
}
