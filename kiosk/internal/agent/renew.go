package agent

import (
	"context"
	"errors"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/identity"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Clock is the agent's time for certificate renewal; tests move it
// forward instead of waiting months.
type Clock interface {
	Now() time.Time
	// After is time.After on this clock.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// DefaultRenewCheck is how often the agent asks whether its certificate
// is due for renewal (besides at every connection).
const DefaultRenewCheck = time.Hour

// renewTimeout bounds one renewal over the connection.
const renewTimeout = time.Minute

// keepRenewed renews the kiosk's certificate over its connection when it
// is due (identity.NeedsRenewal: less than a third of its validity left),
// checking at every connection and every renewEvery, until ctx ends.
func (a *Agent) keepRenewed(ctx context.Context) {
	var lastTry time.Time
	for {
		changed := a.Client.Changed()
		if a.Client.Connected() {
			lastTry = a.renewIfDue(ctx, lastTry)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-a.clock.After(a.renewEvery):
		}
	}
}

// renewIfDue renews the certificate if it is due and no attempt was made
// within renewEvery, and returns the time of the latest attempt. The
// spacing keeps a kiosk whose clock runs ahead of the center's (so that
// even a fresh certificate looks due) from renewing at every connection.
func (a *Agent) renewIfDue(ctx context.Context, lastTry time.Time) time.Time {
	now := a.clock.Now()
	leaf := a.Identity.Leaf()
	if !identity.NeedsRenewal(leaf, now) || (!lastTry.IsZero() && now.Sub(lastTry) < a.renewEvery) {
		return lastTry
	}
	a.log.Info("kiosk certificate due for renewal", "serial", leaf.SerialNumber.Text(16), "notAfter", leaf.NotAfter)
	// The CSR is signed by the kiosk's key where it lives (the TPM, or the
	// key file); only the CSR travels.
	csr, err := a.Identity.Request()
	if err != nil {
		a.log.Error("kiosk certificate renewal: make the request", "err", err)
		return now
	}
	rctx, cancel := context.WithTimeout(ctx, renewTimeout)
	chain, err := a.Client.Renew(rctx, csr)
	cancel()
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			a.log.Warn("the center refused to renew the kiosk certificate; asking again later", "code", pe.Code, "detail", pe.Detail, "notAfter", leaf.NotAfter)
		} else {
			a.log.Warn("kiosk certificate renewal failed; asking again later", "err", err, "notAfter", leaf.NotAfter)
		}
		return now
	}
	if err := a.Identity.Install([]byte(chain)); err != nil {
		a.log.Error("kiosk certificate renewal: the new certificate was not stored; the current one stays in use", "err", err)
		return now
	}
	next := a.Identity.Leaf()
	a.log.Info("kiosk certificate renewed", "serial", next.SerialNumber.Text(16), "notAfter", next.NotAfter)
	// Use it at once: a new connection presents it while the old
	// certificate still works, so a problem with it shows now, not at
	// expiry. Requests in flight are resent on the new connection.
	a.Client.Reconnect()
	return now
}
