package flow_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/certpdf"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/payment"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

var (
	cardsOnce sync.Once
	cards     *virtualcard.DemoSet
	renderer  *certpdf.Renderer
)

func setup(t *testing.T) {
	t.Helper()
	cardsOnce.Do(func() {
		a, err := virtualcard.GenerateAuthority("JLIS-FLOW-TEST")
		if err != nil {
			panic(err)
		}
		if cards, err = virtualcard.NewDemoSet(a); err != nil {
			panic(err)
		}
		if renderer, err = certpdf.NewRenderer(); err != nil {
			panic(err)
		}
	})
}

// fakeCenter verifies the card like the center and answers with
// certificates built from the demo data. Its SHC and VDS-NC payloads are
// placeholders: the real center's signatures are tested end to end.
type fakeCenter struct {
	verifier *carddata.Verifier
	data     *demo.Data

	mu        sync.Mutex
	refuse    protocol.Code
	otherName string // answer with this holder name (binding test)
	dropFirst int    // fail this many Issue calls as if the connection dropped
	issued    []protocol.Issue
	outcomes  []protocol.Outcome
}

func (f *fakeCenter) Hello() (protocol.Hello, bool) {
	return protocol.Hello{
		ProtocolVersion: 1, KioskID: "K-TEST", Time: time.Now().Format(time.RFC3339),
		Municipalities: []protocol.Municipality{{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City"}},
		FeePerCopyYen:  120, Kinds: []string{"domestic", "overseas"}, MaxCopies: 5, HeartbeatSeconds: 15,
	}, true
}

func (f *fakeCenter) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issued = append(f.issued, req)
	if f.dropFirst > 0 {
		f.dropFirst--
		return nil, errors.New("connection dropped")
	}
	if f.refuse != "" {
		return nil, protocol.NewError(req.RequestID, f.refuse, "")
	}
	d, err := f.verifier.Verify(req.Card)
	if err != nil {
		return nil, protocol.NewError(req.RequestID, protocol.CodeCardInvalid, "")
	}
	var r demo.Resident
	for _, x := range f.data.Residents {
		if x.MyNumber == d.MyNumber {
			r = x
		}
	}
	name := r.Name
	if f.otherName != "" {
		name = f.otherName
	}
	c := certificate.Certificate{
		ID: fmt.Sprintf("TEST%08d", len(f.issued)), Kind: certificate.Domestic, IssueDate: "2026-11-23",
		Issuer: certificate.Issuer{MunicipalityCode: req.Municipality, NameJa: "旭川市", NameEn: "Asahikawa City", AuthorityJa: "旭川市長", AuthorityEn: "Mayor of Asahikawa City"},
		Holder: certificate.Holder{Name: name, FamilyName: strings.Fields(name)[0], BirthDate: r.BirthDate, Sex: r.Sex},
		SHC:    "shc:/" + strings.Repeat("56", 40),
	}
	for _, d := range r.Records[0].Doses {
		c.Doses = append(c.Doses, certificate.Dose{Number: d.Number, Date: d.Date, Product: d.Product, ProductName: "Comirnaty", ManufacturerJa: "ファイザー", ManufacturerEn: "Pfizer", VaccineTypeJa: "mRNAワクチン", VaccineTypeEn: "mRNA vaccine", Lot: d.Lot, Country: "JPN"})
	}
	return &protocol.CertificateResponse{
		RequestID: req.RequestID, CardDigest: protocol.CardDigest(req.Card),
		Certificates: []certificate.Certificate{c}, Copies: req.Copies, FeeYen: 120 * req.Copies,
	}, nil
}

func (f *fakeCenter) ReportOutcome(ctx context.Context, o protocol.Outcome) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outcomes = append(f.outcomes, o)
	return nil
}

func (f *fakeCenter) lastOutcome() protocol.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.outcomes) == 0 {
		return protocol.Outcome{}
	}
	return f.outcomes[len(f.outcomes)-1]
}

// fakePrinter records jobs and fails as told.
type fakePrinter struct {
	mu     sync.Mutex
	fail   int
	jobs   [][]byte
	copies []int
	names  []string
}

var errPaperOut = errors.New("paper out")

func (p *fakePrinter) Print(ctx context.Context, name string, pdf []byte, copies int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		return errPaperOut
	}
	p.jobs = append(p.jobs, bytes.Clone(pdf))
	p.copies = append(p.copies, copies)
	p.names = append(p.names, name)
	return nil
}

type slotCard struct {
	slot *virtualcard.Slot
	card *virtualcard.Card
}

func (c slotCard) Insert() error { c.slot.Insert(c.card); return nil }
func (c slotCard) Remove() error { c.slot.Remove(); return nil }

type rig struct {
	kiosk   *flow.Kiosk
	center  *fakeCenter
	printer *fakePrinter
	pay     *payment.Simulator
	slot    *virtualcard.Slot
	logs    *bytes.Buffer
}

func newRig(t *testing.T, timeouts flow.Timeouts) *rig {
	t.Helper()
	setup(t)
	r := &rig{
		center:  &fakeCenter{verifier: cards.Verifier, data: cards.Residents},
		printer: &fakePrinter{},
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
		Reader: r.slot, Verifier: cards.Verifier, Center: r.center, Renderer: renderer,
		Printer: r.printer, Payment: r.pay, Timeouts: timeouts,
		PrintCode: func(err error) protocol.Code {
			if errors.Is(err, errPaperOut) {
				return protocol.CodePrinterPaperOut
			}
			return protocol.CodePrinterFailed
		},
		Log: slog.New(slog.NewJSONHandler(&lockedWriter{w: r.logs}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.kiosk.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Wait until the flow is ready for a card: a card placed before that
	// would be taken for one left on the reader by a previous resident.
	for !r.kiosk.Snapshot().Ready {
		time.Sleep(5 * time.Millisecond)
	}
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
	card, resident, err := cards.Card(id, virtualcard.Options{ExtendedLength: true})
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
	out, err := headless.Run(ctx, r.kiosk, slotCard{r.slot, card}, res)
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
	if len(r.printer.jobs) != 1 || !bytes.HasPrefix(r.printer.jobs[0], []byte("%PDF")) || r.printer.copies[0] != 2 {
		t.Fatalf("printer got %d jobs", len(r.printer.jobs))
	}
	if !strings.HasPrefix(r.printer.names[0], "kioskcert-") || strings.Contains(r.printer.names[0], "hanako") {
		t.Fatal("job name must be the request ID only")
	}
	if o := r.center.lastOutcome(); o.Outcome != protocol.OutcomePrinted || o.Copies != 2 {
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
	out, err := headless.Run(ctx, r.kiosk, slotCard{r.slot, card}, res)
	if err != nil {
		t.Fatal(err)
	}
	return out, card
}

func TestCardPulledDuringPIN(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	card, _, _ := cards.Card("an", virtualcard.Options{})
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
	card, resident, _ := cards.Card("takasaki", virtualcard.Options{})
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
	r := newRig(t, flow.Timeouts{})
	r.center.otherName = "試験　太郎"
	res, _ := r.play(t, "hanako", headless.Resident{})
	if res.Printed || res.Error == nil || res.Error.Code != "binding_mismatch" {
		t.Fatalf("result %+v", res.Error)
	}
	if len(r.printer.jobs) != 0 || len(r.pay.Ledger()) != 0 {
		t.Fatal("printed or charged a certificate for someone else")
	}
	if o := r.center.lastOutcome(); o.Outcome != protocol.OutcomeRefused || o.Reason != protocol.CodeHolderMismatch {
		t.Fatalf("refusal not reported: %+v", o)
	}
}

func TestCenterRefusal(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	r.center.refuse = protocol.CodeNoRecord
	res, _ := r.play(t, "hanako", headless.Resident{})
	if res.Error == nil || res.Error.Code != string(protocol.CodeNoRecord) || res.Error.Ja == "" {
		t.Fatalf("result %+v", res.Error)
	}
}

func TestPaperOutThenRetry(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	r.printer.fail = 1
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
	r.printer.fail = 2
	res, _ := r.play(t, "hanako", headless.Resident{RetryPrint: true})
	if res.Printed || res.Error == nil || res.Error.Code != string(protocol.CodePrinterPaperOut) {
		t.Fatalf("result %+v", res.Error)
	}
	if r.pay.CapturedYen() != 0 {
		t.Fatal("charged for a failed print")
	}
	if o := r.center.lastOutcome(); o.Outcome != protocol.OutcomeFailed || o.Reason != protocol.CodePrinterPaperOut {
		t.Fatalf("outcome %+v", o)
	}
}

func TestCancelAtPreviewReportsCancelled(t *testing.T) {
	r := newRig(t, flow.Timeouts{})
	res, _ := r.play(t, "hanako", headless.Resident{CancelAt: flow.StatePreview})
	if res.Printed {
		t.Fatal("printed after cancel")
	}
	if o := r.center.lastOutcome(); o.Outcome != protocol.OutcomeCancelled {
		t.Fatalf("outcome %+v", o)
	}
}

func TestInactivityReturnsToIdle(t *testing.T) {
	r := newRig(t, flow.Timeouts{Input: 150 * time.Millisecond})
	card, _, _ := cards.Card("hanako", virtualcard.Options{})
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
	card, resident, _ := cards.Card("hanako", virtualcard.Options{})
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
