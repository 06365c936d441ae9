package agent

import (
	"context"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
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
	st := protocol.Status{Reader: "ok", Printer: "ok", AgentVersion: Version()}
	if _, err := a.Reader.CardPresent(ctx); err != nil {
		st.Reader = "no-reader"
	}
	if name, ready := a.printerState(ctx); !ready || name == paperLow {
		st.Printer = name
	}
	a.errMu.Lock()
	st.LastError = a.lastErr
	a.errMu.Unlock()
	return st
}

// paperLow is what the center is told of a printer that can print but
// reports its paper running low (IPP media-low), so staff refill it before
// a resident meets an empty tray.
const paperLow = "paper-low"

// Version is the agent's version as the center's console shows it: the
// module version it was built as, else the VCS revision, else "devel".
var Version = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
})

// statusPrinter is a printer that can say whether it is ready.
type statusPrinter interface {
	Status(ctx context.Context) (printer.Status, error)
}

// printerState names the printer's state (printer.State names, "offline"
// when it cannot be asked, "unknown" for a printer supplied in Options
// that cannot say) and whether it can print.
func (a *Agent) printerState(ctx context.Context) (string, bool) {
	var sp statusPrinter
	switch p := a.Printer.(type) {
	case Printer:
		sp = p.P
	case statusPrinter:
		sp = p
	default:
		return "unknown", true
	}
	ps, err := sp.Status(ctx)
	if err != nil {
		return printer.StateOffline.String(), false
	}
	if ps.Ready() {
		for _, r := range ps.Reasons {
			if strings.HasPrefix(r, "media-low") {
				return paperLow, true
			}
		}
	}
	return ps.State.String(), ps.Ready()
}

// watchErrors records the error screens sessions show. It does nothing
// else, so it keeps up with the flow; print and payment failures are also
// recorded where they happen (notingPayment, the PrintCode wrapper), as a
// screen the resident leaves at once can be replaced before it is read.
func (a *Agent) watchErrors(ctx context.Context) {
	snaps, cancel := a.Kiosk.Subscribe()
	defer cancel()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-snaps:
			if s.Error != nil && s.Seq != seq {
				a.noteError(s.Error.Code)
			}
			seq = s.Seq
		}
	}
}

// notingPayment records failed authorisations as the last error.
type notingPayment struct {
	flow.Payment
	note func(string)
}

func (p notingPayment) Authorize(ctx context.Context, requestID string, amountYen int) error {
	err := p.Payment.Authorize(ctx, requestID, amountYen)
	if err != nil {
		p.note("payment_failed")
	}
	return err
}

func (a *Agent) noteError(code string) {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	a.lastErr, a.lastErrAt = code, time.Now().UTC()
}

// IntegratorHealth reports the kiosk's health for the integrator API: the
// reader, the center connection, the printer, outcomes the center has not
// acknowledged yet, and the last error a session showed.
func (a *Agent) IntegratorHealth(ctx context.Context) localapi.Health {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h := localapi.Health{Reader: "ok", ReaderPresent: true}
	if _, err := a.Reader.CardPresent(ctx); err != nil {
		h.Reader, h.ReaderPresent = "no-reader", false
	}
	h.Printer, h.PrinterReady = a.printerState(ctx)
	h.CenterConnected = a.Client.Connected()
	h.PendingOutcomes = a.Client.PendingOutcomes()
	a.errMu.Lock()
	h.LastError, h.LastErrorAt = a.lastErr, a.lastErrAt
	a.errMu.Unlock()
	return h
}
