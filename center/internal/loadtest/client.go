package loadtest

import (
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// errBinding marks an answer that is not bound to the request that asked
// for it: the failure this package exists to catch.
var errBinding = errors.New("loadtest: answer not bound to its request")

// conn is one kiosk's websocket to the center, used by one goroutine.
type conn struct {
	ws      *websocket.Conn
	timeout time.Duration
}

// dial connects as kiosk and reads the center's Hello.
func dial(addr string, k Kiosk, timeout time.Duration) (*conn, error) {
	d := websocket.Dialer{TLSClientConfig: k.TLS.Clone(), HandshakeTimeout: timeout}
	ws, resp, err := d.Dial("wss://"+addr+server.Path, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("loadtest: kiosk %s: dial: %w (HTTP %d)", k.ID, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("loadtest: kiosk %s: dial: %w", k.ID, err)
	}
	c := &conn{ws: ws, timeout: timeout}
	m, err := c.read()
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("loadtest: kiosk %s: hello: %w", k.ID, err)
	}
	h, ok := m.(protocol.Hello)
	if !ok || h.KioskID != k.ID {
		ws.Close()
		return nil, fmt.Errorf("loadtest: kiosk %s: first frame is %T, not its hello", k.ID, m)
	}
	return c, nil
}

func (c *conn) close() { c.ws.Close() }

func (c *conn) send(m protocol.Message) error {
	b, err := protocol.Encode(m)
	if err != nil {
		return err
	}
	c.ws.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *conn) read() (protocol.Message, error) {
	c.ws.SetReadDeadline(time.Now().Add(c.timeout))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	return protocol.Decode(b, protocol.MaxCenterFrame)
}

// answer reads until the answer to requestID: a certificate response or an
// error naming it. Anything answering another request is a binding
// failure; pongs are skipped.
func (c *conn) answer(requestID string) (*protocol.CertificateResponse, *protocol.Error, error) {
	for {
		m, err := c.read()
		if err != nil {
			return nil, nil, err
		}
		switch m := m.(type) {
		case protocol.CertificateResponse:
			if m.RequestID != requestID {
				return nil, nil, fmt.Errorf("%w: certificate for request %s while waiting for %s", errBinding, m.RequestID, requestID)
			}
			return &m, nil, nil
		case *protocol.Error:
			if m.RequestID != requestID {
				return nil, nil, fmt.Errorf("%w: error %s for request %q while waiting for %s", errBinding, m.Code, m.RequestID, requestID)
			}
			return nil, m, nil
		case protocol.Pong:
		default:
			return nil, nil, fmt.Errorf("loadtest: unexpected %s frame while waiting for request %s", m.Type(), requestID)
		}
	}
}

// ack reads until the Ack of requestID, or an error naming it.
func (c *conn) ack(requestID string) (*protocol.Error, error) {
	for {
		m, err := c.read()
		if err != nil {
			return nil, err
		}
		switch m := m.(type) {
		case protocol.Ack:
			if m.RequestID != requestID {
				return nil, fmt.Errorf("%w: ack for %s while waiting for %s", errBinding, m.RequestID, requestID)
			}
			return nil, nil
		case *protocol.Error:
			if m.RequestID != requestID {
				return nil, fmt.Errorf("%w: error %s for request %q while waiting for the ack of %s", errBinding, m.Code, m.RequestID, requestID)
			}
			return m, nil
		case protocol.Pong:
		default:
			return nil, fmt.Errorf("loadtest: unexpected %s frame while waiting for the ack of %s", m.Type(), requestID)
		}
	}
}
