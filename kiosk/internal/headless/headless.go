// Package headless drives the kiosk flow without a screen: a scripted
// resident who places the card, types the PIN, takes the card back, makes
// the choices, confirms the preview and takes the certificate. The demo,
// the end-to-end tests and the load tests use it; it watches the same
// snapshots and sends the same inputs as the touch screen does.
package headless

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Card is the resident's hand on the card: put it on the reader or take it off.
type Card interface {
	Insert() error
	Remove() error
}

// Resident is what the scripted resident does.
type Resident struct {
	PIN          string
	WrongPINs    []string // typed, in order, before the right PIN
	Municipality string
	Kind         certificate.Kind
	Copies       int
	// CancelAt cancels the session on reaching this state (for tests).
	CancelAt flow.State
	// RetryPrint presses retry after a print failure.
	RetryPrint bool
	// KeepCard leaves the card on the reader when asked to remove it.
	KeepCard bool
	// Municipalities are chosen after Municipality, one each time the
	// kiosk comes back to the municipality screen (no record there).
	Municipalities []string
	// TakeDomestic chooses the domestic kind when the kind asked for is
	// refused (no passport data); otherwise the resident cancels.
	TakeDomestic bool
}

// Result is what the resident saw.
type Result struct {
	Printed bool
	// Error is the message of the error screen, if the session ended in one.
	Error *flow.Message
	// States lists the states seen, in order, without repeats.
	States []flow.State
	// TriesShown lists the tries-left values shown on the PIN screen.
	TriesShown []int
	// LastTryWarned is true if the PIN screen warned of the last try.
	LastTryWarned bool
	// PreviewHolder and PreviewIDs are the holder name and certificate IDs
	// shown on the preview.
	PreviewHolder string
	PreviewIDs    []string
	Session       string
	// Notices are the codes of the notices shown on choice screens (why
	// the resident was sent back), in order.
	Notices []string
	// ErrorScreen is the last error screen shown (State StateError), as
	// the screen received it; zero if none was.
	ErrorScreen flow.Snapshot
}

// Run plays r at kiosk k until the session ends (back at idle) or ctx ends.
func Run(ctx context.Context, k *flow.Kiosk, card Card, r Resident) (*Result, error) {
	snaps, cancel := k.Subscribe()
	defer cancel()
	res := &Result{}
	inserted, started := false, false
	wrong := slices.Clone(r.WrongPINs)
	var lastSeq uint64
	for {
		var s flow.Snapshot
		select {
		case s = <-snaps:
		case <-ctx.Done():
			return res, fmt.Errorf("headless: session did not finish: %w (last state %s)", ctx.Err(), lastState(res))
		}
		if s.Seq == lastSeq {
			continue
		}
		lastSeq = s.Seq
		if len(res.States) == 0 || res.States[len(res.States)-1] != s.State {
			res.States = append(res.States, s.State)
		}
		if s.Session != "" {
			res.Session = s.Session
			started = true
		}
		if r.CancelAt != "" && s.State == r.CancelAt {
			k.Input(flow.Input{Type: flow.InputCancel})
			r.CancelAt = ""
			continue
		}
		switch s.State {
		case flow.StateIdle:
			if started {
				// Session over. Take the card if it is still there.
				if inserted {
					card.Remove()
				}
				return res, nil
			}
			if !inserted && s.Ready {
				if err := card.Insert(); err != nil {
					return res, fmt.Errorf("headless: insert card: %w", err)
				}
				inserted = true
			}
		case flow.StatePIN:
			res.TriesShown = append(res.TriesShown, s.TriesLeft)
			res.LastTryWarned = res.LastTryWarned || s.LastTry
			pin := r.PIN
			if len(wrong) > 0 {
				pin, wrong = wrong[0], wrong[1:]
			}
			k.Input(flow.Input{Type: flow.InputPIN, PIN: []byte(pin)})
		case flow.StateRemoveCard:
			if inserted && !r.KeepCard {
				if err := card.Remove(); err != nil {
					return res, fmt.Errorf("headless: remove card: %w", err)
				}
				inserted = false
			}
		case flow.StateMunicipality:
			if s.Notice != nil {
				res.Notices = append(res.Notices, s.Notice.Code)
				if len(r.Municipalities) > 0 {
					r.Municipality, r.Municipalities = r.Municipalities[0], r.Municipalities[1:]
				}
			}
			k.Input(flow.Input{Type: flow.InputMunicipality, Municipality: r.Municipality})
		case flow.StateKind:
			if s.Notice != nil {
				res.Notices = append(res.Notices, s.Notice.Code)
			}
			kind := r.Kind
			if m := s.RefusedKinds[kind]; m != nil {
				if !r.TakeDomestic {
					res.Error = m
					k.Input(flow.Input{Type: flow.InputCancel})
					continue
				}
				kind = certificate.Domestic
			}
			k.Input(flow.Input{Type: flow.InputKind, Kind: kind})
		case flow.StateCopies:
			k.Input(flow.Input{Type: flow.InputCopies, Copies: r.Copies})
		case flow.StatePreview:
			if len(s.Preview) > 0 {
				// Copies: the kiosk overwrites its own when the session ends.
				res.PreviewHolder = strings.Clone(s.Preview[0].Holder.Name)
				for _, c := range s.Preview {
					res.PreviewIDs = append(res.PreviewIDs, strings.Clone(c.ID))
				}
			}
			k.Input(flow.Input{Type: flow.InputConfirm})
		case flow.StatePrintFailed:
			res.Error = s.Error
			if r.RetryPrint {
				k.Input(flow.Input{Type: flow.InputRetry})
			} else {
				k.Input(flow.Input{Type: flow.InputCancel})
			}
		case flow.StateTakeCertificate:
			res.Printed, res.Error = true, nil
			k.Input(flow.Input{Type: flow.InputStop})
		case flow.StateError:
			if res.Error == nil || s.Error == nil || s.Error.Code != "cancelled" {
				res.Error = s.Error
			}
			res.ErrorScreen = s
			if inserted {
				card.Remove()
				inserted = false
			}
			k.Input(flow.Input{Type: flow.InputConfirm})
		}
	}
}

func lastState(r *Result) flow.State {
	if len(r.States) == 0 {
		return ""
	}
	return r.States[len(r.States)-1]
}

// ErrNotPrinted is returned by Must when the session did not print.
var ErrNotPrinted = errors.New("headless: session did not print")

// Must returns an error unless the session printed.
func (r *Result) Must() error {
	if r.Printed {
		return nil
	}
	if r.Error != nil {
		return fmt.Errorf("%w: %s (%s)", ErrNotPrinted, r.Error.Code, r.Error.En)
	}
	return fmt.Errorf("%w (states %v)", ErrNotPrinted, r.States)
}
