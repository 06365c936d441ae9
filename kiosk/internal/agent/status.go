package agent

import (
	"context"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// statusInterval is how often device health is re-checked between state changes.
const statusInterval = 30 * time.Second

// reportStatus tells the center the kiosk's device health and session
// state (the state name only) for the operators' live view.
func (a *Agent) reportStatus(ctx context.Context) {
	snaps, cancel := a.Kiosk.Subscribe()
	defer cancel()
	tick := time.NewTicker(statusInterval)
	defer tick.Stop()
	state := flow.StateIdle
	last := protocol.Status{}
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-snaps:
			if s.State == state {
				continue
			}
			state = s.State
		case <-tick.C:
		}
		st := a.Health(ctx)
		st.State = string(state)
		if st != last {
			a.Client.SetStatus(st)
			last = st
		}
	}
}

// Health reports the reader and printer state, as the integrator API and
// the center's live view show it.
func (a *Agent) Health(ctx context.Context) protocol.Status {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st := protocol.Status{Reader: "ok", Printer: "ok"}
	if _, err := a.Reader.CardPresent(ctx); err != nil {
		st.Reader = "no-reader"
	}
	if p, ok := a.Printer.(Printer); ok {
		ps, err := p.P.Status(ctx)
		switch {
		case err != nil:
			st.Printer = "offline"
		case !ps.Ready():
			st.Printer = ps.State.String()
		}
	}
	return st
}
