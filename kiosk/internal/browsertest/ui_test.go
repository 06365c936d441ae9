package browsertest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow/flowtest"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

func resident(t *testing.T, id string) demo.Resident {
	t.Helper()
	r, err := flowtest.Cards(t).Residents.Resident(id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// secretsOf lists what the screen showed of r that must be gone afterwards.
func secretsOf(r demo.Resident, certIDs ...string) personal {
	s := personal{r.Name, r.BirthDate}
	if r.PassportNumber != "" {
		s = append(s, r.PassportNumber)
	}
	for _, rec := range r.Records {
		for _, d := range rec.Doses {
			s = append(s, d.Lot)
		}
	}
	return append(s, certIDs...)
}

// pay approves (or declines) the payment once the terminal asks for it.
func (r *rig) pay(approve bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := r.sim.Payment.Pending(); ok {
			if err := r.sim.Payment.Decide(approve); err != nil {
				r.t.Fatal(err)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatal("the store terminal was never asked for the payment")
}

// insert places a demo card once the kiosk waits for one (a card placed
// while the last session closes is taken for one left behind).
func (r *rig) insert(id string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !r.kiosk.Snapshot().Ready {
		if time.Now().After(deadline) {
			r.t.Fatalf("the kiosk is not ready for a card (state %s)", r.kiosk.Snapshot().State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.sim.Insert(id); err != nil {
		r.t.Fatal(err)
	}
}

// TestHappyPathJapanese walks the whole session in Japanese, as a resident
// does, and photographs every screen on the way.
func TestHappyPathJapanese(t *testing.T) {
	r := newRig(t, "ja", rigOptions{})
	hanako := resident(t, "hanako")
	r.open("/")
	r.screen("idle", "idle", true)
	r.contains("idle", "マイナンバーカードを カードリーダーに置いてください")
	var lang string
	r.eval(`document.documentElement.lang`, &lang)
	if lang != "ja" {
		t.Errorf("page language %q, want ja by default", lang)
	}
	r.waitVoice("ja/idle")

	r.cardGate.hold(0)
	r.insert("hanako")
	r.held(r.cardGate, "card-check", "card-check", "カードを確認しています", "カードを動かさないでください")
	r.screen("pin", "pin", true)
	r.contains("pin", "暗証番号（数字4けた）を入力してください", "のこり 3回")
	var furigana int
	r.eval(`document.querySelectorAll('ruby rt').length`, &furigana)
	if furigana == 0 {
		t.Error("the PIN screen shows key terms without furigana")
	}
	r.waitVoice("ja/pin")
	r.cardGate.hold(insReadBinary)
	r.typePIN(hanako.PIN)
	r.held(r.cardGate, "reading", "reading", "カードを読み取っています", "カードを取らないでください")

	// The card has been read: the screen holds until it is taken, and the
	// reminder escalates rather than timing out.
	r.screen("remove-card", "remove-card", false)
	r.waitFor("the escalated take-your-card reminder", `document.body.dataset.level === '2'`)
	r.shot("remove-card-reminder")
	r.contains("remove-card", "カードが残っています")
	r.waitVoice("ja/remove-card-again")
	if st := r.kiosk.Snapshot().State; st != flow.StateRemoveCard {
		t.Fatalf("with the card on the reader the kiosk went on to %s", st)
	}
	r.checkA11y("remove-card (escalated)", false)
	r.sim.Remove()

	r.screen("municipality", "municipality", true)
	r.contains("municipality", "北海道・東北", "北海道", "沖縄県")
	r.waitFor("the countdown", `!document.getElementById('countdown').hidden && /のこり \d:\d\d/.test(document.getElementById('countdown').textContent)`)
	r.tap("pref-01")
	r.screen("municipality", "municipality-hokkaido", true)
	r.contains("municipality", "北海道", "札幌市にお住まいの方は、市か区を選んでください")
	r.centerGate.hold(0)
	r.chooseMunicipality("012041")
	r.held(r.centerGate, "checking", "checking", "接種の記録を確認しています")
	r.screen("kind", "kind", true)
	r.contains("kind", "日本国内用", "海外用")
	r.tap("kind-domestic")
	r.screen("copies", "copies", true)
	r.contains("copies", "手数料は1部につき 120円です", "2部", "合計 240円")
	r.centerGate.hold(0)
	r.tap("copies-2")
	r.held(r.centerGate, "requesting", "requesting", "証明書を用意しています")

	r.screen("preview", "preview", true)
	r.contains("preview", hanako.Name, hanako.BirthDate, "旭川市", "日本国内用", "1回目", "2回目",
		hanako.Records[0].Doses[0].Lot, "Comirnaty", "ファイザー", "240円", "この内容で印刷する（240円）")
	// The heap check below must be able to see personal data: here, on
	// the preview, the name is in the page's heap.
	if heap := r.heapStrings(); !slices.ContainsFunc(heap, func(s string) bool { return strings.Contains(s, hanako.Name) }) {
		t.Fatal("the heap snapshot does not show the previewed name; the after-session heap check would prove nothing")
	}
	r.tap("confirm")
	r.screen("payment", "payment", false)
	r.contains("payment", "お支払い 240円")
	r.waitVoice("ja/payment")
	r.printGate.hold(0)
	r.pay(true)
	r.held(r.printGate, "printing", "printing", "印刷しています")

	r.screen("take-certificate", "take-certificate", true)
	r.contains("take-certificate", "証明書をお取りください", "マイナンバーカードのお取り忘れにご注意ください")
	_, before := r.voice()
	r.waitFor("the escalated take-your-certificate reminder", `document.body.dataset.level === '2'`)
	r.shot("take-certificate-reminder")
	r.waitVoice("ja/take-certificate-again")
	// The reminder repeats every 400 ms here: wait for two more prompts
	// rather than assume they have been started already.
	r.waitFor("the take-your-certificate prompt repeated", fmt.Sprintf(`+(document.getElementById('voice').dataset.count || 0) >= %d`, before+2))
	if st := r.kiosk.Snapshot().State; st != flow.StateTakeCertificate {
		t.Fatalf("the reminder stopped by itself: kiosk at %s", st)
	}
	r.tap("stop")

	r.checkNoPersonalData(append(secretsOf(hanako, "FD00000001"), `"pin":"`+hanako.PIN+`"`), true)
	r.shot("idle-after")
	if jobs := r.printer.Jobs(); len(jobs) != 1 || jobs[0].Copies != 2 {
		t.Errorf("printed %d jobs, want one of 2 copies", len(jobs))
	}
	if o := r.center.LastOutcome(); o.Outcome != protocol.OutcomePrinted {
		t.Errorf("outcome %+v, want printed", o)
	}
}

// TestHappyPathEnglish switches to English with one touch and walks the
// overseas certificate for the foreign demo resident; the next resident
// starts in Japanese again.
func TestHappyPathEnglish(t *testing.T) {
	r := newRig(t, "en", rigOptions{})
	an := resident(t, "an")
	r.open("/")
	r.tap("lang-en")
	r.waitFor("English", `document.documentElement.lang === 'en'`)
	r.screen("idle", "idle", true)
	r.contains("idle", "Place your My Number card on the card reader")
	r.waitVoice("en/idle")

	r.cardGate.hold(0)
	r.insert("an")
	r.held(r.cardGate, "card-check", "card-check")
	r.screen("pin", "pin", true)
	r.contains("pin", "Enter your PIN (4 digits)", "3 tries left")
	r.cardGate.hold(insReadBinary)
	r.typePIN(an.PIN)
	r.held(r.cardGate, "reading", "reading")
	r.screen("remove-card", "remove-card", false)
	r.contains("remove-card", "Please take your card")
	r.waitFor("the English take-your-card prompt", `(document.getElementById('voice').dataset.prompt || '').startsWith('en/remove-card')`)
	r.sim.Remove()
	r.screen("municipality", "municipality", true)
	r.contains("municipality", "Hokkaido & Tohoku", "Okinawa")
	r.tap("pref-01")
	r.screen("municipality", "municipality-hokkaido", false)
	r.contains("municipality", "Hokkaido", "If you live in Sapporo City, choose the city or your ward")
	r.chooseMunicipality("011002")
	r.screen("kind", "kind", true)
	r.contains("kind", "Domestic use", "Overseas use")
	r.tap("kind-overseas")
	r.screen("copies", "copies", true)
	r.contains("copies", "The fee is ¥120 per copy", "Total ¥120")
	r.centerGate.hold(0)
	r.tap("copies-1")
	r.held(r.centerGate, "requesting", "requesting")
	r.screen("preview", "preview", true)
	r.contains("preview", an.Name, an.RomanFamily+" "+an.RomanGiven, an.PassportNumber, an.Nationality, an.BirthDate,
		"Sapporo City", "Overseas use", "Dose 3", "Nuvaxovid", "Lot number", "¥120", "The domestic certificate is printed as well", "Print this (¥120)")
	r.tap("confirm")
	r.screen("payment", "payment", false)
	r.contains("payment", "Please pay at the store terminal", "Amount ¥120")
	r.printGate.hold(0)
	r.pay(true)
	r.held(r.printGate, "printing", "printing")
	r.screen("take-certificate", "take-certificate", true)
	r.contains("take-certificate", "Please take your certificate", "Do not forget your My Number card")
	r.waitFor("the English take-your-certificate prompt", `(document.getElementById('voice').dataset.prompt || '').startsWith('en/take-certificate')`)
	r.tap("stop")

	r.checkNoPersonalData(append(secretsOf(an, "FD00000001", "FO00000001"), `"pin":"`+an.PIN+`"`), true)
	r.eval(`document.documentElement.lang`, new(string))
	r.waitFor("Japanese again for the next resident", `document.documentElement.lang === 'ja'`)
	r.shot("idle-after")
}

// TestWrongPINAndLastTry types wrong PINs: the screen says so, shows the
// tries left, warns before the last try, and cancelling there keeps the
// last try (the kiosk never spends one) and waits for the card.
func TestWrongPINAndLastTry(t *testing.T) {
	r := newRig(t, "pin", rigOptions{})
	taro := resident(t, "taro")
	r.open("/")
	r.insert("taro")
	r.screen("pin", "pin", false)
	r.typePIN("0000")
	r.waitFor("the wrong-PIN message", `document.querySelector('.note.bad') !== null`)
	r.shot("pin-wrong")
	r.contains("pin", "暗証番号が違います", "のこり 2回")
	r.waitQueued("pin-wrong")
	r.typePIN("9999")
	r.waitFor("the last-try warning", `document.getElementById('last-try') !== null`)
	r.shot("pin-last-try")
	r.checkA11y("pin (last try)", true)
	r.contains("pin", "のこり 1回", "のこり1回です", "ロックされ")
	var role string
	r.eval(`document.getElementById('last-try').getAttribute('role')`, &role)
	if role != "alert" {
		t.Errorf("the last-try warning has role %q, want alert", role)
	}
	r.waitQueued("pin-last")

	r.tap("cancel")
	r.screen("error", "error-take-card", true)
	r.contains("error", "取り消しました", "お取りください")
	r.waitFor("the escalated take-your-card reminder", `document.body.dataset.level === '2'`)
	r.shot("error-take-card-reminder")
	r.waitVoice("ja/remove-card-again")
	if st := r.kiosk.Snapshot().State; st != flow.StateError {
		t.Fatalf("with the card on the reader the kiosk went on to %s", st)
	}
	if n := r.lastCard().TriesLeft(); n != 1 {
		t.Errorf("card has %d tries left, want 1: the kiosk must not spend a try", n)
	}
	r.sim.Remove()
	r.checkNoPersonalData(personal{taro.Name, `"pin":"` + taro.PIN + `"`}, false)
}

// TestTimeoutToIdle leaves a choice screen alone: the countdown warns, the
// session ends, says why, and the screen returns to the start.
func TestTimeoutToIdle(t *testing.T) {
	r := newRig(t, "timeout", rigOptions{timeouts: flow.Timeouts{Input: 8 * time.Second}})
	hanako := resident(t, "hanako")
	r.open("/")
	r.insert("hanako")
	r.waitState("pin")
	r.typePIN(hanako.PIN)
	r.waitState("remove-card")
	r.sim.Remove()
	r.waitState("municipality")
	r.waitFor("the countdown warning", `document.getElementById('countdown').classList.contains('warn')`)
	r.shot("municipality-countdown")
	r.contains("municipality", "まもなく最初の画面にもどります")
	r.waitQueued("timeout-soon")
	r.checkA11y("municipality (time-out warning)", false)
	// This screen passes by itself after 2 s: read it first.
	r.waitState("error")
	r.contains("error", "操作がなかったため終了しました")
	r.shot("error-timeout")
	r.checkNoPersonalData(personal{hanako.Name, hanako.BirthDate}, false)
	if o := r.kiosk.Snapshot(); o.State != flow.StateIdle {
		t.Errorf("kiosk at %s after the time-out, want idle", o.State)
	}
}

// TestPrintFailureAndDecline shows the print-failed screen (no charge,
// retry once) and a declined payment's error screen.
func TestPrintFailureAndDecline(t *testing.T) {
	r := newRig(t, "fail", rigOptions{})
	hanako := resident(t, "hanako")
	r.open("/")
	session := func(id, pin string) {
		r.insert(id)
		r.waitState("pin")
		r.typePIN(pin)
		r.waitState("remove-card")
		r.sim.Remove()
		r.waitState("municipality")
		r.chooseMunicipality("012041")
		r.waitState("kind")
		r.tap("kind-domestic")
		r.waitState("copies")
		r.tap("copies-1")
		r.waitState("preview")
		r.tap("confirm")
		r.waitState("payment")
	}
	if err := r.sim.Printer.FailNext(localapi.FaultPaperOut); err != nil {
		t.Fatal(err)
	}
	session("hanako", hanako.PIN)
	r.pay(true)
	r.screen("print-failed", "print-failed", true)
	r.contains("print-failed", "印刷できませんでした", "用紙がありません", "料金はかかりません", "もう一度印刷する")
	r.waitVoice("ja/print-failed")
	r.tap("retry")
	r.waitState("payment")
	r.pay(true)
	r.waitState("take-certificate")
	r.tap("stop")
	r.checkNoPersonalData(secretsOf(hanako, "FD00000001"), false)
	if got := r.sim.Payment.Ledger.CapturedYen(); got != 120 {
		t.Errorf("captured ¥%d, want ¥120 (the failed print must cost nothing)", got)
	}

	taro := resident(t, "taro")
	session("taro", taro.PIN)
	r.pay(false)
	r.screen("error", "error-payment-declined", true)
	r.contains("error", "お支払いが完了しませんでした", "料金はかかりません", "わかりました")
	r.tap("ack")
	r.checkNoPersonalData(secretsOf(taro, "FD00000002"), false)
	if got := r.sim.Payment.Ledger.CapturedYen(); got != 120 {
		t.Errorf("captured ¥%d after a declined payment, want ¥120", got)
	}
}

// TestSimulatorPanel drives the kiosk from the simulator's control panel:
// the screen in its frame follows the card placed and taken.
//
// At 1366 × 768 (a common laptop) every control of the panel is in view
// without scrolling, and the panel's "Kiosk state" follows the screen as
// it changes (the screen's event stream, not a poll).
func TestSimulatorPanel(t *testing.T) {
	r := newRig(t, "sim", rigOptions{})
	if err := chromedp.Do(r.tab, chromedp.EmulateViewport(1366, 768)); err != nil {
		t.Fatal(err)
	}
	r.open("/sim/")
	frameState := `document.getElementById('screen').contentDocument?.body?.dataset.state`
	r.waitFor("the kiosk screen in the panel", frameState+` === 'idle'`)
	r.waitFor("the card list", `document.querySelector('button[data-card="hanako"]') !== null`)
	r.waitFor("the payment and printer controls", `!document.getElementById('payment').hidden && !document.getElementById('printer').hidden`)
	var hidden []string
	r.eval(`(() => {
	  const panel = document.querySelector('.panel');
	  const out = [...panel.querySelectorAll('button, select, input, a[href]')].filter((e) => {
	    const b = e.getBoundingClientRect();
	    return b.bottom > innerHeight || b.right > innerWidth || b.top < 0;
	  }).map((e) => e.id || e.dataset.card || e.textContent.trim());
	  if (panel.scrollHeight > panel.clientHeight + 1) out.push('(the panel scrolls)');
	  return out;
	})()`, &hidden)
	if len(hidden) > 0 {
		t.Errorf("at 1366×768 these panel controls are out of view: %v", hidden)
	}
	r.shot("panel-1366x768")
	r.run("place hanako's card", chromedp.Tap(chromedp.CSS(`button[data-card="hanako"]`)))
	r.waitFor("the PIN screen in the panel", frameState+` === 'pin'`)
	// The panel's state follows the screen's own event stream (a poll
	// alone lags up to 400 ms).
	start := time.Now()
	r.waitFor("the panel's kiosk state", `document.getElementById('state').textContent === 'pin'`)
	t.Logf("the panel showed the PIN screen's state %v after the screen", time.Since(start))
	var source string
	r.eval(`document.getElementById('state').dataset.source || ''`, &source)
	if source != "stream" {
		t.Errorf("the panel's kiosk state comes from %q, want the event stream", source)
	}
	r.waitFor("the panel's reader status", `document.getElementById('inserted').textContent === 'hanako'`)
	r.shot("panel-pin")
	r.checkA11y("simulator panel", false)
	r.run("take the card", chromedp.Tap(chromedp.CSS(`#remove`)))
	r.waitFor("the card-removed error in the panel", frameState+` === 'error'`)
	r.waitFor("the panel's reader status", `document.getElementById('inserted').textContent === 'none'`)
	r.shot("panel-card-removed")
	ctx, cancel := context.WithTimeout(r.tab, 5*time.Second)
	defer cancel()
	errCode, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('screen').contentDocument.querySelector('h2').textContent`))
	if errCode == "" {
		t.Error("the framed screen shows no heading on the error")
	}
}
