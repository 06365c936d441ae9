package browsertest

import (
	"fmt"
	"testing"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// toPreview plays a resident through the choices with the flow's inputs
// (the screens before are tested elsewhere) and waits for the preview.
func (r *rig) toPreview(id, muni string, kind certificate.Kind) {
	r.t.Helper()
	res := resident(r.t, id)
	r.insert(id)
	r.waitState("pin")
	r.kiosk.Input(flow.Input{Type: flow.InputPIN, PIN: []byte(res.PIN)})
	r.waitState("remove-card")
	r.sim.Remove()
	r.waitState("municipality")
	r.kiosk.Input(flow.Input{Type: flow.InputMunicipality, Municipality: muni})
	r.waitState("kind")
	r.kiosk.Input(flow.Input{Type: flow.InputKind, Kind: kind})
	r.waitState("copies")
	r.kiosk.Input(flow.Input{Type: flow.InputCopies, Copies: 1})
	r.waitState("preview")
}

// TestPreviewEveryDose: every dose row of a certificate with 1 to 10 doses
// (the most a certificate holds), and the note that the domestic
// certificate is printed too, are inside the screen without scrolling, in
// Japanese and in English, for the overseas kind (the most facts).
func TestPreviewEveryDose(t *testing.T) {
	r := newRig(t, "preview", rigOptions{})
	r.open("/")
	for n := 1; n <= certificate.MaxDoses; n++ {
		r.center.SetDoses(n)
		r.toPreview("an", "011002", certificate.Overseas)
		for _, lang := range []string{"ja", "en"} {
			if lang == "en" {
				r.tap("lang-en")
				r.waitFor("English", `document.documentElement.lang === 'en'`)
			}
			var got struct {
				Rows     []int  `json:"rows"`
				Hidden   []int  `json:"hidden"`
				Scrolls  bool   `json:"scrolls"`
				Also     bool   `json:"also"`
				Overflow string `json:"overflow"`
			}
			r.eval(`(() => {
			  const scr = document.getElementById('screen').getBoundingClientRect();
			  const inside = (e) => { const b = e.getBoundingClientRect(); return b.top >= scr.top && b.bottom <= scr.bottom && b.left >= 0 && b.right <= innerWidth && b.height > 0; };
			  const rows = [...document.querySelectorAll('tr[data-dose]')];
			  const also = document.querySelector('[data-id="also-domestic"]');
			  const cut = [...document.querySelectorAll('.preview td, .preview dd')].find((e) => e.scrollWidth > e.clientWidth + 1);
			  return { rows: rows.map((e) => +e.dataset.dose), hidden: rows.filter((e) => !inside(e)).map((e) => +e.dataset.dose),
			           scrolls: document.getElementById('screen').scrollHeight > document.getElementById('screen').clientHeight + 1,
			           also: !!also && inside(also), overflow: cut ? cut.textContent : '' };
			})()`, &got)
			if len(got.Rows) != n || len(got.Hidden) > 0 || got.Scrolls || !got.Also || got.Overflow != "" {
				t.Errorf("%d doses, %s: rows %v, outside the screen %v, screen scrolls %v, domestic note visible %v, text cut %q",
					n, lang, got.Rows, got.Hidden, got.Scrolls, got.Also, got.Overflow)
			}
			if n == 1 || n == 7 || n == certificate.MaxDoses {
				r.shot(fmt.Sprintf("doses-%02d-%s", n, lang))
			}
		}
		r.tap("lang-ja")
		// Leave by a declined payment, acknowledged at once (cancelling
		// shows its message for 2 s).
		r.tap("confirm")
		r.waitState("payment")
		r.pay(false)
		r.waitState("error")
		r.tap("ack")
		r.waitState("idle")
	}
}
