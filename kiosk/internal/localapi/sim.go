package localapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/kioskcert/kioskcert/assets/ui"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/payment"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
)

// Sim is the simulator's hand on the kiosk (`make run`): it places virtual
// cards on the reader and takes them off, plays the store terminal's
// payment, and can make the next print fail. Its control panel is served
// under /sim/ only when Config.Sim is set; a production agent has none.
type Sim struct {
	// Slot is the kiosk's card reader.
	Slot *virtualcard.Slot
	// Cards are the cards offered on the panel.
	Cards []SimCard
	// Payment is the simulated store terminal (nil: the panel shows no
	// payment controls and the kiosk's own payment is used).
	Payment *SimPayment
	// Printer can fail the next print (nil: no printer controls).
	Printer *SimPrinter

	mu       sync.Mutex
	inserted string // ID of the card on the reader, "" for none
}

// SimCard is a card a person can place on the reader from the panel.
type SimCard struct {
	ID    string `json:"id"`
	Label string `json:"label"` // e.g. the demo resident's name and case
	PIN   string `json:"pin"`   // shown on the panel: demo residents are synthetic
	// New makes a fresh card (a full PIN counter each time it is placed).
	New func() (*virtualcard.Card, error) `json:"-"`
}

// DemoCards offers the demo residents' cards (assets/demo) and a card that
// is not a My Number card.
func DemoCards(set *virtualcard.DemoSet) []SimCard {
	var out []SimCard
	for _, r := range set.Residents.Residents {
		id := r.ID
		out = append(out, SimCard{
			ID: id, Label: r.Name + " — " + r.About, PIN: r.PIN,
			New: func() (*virtualcard.Card, error) {
				c, _, err := set.Card(id, virtualcard.Options{ExtendedLength: true})
				return c, err
			},
		})
	}
	out = append(out, SimCard{
		ID: "foreign", Label: "交通系ICカード (not a My Number card)",
		New: func() (*virtualcard.Card, error) { return virtualcard.NewForeign(), nil },
	})
	return out
}

// Insert places the card with id on the reader, replacing any card there.
func (sim *Sim) Insert(id string) error {
	for _, c := range sim.Cards {
		if c.ID != id {
			continue
		}
		card, err := c.New()
		if err != nil {
			return fmt.Errorf("localapi: simulator card %s: %w", id, err)
		}
		sim.mu.Lock()
		defer sim.mu.Unlock()
		sim.Slot.Insert(card)
		sim.inserted = id
		return nil
	}
	return fmt.Errorf("localapi: no simulator card %q", id)
}

// Remove takes the card off the reader.
func (sim *Sim) Remove() {
	sim.mu.Lock()
	defer sim.mu.Unlock()
	sim.Slot.Remove()
	sim.inserted = ""
}

// Inserted is the ID of the card on the reader, or "".
func (sim *Sim) Inserted() string {
	sim.mu.Lock()
	defer sim.mu.Unlock()
	if present, _ := sim.Slot.CardPresent(context.Background()); !present {
		sim.inserted = ""
	}
	return sim.inserted
}

// SimPayment is a store terminal a person operates from the panel: each
// authorisation waits until the panel approves or declines it (or approves
// at once in auto mode). A ledger (payment.Simulator) records captures and
// voids, so a demo can show that a failed print costs nothing.
type SimPayment struct {
	Ledger *payment.Simulator

	mu      sync.Mutex
	auto    bool
	pending *pendingPayment
}

type pendingPayment struct {
	amountYen int
	decided   chan bool
}

// NewSimPayment returns a terminal; auto approves every payment at once.
func NewSimPayment(auto bool) *SimPayment {
	return &SimPayment{Ledger: payment.NewSimulator(), auto: auto}
}

// SetAuto switches automatic approval on or off.
func (p *SimPayment) SetAuto(auto bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.auto = auto
}

// Auto reports whether payments are approved at once.
func (p *SimPayment) Auto() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.auto
}

// Pending returns the amount of the payment waiting for a decision.
func (p *SimPayment) Pending() (amountYen int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		return 0, false
	}
	return p.pending.amountYen, true
}

// ErrNoPayment is returned by Decide when no payment is waiting.
var ErrNoPayment = errors.New("localapi: no payment is waiting")

// Decide approves or declines the waiting payment.
func (p *SimPayment) Decide(approve bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		return ErrNoPayment
	}
	p.pending.decided <- approve
	p.pending = nil
	return nil
}

// Authorize implements flow.Payment.
func (p *SimPayment) Authorize(ctx context.Context, requestID string, amountYen int) error {
	p.mu.Lock()
	if p.auto {
		p.mu.Unlock()
		return p.Ledger.Authorize(ctx, requestID, amountYen)
	}
	pp := &pendingPayment{amountYen: amountYen, decided: make(chan bool, 1)}
	p.pending = pp
	p.mu.Unlock()
	select {
	case ok := <-pp.decided:
		if !ok {
			return payment.ErrDeclined
		}
		return p.Ledger.Authorize(ctx, requestID, amountYen)
	case <-ctx.Done():
		p.mu.Lock()
		if p.pending == pp {
			p.pending = nil
		}
		p.mu.Unlock()
		return ctx.Err()
	}
}

// Capture implements flow.Payment.
func (p *SimPayment) Capture(ctx context.Context, requestID string) error {
	return p.Ledger.Capture(ctx, requestID)
}

// Void implements flow.Payment.
func (p *SimPayment) Void(ctx context.Context, requestID string) error {
	return p.Ledger.Void(ctx, requestID)
}

// SimPrinter wraps the kiosk's printer so the panel can make the next
// print fail (paper out or a jam), to show the print-failed screen.
type SimPrinter struct {
	P flow.Printer

	mu       sync.Mutex
	failNext string
}

// Sim printer faults.
const (
	FaultPaperOut = "paper_out"
	FaultJam      = "jam"
)

// FailNext makes the next print fail with fault ("" clears it).
func (p *SimPrinter) FailNext(fault string) error {
	switch fault {
	case "", FaultPaperOut, FaultJam:
	default:
		return fmt.Errorf("localapi: unknown printer fault %q (want %s or %s)", fault, FaultPaperOut, FaultJam)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failNext = fault
	return nil
}

// Fault is the fault the next print will have, or "".
func (p *SimPrinter) Fault() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failNext
}

// Print implements flow.Printer.
func (p *SimPrinter) Print(ctx context.Context, name string, pdf []byte, copies int) error {
	p.mu.Lock()
	fault := p.failNext
	p.failNext = ""
	p.mu.Unlock()
	switch fault {
	case FaultPaperOut:
		return fmt.Errorf("localapi: simulated fault: %w", printer.ErrPaperOut)
	case FaultJam:
		return fmt.Errorf("localapi: simulated fault: %w", printer.ErrPaperJam)
	}
	return p.P.Print(ctx, name, pdf, copies)
}

// simState is the panel's view (GET /sim/api/state).
type simState struct {
	Cards    []SimCard  `json:"cards"`
	Inserted string     `json:"inserted"`
	State    flow.State `json:"state"`
	Payment  *struct {
		Auto      bool `json:"auto"`
		Pending   bool `json:"pending"`
		AmountYen int  `json:"amountYen,omitempty"`
		Captured  int  `json:"capturedYen"`
	} `json:"payment,omitempty"`
	Printer *struct {
		FailNext string `json:"failNext"`
	} `json:"printer,omitempty"`
}

// simRoutes registers the simulator's control panel.
//
//	GET  /sim/                 the panel (assets/ui/sim/index.html) with the screen in a frame
//	GET  /sim/api/state        cards, the card on the reader, payment and printer
//	POST /sim/api/card         {"id": "hanako"} places a card; {"id": ""} takes it off
//	POST /sim/api/payment      {"approve": true|false} decides; {"auto": true|false} switches auto mode
//	POST /sim/api/printer      {"failNext": "paper_out"|"jam"|""}
func (s *Server) simRoutes() {
	sim := s.cfg.Sim
	s.mux.HandleFunc("GET /sim/{$}", s.page(func(w http.ResponseWriter, r *http.Request) {
		serveFile(w, r, ui.FS(), "sim/index.html")
	}))
	s.mux.HandleFunc("GET /sim/api/state", func(w http.ResponseWriter, r *http.Request) {
		st := simState{Cards: sim.Cards, Inserted: sim.Inserted(), State: s.cfg.Kiosk.Snapshot().State}
		if p := sim.Payment; p != nil {
			amount, pending := p.Pending()
			st.Payment = &struct {
				Auto      bool `json:"auto"`
				Pending   bool `json:"pending"`
				AmountYen int  `json:"amountYen,omitempty"`
				Captured  int  `json:"capturedYen"`
			}{p.Auto(), pending, amount, p.Ledger.CapturedYen()}
		}
		if p := sim.Printer; p != nil {
			st.Printer = &struct {
				FailNext string `json:"failNext"`
			}{p.Fault()}
		}
		writeJSON(w, http.StatusOK, st)
	})
	s.mux.HandleFunc("POST /sim/api/card", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID string `json:"id"`
		}
		if err := readJSON(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, "bad_input", err.Error())
			return
		}
		if req.ID == "" {
			sim.Remove()
		} else if err := sim.Insert(req.ID); err != nil {
			writeError(w, http.StatusBadRequest, "bad_input", err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("POST /sim/api/payment", func(w http.ResponseWriter, r *http.Request) {
		if sim.Payment == nil {
			writeError(w, http.StatusNotFound, "no_payment", "localapi: the simulator does not operate the payment")
			return
		}
		var req struct {
			Approve *bool `json:"approve"`
			Auto    *bool `json:"auto"`
		}
		if err := readJSON(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, "bad_input", err.Error())
			return
		}
		if req.Auto != nil {
			sim.Payment.SetAuto(*req.Auto)
		}
		if req.Approve != nil {
			if err := sim.Payment.Decide(*req.Approve); err != nil {
				writeError(w, http.StatusConflict, "no_payment", err.Error())
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("POST /sim/api/printer", func(w http.ResponseWriter, r *http.Request) {
		if sim.Printer == nil {
			writeError(w, http.StatusNotFound, "no_printer", "localapi: the simulator does not operate the printer")
			return
		}
		var req struct {
			FailNext string `json:"failNext"`
		}
		if err := readJSON(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, "bad_input", err.Error())
			return
		}
		if err := sim.Printer.FailNext(req.FailNext); err != nil {
			writeError(w, http.StatusBadRequest, "bad_input", err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// The simulator's parts plug into the flow.
var (
	_ flow.Payment = (*SimPayment)(nil)
	_ flow.Printer = (*SimPrinter)(nil)
)
