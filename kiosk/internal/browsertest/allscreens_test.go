package browsertest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
)

// TestEveryScreenInBothLanguages walks every screen of the kiosk (and the
// variants a resident meets: a wrong PIN, the prefecture list and a
// prefecture's municipalities, the no-record notice, a print failure, the
// cancelled session's take-your-card error) in Japanese and in English. On
// each it saves a screenshot (every-<lang>-NN-<screen>.png), checks that
// the page speaks a voice prompt of that language whose file the agent
// serves, runs axe-core (WCAG 2.2 A/AA and best practices: no violation
// allowed), the contrast, touch-target and accessible-name checks, the
// Japanese typography checks, and that nothing scrolls.
//
// The offline screen (the agent unreachable) is not walked: it can have
// no voice, as the voice files come from the agent.
func TestEveryScreenInBothLanguages(t *testing.T) {
	for _, lang := range []string{"ja", "en"} {
		t.Run(lang, func(t *testing.T) {
			// Reminders that repeat late, so that each screen keeps its first
			// prompt while it is checked.
			r := newRig(t, "every-"+lang, rigOptions{timeouts: flow.Timeouts{Input: 5 * time.Minute, Reminder: time.Minute}})
			hanako := resident(t, "hanako")
			seen := map[string]bool{}
			visit := func(state, name string, prompts ...string) {
				t.Helper()
				r.waitState(state)
				seen[state] = true
				r.shot(name)
				label := fmt.Sprintf("%s (every screen: %s)", state, name)
				r.checkA11y(label, false)
				r.checkType(label)
				var scrolls bool
				r.eval(`(() => { const s = document.getElementById('screen'); return s.scrollHeight > s.clientHeight + 1; })()`, &scrolls)
				if scrolls {
					t.Errorf("%s: the content does not fit the screen (it scrolls)", name)
				}
				r.checkVoice(lang, name, prompts...)
			}
			r.open("/")
			if lang == "en" {
				r.tap("lang-en")
				r.waitFor("English", `document.documentElement.lang === 'en'`)
			}
			visit("idle", "idle", "idle")

			r.cardGate.hold(0)
			r.insert("hanako")
			visit("card-check", "card-check", "card-check")
			r.cardGate.release()
			visit("pin", "pin", "pin")
			r.typePIN("0000")
			r.waitFor("the wrong-PIN message", `document.querySelector('.note.bad') !== null`)
			visit("pin", "pin-wrong", "pin-wrong")
			r.cardGate.hold(insReadBinary)
			r.typePIN(hanako.PIN)
			visit("reading", "reading", "reading")
			r.cardGate.release()
			visit("remove-card", "remove-card", "remove-card")
			r.sim.Remove()

			visit("municipality", "municipality-prefectures", "municipality")
			r.tap("pref-01")
			visit("municipality", "municipality-hokkaido", "municipality")
			r.centerGate.hold(0)
			r.chooseMunicipality("011002") // hanako was registered in Asahikawa, not Sapporo
			visit("checking", "checking", "checking")
			r.centerGate.release()
			r.waitFor("the no-record notice", `document.querySelector('[data-id="notice"][data-code="no_record"]') !== null`)
			visit("municipality", "municipality-no-record", "error", "municipality")
			r.chooseMunicipality("012041")
			visit("kind", "kind", "kind")
			r.tap("kind-domestic")
			visit("copies", "copies", "copies")
			r.centerGate.hold(0)
			r.tap("copies-1")
			visit("requesting", "requesting", "requesting")
			r.centerGate.release()
			visit("preview", "preview", "preview")
			r.tap("confirm")
			visit("payment", "payment", "payment")
			if err := r.sim.Printer.FailNext(localapi.FaultPaperOut); err != nil {
				t.Fatal(err)
			}
			r.pay(true)
			visit("print-failed", "print-failed", "print-failed")
			r.tap("retry")
			r.waitState("payment")
			r.printGate.hold(0)
			r.pay(true)
			visit("printing", "printing", "printing")
			r.printGate.release()
			visit("take-certificate", "take-certificate", "take-certificate")
			r.tap("stop")
			r.waitState("idle")

			// A session cancelled with the card still on the reader.
			if lang == "en" {
				r.tap("lang-en")
				r.waitFor("English", `document.documentElement.lang === 'en'`)
			}
			r.insert("hanako")
			r.waitState("pin")
			r.tap("cancel")
			visit("error", "error-take-card", "error", "remove-card")
			r.sim.Remove()
			r.waitState("idle")

			// The agent restarts (an update, a crash): the page says the
			// kiosk is getting ready, in every language since nobody has
			// chosen one, and comes back by itself. No voice: the prompts
			// are the agent's to serve.
			r.stopAgent()
			r.waitState("offline")
			seen["offline"] = true
			r.waitFor("the offline notice in English too", `document.querySelector('[data-id="offline-en"][lang="en"]') !== null`)
			r.shot("offline")
			r.checkA11y("offline (every screen: offline)", false)
			r.checkType("offline (every screen: offline)")
			r.startAgent()
			r.waitState("idle")

			for _, st := range []flow.State{flow.StateIdle, flow.StateCardCheck, flow.StatePIN, flow.StateReading, flow.StateRemoveCard,
				flow.StateMunicipality, flow.StateChecking, flow.StateKind, flow.StateCopies, flow.StateRequesting, flow.StatePreview,
				flow.StatePayment, flow.StatePrinting, flow.StatePrintFailed, flow.StateTakeCertificate, flow.StateError, "offline"} {
				if !seen[string(st)] {
					t.Errorf("the walk never showed the %s screen", st)
				}
			}
		})
	}
}

// checkVoice checks that the page queued the voice prompts want for this
// screen, in lang, and that the agent serves each of them.
func (r *rig) checkVoice(lang, screen string, want ...string) {
	r.t.Helper()
	if len(want) == 0 {
		r.t.Errorf("%s screen: no voice prompt expected; every screen must speak", screen)
		return
	}
	r.waitFor(screen+" screen's voice prompts "+strings.Join(want, " "),
		fmt.Sprintf(`(document.getElementById('voice').dataset.queue || '') === %q`, strings.Join(want, " ")))
	var started string
	r.eval(`document.getElementById('voice').dataset.prompt || ''`, &started)
	if !strings.HasPrefix(started, lang+"/") {
		r.t.Errorf("%s screen: the voice prompt playing is %q, want one in %s", screen, started, lang)
	}
	for _, key := range want {
		var status int
		r.eval(fmt.Sprintf(`fetch('/audio/%s/%s.opus', { method: 'HEAD', cache: 'no-store' }).then((x) => x.status)`, lang, key), &status)
		if status != 200 {
			r.t.Errorf("%s screen: the voice prompt %s/%s.opus answers HTTP %d", screen, lang, key, status)
		}
	}
}
