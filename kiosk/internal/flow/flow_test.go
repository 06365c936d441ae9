package flow_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/demo"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow/flowtest"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/payment"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/printertest"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

type rig struct {
	kiosk   *flow.Kiosk
	center  *flowtest.Center
	printer *printertest.Fake
	pay     *payment.Simulator
	slot    *virtualcard.Slot
	logs    *bytes.Buffer
}

func newRig(t *testing.T, timeouts flow.Timeouts) *rig {
	t.Helper()
	cards := flowtest.Cards(t)
	r := &rig{
		center:  flowtest.NewCenter(cards),
		printer: printertest.New(),
		pay:     payment.NewSimulator(),
		slot:    virtualcard.NewSlot("test", true),
		logs:    &bytes.Buffer{},
	}
	if timeouts.Reminder == 0 {
		timeouts.Reminder = 20 * time.Millisecond
	}
	if timeouts.Error == 0 {
		timeouts.Error = 200 * time.Millisecond
	}
	var err error
	r.kiosk, err = flow.New(flow.Config{
		Reader: r.slot, Verifier: cards.Verifier, Center: r.center, Renderer: flowtest.Renderer(t),
		Printer: agent.Printer{P: r.printer}, Payment: r.pay, Timeouts: timeouts, PrintCode: agent.PrintCode,
		Log: slog.New(slog.NewJSONHandler(&lockedWriter{w: r.logs}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Start(t, r.kiosk)
	return r
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (r *rig) play(t *testing.T, id string, res headless.Resident) (*headless.Result, *virtualcard.Card) {
	t.Helper()
	card, resident, err := flowtest.Cards(t).Card(id, virtualcard.Options{ExtendedLength: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.PIN == "" {
		res.PIN = resident.PIN
	}
	if res.Municipality == "" {
		res.Municipality = "012041"
	}
	if res.Kind == "" {
		res.Kind = certificate.Domestic
	}
	if res.Copies == 0 {
		res.Copies = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := headless.Run(ctx, r.kiosk, demo.SlotCard{Slot: r.slot, Card: card}, res)
	if err != nil {
		t.Fatal(err)
	}
	// The session is over: nothing of it may remain.
	deadline := time.Now().Add(2 * time.Second)
	for !r.kiosk.Wiped() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !r.kiosk.Wiped() {
		t.Fatal("session data not wiped after the session")
	}
	return out, card
}

func TestHappyPath(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	res, _ := r.play(t, "hanako", headless.Resident{Copies: 2})
	if err := res.Must(); err != nil {
		t.Fatal(err)
	}
	// Transient states (card-check, reading, printing) may pass faster than
	// a subscriber looks; every state that waits for the resident is seen.
	want := []flow.State{flow.StateIdle, flow.StatePIN, flow.StateRemoveCard,
		flow.StateMunicipality, flow.StateKind, flow.StateCopies, flow.StatePreview,
		flow.StatePayment, flow.StateTakeCertificate, flow.StateIdle}
	if !subsequence(want, res.States) {
		t.Fatalf("states %v\nwant in order %v", res.States, want)
	}
	jobs := r.printer.Jobs()
	if len(jobs) != 1 || !bytes.HasPrefix(jobs[0].PDF, []byte("%PDF")) || jobs[0].Copies != 2 {
		t.Fatalf("printer got %d jobs", len(jobs))
	}
	if !strings.HasPrefix(jobs[0].Name, "kioskcert-") || strings.Contains(jobs[0].Name, "hanako") {
		t.Fatal("job name must be the request ID only")
	}
	if o := r.center.LastOutcome(); o.Outcome != protocol.OutcomePrinted || o.Copies != 2 {
		t.Fatalf("outcome %+v", o)
	}
	if r.pay.CapturedYen() != 240 {
		t.Fatalf("captured %d yen", r.pay.CapturedYen())
	}
	if res.PreviewHolder != "試験　花子" {
		t.Fatal("preview did not show the holder")
	}
	if snap := r.kiosk.Snapshot(); snap.State != flow.StateIdle || snap.Preview != nil || snap.Session != "" {
		t.Fatalf("idle snapshot carries session data: %+v", snap)
	}
	if strings.Contains(r.logs.String(), "試験") || strings.Contains(r.logs.String(), "314159265352") {
		t.Fatal("log carries personal data")
	}
}

func TestWrongPINThenRight(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	res, card := r.play(t, "hanako", headless.Resident{WrongPINs: []string{"0000", "9999"}})
	if err := res.Must(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.TriesShown) != "[3 2 1]" || !res.LastTryWarned {
		t.Fatalf("tries shown %v, last-try warning %v", res.TriesShown, res.LastTryWarned)
	}
	if card.TriesLeft() != 3 {
		t.Fatal("counter not reset by the right PIN")
	}
}

func TestPINBlocked(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	res, card := r.play(t, "hanako", headless.Resident{WrongPINs: []string{"0000", "0001", "0002", "0003"}})
	if res.Printed || res.Error == nil || res.Error.Code != "pin_blocked" {
		t.Fatalf("result %+v", res.Error)
	}
	if card.TriesLeft() != 0 {
		t.Fatal("card not blocked")
	}
	// A blocked card is refused before any PIN is asked for.
	res2, _ := r.playCard(t, card, headless.Resident{PIN: "1234", Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
	if res2.Error == nil || res2.Error.Code != "pin_blocked" || len(res2.TriesShown) != 0 {
		t.Fatalf("blocked card: %+v tries shown %v", res2.Error, res2.TriesShown)
	}
}

func (r *rig) playCard(t *testing.T, card *virtualcard.Card, res headless.Resident) (*headless.Result, *virtualcard.Card) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := headless.Run(ctx, r.kiosk, demo.SlotCard{Slot: r.slot, Card: card}, res)
	if err != nil {
		t.Fatal(err)
	}
	return out, card
}

func TestCardPulledDuringPIN(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	card, _, _ := flowtest.Cards(t).Card("an", virtualcard.Options{})
	snaps, cancel := r.kiosk.Subscribe()
	defer cancel()
	r.slot.Insert(card)
	waitState(t, snaps, flow.StatePIN)
	r.slot.Remove()
	s := waitState(t, snaps, flow.StateError)
	if s.Error.Code != "card_removed" {
		t.Fatalf("error %+v", s.Error)
	}
	waitState(t, snaps, flow.StateIdle)
}

func TestCardPulledMidRead(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	card, resident, _ := flowtest.Cards(t).Card("takasaki", virtualcard.Options{})
	card.SetFaults(virtualcard.Faults{RemoveAfter: 7})
	res, _ := r.playCard(t, card, headless.Resident{PIN: resident.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
	if res.Printed || res.Error == nil || res.Error.Code != "card_removed" {
		t.Fatalf("result %+v", res.Error)
	}
}

func waitState(t *testing.T, snaps <-chan flow.Snapshot, want flow.State) flow.Snapshot {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-snaps:
			if s.State == want {
				return s
			}
		case <-timeout:
			t.Fatalf("state %s not reached", want)
		}
	}
}

func TestBindingMismatchRefusesToPrint(t *testing.T) {
	tests := []struct {
		name   string
		answer func(*flowtest.Center)
		reason protocol.Code
	}{
		{"someone else's name", func(c *flowtest.Center) { c.AnswerWithHolder("試験　太郎") }, protocol.CodeHolderMismatch},
		// hanako's card says 2 (female): a certificate saying 1 is refused,
		// and reported apart from a wrong person.
		{"other sex", func(c *flowtest.Center) { c.AnswerWithSex("1") }, protocol.CodeHolderSexMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, flow.Timeouts{})
			tt.answer(r.center)
			res, _ := r.play(t, "hanako", headless.Resident{})
			if res.Printed || res.Error == nil || res.Error.Code != "binding_mismatch" {
				t.Fatalf("result %+v", res.Error)
			}
			if len(r.printer.Jobs()) != 0 || len(r.pay.Ledger()) != 0 {
				t.Fatal("printed or charged a certificate for someone else")
			}
			if o := r.center.LastOutcome(); o.Outcome != protocol.OutcomeRefused || o.Reason != tt.reason {
				t.Fatalf("refusal not reported as %s: %+v", tt.reason, o)
			}
		})
	}
}

func TestCenterRefusal(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	r.center.Refuse(protocol.CodeNoRecord)
	res, _ := r.play(t, "hanako", headless.Resident{})
	if res.Error == nil || res.Error.Code != string(protocol.CodeNoRecord) || res.Error.Ja == "" {
		t.Fatalf("result %+v", res.Error)
	}
}

func TestPaperOutThenRetry(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	r.printer.PaperOutNext(1)
	res, _ := r.play(t, "hanako", headless.Resident{RetryPrint: true})
	if err := res.Must(); err != nil {
		t.Fatal(err)
	}
	for id, e := range r.pay.Ledger() {
		if e.Status != payment.Captured || e.Captures != 1 {
			t.Fatalf("request %s payment %+v", id, e)
		}
	}
	if !contains(res.States, flow.StatePrintFailed) {
		t.Fatal("print failure not shown")
	}
}

func TestPrintFailsTwiceNoCharge(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	r.printer.PaperOutNext(2)
	res, _ := r.play(t, "hanako", headless.Resident{RetryPrint: true})
	if res.Printed || res.Error == nil || res.Error.Code != string(protocol.CodePrinterPaperOut) {
		t.Fatalf("result %+v", res.Error)
	}
	if r.pay.CapturedYen() != 0 {
		t.Fatal("charged for a failed print")
	}
	if o := r.center.LastOutcome(); o.Outcome != protocol.OutcomeFailed || o.Reason != protocol.CodePrinterPaperOut {
		t.Fatalf("outcome %+v", o)
	}
}

func TestCancelAtPreviewReportsCancelled(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	res, _ := r.play(t, "hanako", headless.Resident{CancelAt: flow.StatePreview})
	if res.Printed {
		t.Fatal("printed after cancel")
	}
	if o := r.center.LastOutcome(); o.Outcome != protocol.OutcomeCancelled {
		t.Fatalf("outcome %+v", o)
	}
}

func TestInactivityReturnsToIdle(t *testing.T) {
	r := newRig(t, flow.Timeouts{Input: 150 * time.Millisecond})
	card, _, _ := flowtest.Cards(t).Card("hanako", virtualcard.Options{})
	snaps, cancel := r.kiosk.Subscribe()
	defer cancel()
	r.slot.Insert(card)
	s := waitState(t, snaps, flow.StatePIN)
	if s.Deadline.IsZero() {
		t.Fatal("PIN screen without a deadline")
	}
	// Nobody types; the session times out, shows why, and holds until the card is taken.
	e := waitState(t, snaps, flow.StateError)
	r.slot.Remove()
	if e.Error == nil {
		t.Fatal("no message on time-out")
	}
	waitState(t, snaps, flow.StateIdle)
	if !r.kiosk.Wiped() {
		t.Fatal("not wiped after time-out")
	}
}

func TestCardLeftOnReaderEscalates(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	card, resident, _ := flowtest.Cards(t).Card("hanako", virtualcard.Options{})
	snaps, cancel := r.kiosk.Subscribe()
	defer cancel()
	r.slot.Insert(card)
	waitState(t, snaps, flow.StatePIN)
	r.kiosk.Input(flow.Input{Type: flow.InputPIN, PIN: []byte(resident.PIN)})
	var last flow.Snapshot
	for last.Reminder < 3 {
		last = waitState(t, snaps, flow.StateRemoveCard)
	}
	// The flow does not move on while the card is on the reader.
	if s := r.kiosk.Snapshot(); s.State != flow.StateRemoveCard {
		t.Fatalf("moved on to %s with the card still on the reader", s.State)
	}
	r.slot.Remove()
	waitState(t, snaps, flow.StateMunicipality)
	r.kiosk.Input(flow.Input{Type: flow.InputCancel})
	waitState(t, snaps, flow.StateIdle)
}

func TestForeignCard(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	res, _ := r.playCard(t, virtualcard.NewForeign(), headless.Resident{PIN: "1234"})
	if res.Error == nil || res.Error.Code != "not_my_number_card" {
		t.Fatalf("result %+v", res.Error)
	}
}

func subsequence(want, got []flow.State) bool {
	i := 0
	for _, s := range got {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

func contains(states []flow.State, s flow.State) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

// TestCounterOnly: a resident the municipality serves at its counter (a
// former name on the card, a counter-only flag) sees one error screen that
// names the municipality's counter, whether the refusal comes at the check
// or, from a center without check, at the issue; nothing is charged or
// printed.
func TestCounterOnly(t *testing.T) {
	want := &flow.Counter{Ja: "旭川市役所 市民課（総合庁舎1階）", En: "Asahikawa City Hall, Citizens Division (1st floor)"}
	for _, tt := range []struct {
		name, id string
		noCheck  bool
		refuse   protocol.Code
		code     protocol.Code
		counter  *flow.Counter
	}{
		{"former name on the card, at check", "saburo", false, "", protocol.CodeCounterOnly, want},
		{"counter-only flag, at check", "shiro", false, "", protocol.CodeCounterOnly, want},
		{"former name on the card, at issue", "saburo", true, "", protocol.CodeCounterOnly, want},
		{"counter-only flag, at issue", "shiro", true, "", protocol.CodeCounterOnly, want},
		{"another refusal names no counter", "hanako", false, protocol.CodeHolderMismatch, protocol.CodeHolderMismatch, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, flow.Timeouts{})
			if tt.noCheck {
				r.center.WithoutCheck()
			}
			if tt.refuse != "" {
				r.center.Refuse(tt.refuse)
			}
			res, _ := r.play(t, tt.id, headless.Resident{})
			if res.Printed || res.Error == nil || res.Error.Code != string(tt.code) {
				t.Fatalf("result %+v, want %s", res.Error, tt.code)
			}
			if got := res.ErrorScreen.Counter; !reflect.DeepEqual(got, tt.counter) {
				t.Errorf("error screen names counter %+v, want %+v", got, tt.counter)
			}
			if len(r.printer.Jobs()) != 0 || len(r.pay.Ledger()) != 0 {
				t.Fatal("printed or charged a resident sent to the counter")
			}
			if slices.Contains(res.States, flow.StatePayment) {
				t.Errorf("states %v reach payment", res.States)
			}
		})
	}
}
