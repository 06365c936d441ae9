package browsertest

import "testing"

// TestCounterOnlyScreen: residents sent to the counter for different
// reasons (saburo: a former name on the card; shiro: a counter-only flag
// in the ledger) see the same screen and hear the same voice prompt, which
// name the municipality's counter and never the reason.
func TestCounterOnlyScreen(t *testing.T) {
	r := newRig(t, "counter", rigOptions{})
	r.open("/")
	type seen struct{ screen, voice string }
	var first *seen
	for _, id := range []string{"saburo", "shiro"} {
		res := resident(t, id)
		r.insert(id)
		r.waitState("pin")
		r.typePIN(res.PIN)
		r.waitState("remove-card")
		r.sim.Remove()
		r.waitState("municipality")
		r.chooseMunicipality("012041")
		r.waitState("error")
		r.waitQueued("error")
		r.contains("error", "この証明書は市区町村の窓口で発行します", "料金はかかっていません",
			"お申し込み先：旭川市役所 市民課（総合庁舎1階）")
		var got seen
		r.eval(`(() => {
		  const c = document.getElementById('screen').cloneNode(true);
		  c.querySelectorAll('rt, rp').forEach((e) => e.remove());
		  return c.textContent;
		})()`, &got.screen)
		r.eval(`document.getElementById('voice').dataset.queue || ''`, &got.voice)
		if got.voice != "error" {
			t.Errorf("%s: voice prompts %q, want the error prompt only", id, got.voice)
		}
		if id == "saburo" {
			r.screen("error", "error-counter-only", true)
		}
		if first == nil {
			first = &got
		} else if got != *first {
			t.Errorf("the screen or voice differs between reasons:\n%+v\n%+v", got, *first)
		}
		r.tap("ack")
		r.waitState("idle")
		r.checkNoPersonalData(secretsOf(res), false)
	}
}
