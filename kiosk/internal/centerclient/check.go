package centerclient

import (
	"context"
	"fmt"

	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Check asks the center whether req.Municipality holds the record of the
// card in req (protocol.Check) and waits for the answer until ctx ends. A
// check changes nothing at the center, so it is sent again on every
// connection that ends before the answer arrives, and after an unavailable
// or busy answer as Issue is. A refusal (no_record, …) comes back as a
// *protocol.Error. Use it only when the center's Hello announces
// protocol.FeatureCheck: an older center does not answer.
func (c *Client) Check(ctx context.Context, req protocol.Check) (*protocol.Checked, error) {
	ch, done := c.await(waiterKey{req.RequestID, answerChecked})
	defer done()
	for {
		cn, err := c.current(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: no answer to check %s: %w", ErrNotConnected, req.RequestID, ctx.Err())
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
			return nil, fmt.Errorf("%w: no answer to check %s: %w", ErrNotConnected, req.RequestID, ctx.Err())
		}
		switch m := m.(type) {
		case protocol.Checked:
			return &m, nil
		case *protocol.Error:
			if wait, again := retryWait(m); again && ctx.Err() == nil {
				if sleep(ctx, wait) {
					continue
				}
			}
			return nil, m
		}
	}
}
