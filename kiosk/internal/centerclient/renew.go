package centerclient

import (
	"context"
	"fmt"

	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Renew sends a certificate signing request for the kiosk's key over the
// open connection (protocol.Renew) and waits until ctx ends for the new
// certificate chain (PEM, leaf first). A renewal lost with its connection
// is sent again on the next one (a second certificate for the same key is
// harmless), and again after an unavailable or busy answer. A refusal
// (kiosk_not_allowed, bad_message, …) comes back as a *protocol.Error.
func (c *Client) Renew(ctx context.Context, csr []byte) (string, error) {
	req := protocol.Renew{RequestID: protocol.NewRequestID(), CSR: csr}
	ch, done := c.await(waiterKey{req.RequestID, answerRenewed})
	defer done()
	for {
		cn, err := c.current(ctx)
		if err != nil {
			return "", fmt.Errorf("%w: no answer to renewal %s: %w", ErrNotConnected, req.RequestID, ctx.Err())
		}
		cn.send(req)
		var m protocol.Message
		select {
		case m = <-ch:
		case <-cn.gone:
			select {
			case m = <-ch:
			default:
				continue // lost with the connection: ask again on the next
			}
		case <-ctx.Done():
			return "", fmt.Errorf("%w: no answer to renewal %s: %w", ErrNotConnected, req.RequestID, ctx.Err())
		}
		switch m := m.(type) {
		case protocol.Renewed:
			return m.Chain, nil
		case *protocol.Error:
			if wait, again := retryWait(m); again && ctx.Err() == nil {
				if sleep(ctx, wait) {
					continue
				}
			}
			return "", m
		}
	}
}

// Reconnect ends the connection up now, if any; Run connects again at
// once, with whatever certificate the TLS configuration gives then (the
// agent calls it after a renewal). Requests waiting for an answer are sent
// again on the new connection, as after any loss.
func (c *Client) Reconnect() {
	c.mu.Lock()
	cn := c.conn
	c.reconnectNow = cn != nil
	c.mu.Unlock()
	if cn != nil {
		cn.ws.Close()
	}
}
