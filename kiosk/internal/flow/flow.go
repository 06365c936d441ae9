// Package flow is the kiosk's session state machine: one resident, from
// placing the card to taking the certificate, independent of how the screen
// is drawn. docs/KIOSK.md has the diagram.
//
//	idle → card-check → pin → reading → remove-card → municipality →
//	checking → kind → copies → requesting → preview → payment → printing →
//	take-certificate → idle
//
// Two refusals can be put right in the same session, with the card data
// read once and kept only until the certificate arrives: no record in the
// municipality chosen (no_record) takes the resident back to the
// municipality screen with a notice, and no passport data on record
// (passport_required) offers the domestic certificate at one touch. Where
// the center announces protocol.FeatureCheck the flow asks it right after
// the municipality is chosen (checking), so both are known before kind and
// copies; otherwise they come back from the issue request and lead to the
// same screens.
//
// Any state can end in error (a message in Japanese and English, then back
// to idle), and every state has a deadline: inactivity wipes the session
// and returns to idle. Pulling the card out while it is still needed
// aborts; cancel aborts from every state that waits for the resident.
//
// The UI (touch screen, integrator API or a scripted resident in headless
// mode) watches Snapshots and sends Inputs. It never sees the PIN after it
// is sent, and Snapshots carry personal data only while a session shows it
// (the preview); the idle snapshot carries none.
//
// The end-to-end binding of the card in the reader to the paper printed is
// checked here before any payment: the response must answer this session's
// request ID and the digest of the card files read in this session, and
// every certificate's holder must be the card's holder by the rule the
// center applies too (pkg/holder: name, birth date, and sex where both
// know it). Otherwise the kiosk refuses to print and reports the refusal.
package flow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// State names a screen of the session.
type State string

// States, in the order a successful session passes them.
const (
	StateIdle            State = "idle"             // place your card
	StateCardCheck       State = "card-check"       // checking the card
	StatePIN             State = "pin"              // enter the 4-digit PIN (tries left shown)
	StateReading         State = "reading"          // reading and verifying the card
	StateRemoveCard      State = "remove-card"      // take your card; the flow waits until it is off the reader
	StateMunicipality    State = "municipality"     // where were you registered when vaccinated?
	StateChecking        State = "checking"         // asking the center whether that municipality holds the record
	StateKind            State = "kind"             // domestic or overseas use
	StateCopies          State = "copies"           // number of copies
	StateRequesting      State = "requesting"       // asking the center
	StatePreview         State = "preview"          // check the content, fee
	StatePayment         State = "payment"          // pay at the store terminal
	StatePrinting        State = "printing"         // printing
	StatePrintFailed     State = "print-failed"     // printing failed; no charge; retry once?
	StateTakeCertificate State = "take-certificate" // take your certificate (repeats until stop)
	StateError           State = "error"            // what went wrong and what to do
)

// InputType is what the resident (or the terminal) did.
type InputType string

// Inputs.
const (
	InputPIN          InputType = "pin"          // PIN digits entered
	InputMunicipality InputType = "municipality" // municipality chosen
	InputKind         InputType = "kind"         // kind chosen
	InputCopies       InputType = "copies"       // copies chosen
	InputConfirm      InputType = "confirm"      // preview accepted / error acknowledged
	InputRetry        InputType = "retry"        // retry printing
	InputCancel       InputType = "cancel"       // stop the session
	InputStop         InputType = "stop"         // stop the take-your-certificate reminder
	InputBack         InputType = "back"         // previous choice screen
)

// Input is one action. PIN is wiped by the flow once used.
type Input struct {
	Type         InputType        `json:"type"`
	PIN          []byte           `json:"-"`
	Municipality string           `json:"municipality,omitempty"`
	Kind         certificate.Kind `json:"kind,omitempty"`
	Copies       int              `json:"copies,omitempty"`
}

// Message is a bilingual message with a stable code.
type Message struct {
	Code string `json:"code"`
	Ja   string `json:"ja"`
	En   string `json:"en"`
}

// Snapshot is what the screen shows now.
type Snapshot struct {
	Session string `json:"session,omitempty"` // random session ID, for logs; never personal
	State   State  `json:"state"`
	Seq     uint64 `json:"seq"`
	// Ready is true on the idle screen once the kiosk is waiting for a
	// card. The idle snapshot that closes a session is not yet ready: a
	// card placed then is taken for one left behind.
	Ready    bool      `json:"ready,omitempty"`
	Deadline time.Time `json:"deadline,omitzero"`

	TriesLeft int  `json:"triesLeft,omitempty"`
	LastTry   bool `json:"lastTry,omitempty"`
	// WrongPIN is true after a wrong entry, so the screen can say so.
	WrongPIN bool `json:"wrongPin,omitempty"`

	// Municipalities (participating) and NotParticipating are sent on the
	// municipality screen only: the national list is large.
	Municipalities   []protocol.Municipality `json:"municipalities,omitempty"`
	NotParticipating []protocol.Municipality `json:"notParticipating,omitempty"`
	Kinds            []certificate.Kind      `json:"kinds,omitempty"`
	// RefusedKinds are kinds the screen shows but this resident cannot
	// have, with the reason (passport_required for overseas).
	RefusedKinds map[certificate.Kind]*Message `json:"refusedKinds,omitempty"`
	// Notice says why the resident is back on this screen (no_record on
	// the municipality screen, passport_required on the kind screen).
	Notice        *Message `json:"notice,omitempty"`
	MaxCopies     int      `json:"maxCopies,omitempty"`
	FeePerCopyYen int      `json:"feePerCopyYen,omitempty"`

	Municipality string           `json:"municipality,omitempty"`
	Kind         certificate.Kind `json:"kind,omitempty"`
	Copies       int              `json:"copies,omitempty"`
	FeeYen       int              `json:"feeYen,omitempty"`

	// Preview holds the certificates to check (personal data; preview only).
	Preview []certificate.Certificate `json:"preview,omitempty"`

	// Reminder counts repeated reminders (remove card, take certificate),
	// so the screen and voice can escalate.
	Reminder int `json:"reminder,omitempty"`

	// TakeCard is true on an error screen that holds until the card is
	// taken off the reader (an error while the card was needed), so the
	// screen asks for the card rather than for an acknowledgement.
	TakeCard bool `json:"takeCard,omitempty"`

	CanRetry bool     `json:"canRetry,omitempty"`
	Error    *Message `json:"error,omitempty"`
	// Counter names the municipal counter to apply at, on the
	// counter_only error screen, when the municipality gave one. It is
	// the same for every resident the municipality sends away, whatever
	// the reason (the kiosk never learns it).
	Counter *Counter `json:"counter,omitempty"`
}

// Counter is a municipal counter's name in both languages.
type Counter struct {
	Ja string `json:"ja"`
	En string `json:"en"`
}

// counterOf returns the counter hello names for municipality code, or nil.
func counterOf(hello protocol.Hello, code string) *Counter {
	for _, m := range hello.Municipalities {
		if m.Code == code && m.CounterJa != "" {
			return &Counter{Ja: m.CounterJa, En: m.CounterEn}
		}
	}
	return nil
}

// Center is the issuance center as the flow uses it (centerclient.Client).
type Center interface {
	Hello() (protocol.Hello, bool)
	Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error)
	ReportOutcome(ctx context.Context, o protocol.Outcome) error
}

// Checker is a Center that can also ask whether a municipality holds the
// card's record before kind and copies are chosen (centerclient.Client).
// The flow uses it when the center's Hello announces protocol.FeatureCheck.
// A refusal comes back as a *protocol.Error.
type Checker interface {
	Check(ctx context.Context, req protocol.Check) (*protocol.Checked, error)
}

// Renderer makes the PDF (certpdf.Renderer).
type Renderer interface {
	Render(w io.Writer, certs ...*certificate.Certificate) error
}

// Printer prints a PDF. name identifies the job without personal data.
type Printer interface {
	Print(ctx context.Context, name string, pdf []byte, copies int) error
}

// Payment is the store terminal's cash register. The kiosk authorises the
// fee before printing, captures it only when the paper came out, and voids
// it otherwise: a resident is never charged for a failed print.
type Payment interface {
	Authorize(ctx context.Context, requestID string, amountYen int) error
	Capture(ctx context.Context, requestID string) error
	Void(ctx context.Context, requestID string) error
}

// PrinterErrorCode maps a print failure to the protocol's reason code
// (paper out, jam, other), so the resident's message says what happened.
type PrinterErrorCode func(error) protocol.Code

// Timeouts bound each state.
type Timeouts struct {
	Input         time.Duration // PIN and choices; default 60 s
	Preview       time.Duration // default 120 s
	Payment       time.Duration // default 180 s
	Request       time.Duration // center answer, retries included; default 30 s
	Print         time.Duration // default 120 s
	Error         time.Duration // error screen before returning to idle; default 20 s
	Reminder      time.Duration // interval between reminders; default 5 s
	TakeCert      time.Duration // reminders stop on their own after this; default 3 min
	CardOperation time.Duration // one card transaction (PIN verify, read); default 15 s
}

func (t *Timeouts) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&t.Input, 60*time.Second)
	set(&t.Preview, 120*time.Second)
	set(&t.Payment, 180*time.Second)
	set(&t.Request, 30*time.Second)
	set(&t.Print, 120*time.Second)
	set(&t.Error, 20*time.Second)
	set(&t.Reminder, 5*time.Second)
	set(&t.TakeCert, 3*time.Minute)
	set(&t.CardOperation, 15*time.Second)
}

// Config wires a Kiosk.
type Config struct {
	Reader    cardreader.Reader
	Verifier  *carddata.Verifier // local fast rejection; the center verifies again
	Center    Center
	Renderer  Renderer
	Printer   Printer
	Payment   Payment
	PrintCode PrinterErrorCode
	Timeouts  Timeouts
	Log       *slog.Logger
	Now       func() time.Time
}

// Kiosk runs sessions one after another.
type Kiosk struct {
	cfg    Config
	inputs chan Input

	mu   sync.Mutex
	snap Snapshot
	subs map[chan Snapshot]struct{}
	sess *session // the live session, for tests that check the wipe
}

// New returns a Kiosk.
func New(cfg Config) (*Kiosk, error) {
	if cfg.Reader == nil || cfg.Center == nil || cfg.Renderer == nil || cfg.Printer == nil || cfg.Payment == nil || cfg.Verifier == nil {
		return nil, errors.New("flow: reader, verifier, center, renderer, printer and payment are required")
	}
	cfg.Timeouts.defaults()
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PrintCode == nil {
		cfg.PrintCode = func(error) protocol.Code { return protocol.CodePrinterFailed }
	}
	k := &Kiosk{cfg: cfg, inputs: make(chan Input, 8), subs: map[chan Snapshot]struct{}{}}
	k.snap = Snapshot{State: StateIdle}
	return k, nil
}

// Input delivers a resident's action. Inputs that do not fit the current
// state are ignored (and their PIN wiped).
func (k *Kiosk) Input(in Input) {
	select {
	case k.inputs <- in:
	default:
		clear(in.PIN) // the flow is not keeping up; drop rather than queue a PIN
	}
}

// Snapshot returns what the screen shows now.
func (k *Kiosk) Snapshot() Snapshot {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.snap
}

// Subscribe returns a channel of snapshots (the latest first) and a cancel
// function. Slow subscribers miss intermediate snapshots, never the latest.
func (k *Kiosk) Subscribe() (<-chan Snapshot, func()) {
	ch := make(chan Snapshot, 1)
	k.mu.Lock()
	k.subs[ch] = struct{}{}
	ch <- k.snap
	k.mu.Unlock()
	return ch, func() {
		k.mu.Lock()
		delete(k.subs, ch)
		k.mu.Unlock()
	}
}

func (k *Kiosk) publish(s Snapshot) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s.Seq = k.snap.Seq + 1
	k.snap = s
	for ch := range k.subs {
		select {
		case <-ch: // drop the stale one
		default:
		}
		ch <- s
	}
}

// Run runs sessions until ctx ends.
func (k *Kiosk) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		k.runSession(ctx)
	}
	return ctx.Err()
}

func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errAbort ends a session early; the reason is already on screen or logged.
var (
	errTimeout     = errors.New("flow: resident inactive")
	errCancelled   = errors.New("flow: cancelled by the resident")
	errCardRemoved = errors.New("flow: card removed")
)

// msg builds a Message from a protocol code.
func msg(code protocol.Code) *Message {
	t := code.Text()
	return &Message{Code: string(code), Ja: t.Ja, En: t.En}
}

// Kiosk-side messages that are not protocol codes.
var (
	msgNotMyNumberCard = &Message{"not_my_number_card", "マイナンバーカードを確認できませんでした。カードの向きを確認して置き直してください。", "This does not look like a My Number card. Check the card and place it again."}
	msgPINBlocked      = &Message{"pin_blocked", "暗証番号がロックされています。お住まいの市区町村の窓口で再設定してください。", "Your PIN is locked. Please have it reset at your municipal office."}
	msgCardRemoved     = &Message{"card_removed", "カードが取り外されました。最初からやり直してください。", "The card was removed. Please start again."}
	msgCardRead        = &Message{"card_read_failed", "カードを読み取れませんでした。カードを置き直してください。", "The card could not be read. Please place it again."}
	msgCardInvalid     = &Message{"card_invalid", "マイナンバーカードの情報を確認できませんでした。市区町村の窓口にお問い合わせください。", "The information on your My Number card could not be verified. Please contact your municipal office."}
	msgCenterDown      = &Message{"center_unavailable", "ただいま発行サービスに接続できません。しばらくしてからお試しください。", "The issuance service cannot be reached. Please try again shortly."}
	msgBinding         = &Message{"binding_mismatch", "証明書を確認できなかったため印刷を中止しました。料金はかかりません。係員にお知らせください。", "Printing was stopped because the certificate could not be checked. You have not been charged. Please tell the store staff."}
	msgPaymentFailed   = &Message{"payment_failed", "お支払いが完了しませんでした。料金はかかりません。", "The payment did not go through. You have not been charged."}
	msgRenderFailed    = &Message{"render_failed", "証明書を作成できませんでした。料金はかかりません。市区町村の窓口にお問い合わせください。", "The certificate could not be prepared. You have not been charged. Please contact your municipal office."}
	msgTimeout         = &Message{"timeout", "一定時間操作がなかったため終了しました。", "The session ended because there was no input for a while."}
	msgCancelled       = &Message{"cancelled", "取り消しました。", "Cancelled."}
	msgDomesticOffer   = &Message{"domestic_offer", "旅券（パスポート）の情報が登録されていないため、海外用の証明書は発行できません。日本国内用の証明書は発行できます。", "Your passport details are not on record, so the overseas certificate cannot be issued. The domestic certificate can be issued here."}
)
