package server

import (
	"context"

	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Renewer certifies an enrolled kiosk's key anew (enrollment.Service).
// Its refusals are refusal errors (kiosk_not_allowed, bad_message); any
// other error is internal.
type Renewer interface {
	Renew(ctx context.Context, kioskID string, csrDER []byte) ([]byte, error)
}

// renew answers a kiosk's Renew with its new certificate chain. The kiosk
// is the one this connection authenticated; the CSR must name it. The new
// certificate is used from the kiosk's next connection; this one goes on.
func (c *conn) renew(m protocol.Renew) {
	if c.s.cfg.Renewer == nil {
		c.sendError(m.RequestID, protocol.CodeUnexpectedMessage, "this center does not renew kiosk certificates")
		return
	}
	ctx, cancel := context.WithTimeout(c.s.base, c.s.cfg.IssueTimeout)
	chain, err := c.s.cfg.Renewer.Renew(ctx, c.kiosk.ID, m.CSR)
	cancel()
	if err != nil {
		if code, refused := refusal.CodeOf(err); refused {
			// The renewer has logged and audited its refusal.
			c.s.sampled.Warn(c.kiosk.ID, "kiosk certificate renewal refused", "kiosk", c.kiosk.ID, "code", code)
		} else {
			// The cause is for the center's log; the kiosk retries later.
			c.s.cfg.Log.Error("renew kiosk certificate", "kiosk", c.kiosk.ID, "err", err)
		}
		c.send(refusal.Public(m.RequestID, err))
		return
	}
	c.send(protocol.Renewed{RequestID: m.RequestID, Chain: string(chain)})
}
