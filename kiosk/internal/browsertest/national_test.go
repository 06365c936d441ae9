package browsertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
)

// toMunicipality plays a resident up to the municipality screen.
func (r *rig) toMunicipality(id string) {
	r.t.Helper()
	res := resident(r.t, id)
	r.insert(id)
	r.waitState("pin")
	r.typePIN(res.PIN)
	r.waitState("remove-card")
	r.sim.Remove()
	r.waitState("municipality")
}

// chooseMunicipality touches the prefecture, the index tab and the
// municipality, as a resident does.
func (r *rig) chooseMunicipality(code string) {
	r.t.Helper()
	var onList bool
	r.eval(`document.querySelector('[data-id="other-pref"]') !== null`, &onList)
	if !onList {
		r.tap("pref-" + code[:2])
	}
	var tab string
	r.eval(fmt.Sprintf(`(() => {
	  const want = 'muni-%s';
	  const tabs = [...document.querySelectorAll('[role=tab]:not([disabled])')];
	  const shown = tabs.find((t) => t.getAttribute('aria-selected') === 'true');
	  for (const t of tabs) {
	    t.click();
	    if (document.querySelector('#muni-panel [data-id="' + want + '"]')) { const id = t.dataset.id; shown?.click(); return id; }
	  }
	  shown?.click();
	  return '';
	})()`, code), &tab)
	if tab == "" {
		r.t.Fatalf("municipality %s is not on any tab of its prefecture", code)
	}
	r.tap(tab)
	r.tap("muni-" + code)
}

// TestMunicipalityNational offers all 1,741 municipalities of the national
// list and reaches one in every prefecture in three touches (prefecture,
// index tab, municipality), checks that every tab of every prefecture fits
// the screen, and measures how long the page takes to draw.
func TestMunicipalityNational(t *testing.T) {
	r := newRig(t, "national", rigOptions{timeouts: flow.Timeouts{Input: 5 * time.Minute}})
	r.center.UseNationalList(true)
	r.center.CheckAnyMunicipality()
	r.open("/")
	r.toMunicipality("hanako")
	r.screen("municipality", "prefectures-ja", true)
	var ms string
	r.eval(`document.body.dataset.renderMs`, &ms)
	t.Logf("prefecture screen with 1,741 municipalities drawn in %s ms", ms)
	r.tap("pref-01")
	r.waitFor("Hokkaido's municipalities", `document.querySelector('[data-id="muni-011002"]') || document.querySelector('[role=tab]')`)
	r.eval(`document.body.dataset.renderMs`, &ms)
	t.Logf("Hokkaido's list (185 municipalities, first tab) drawn in %s ms", ms)
	r.shot("hokkaido-ja")
	r.checkA11y("municipality (Hokkaido)", true)
	r.tap("other-pref")
	r.tap("pref-13")
	r.shot("tokyo-ja")
	r.tap("other-pref")
	r.tap("lang-en")
	r.waitFor("English", `document.documentElement.lang === 'en'`)
	r.shot("prefectures-en")
	r.checkA11y("municipality (prefectures, English)", false)
	r.tap("pref-14")
	r.shot("kanagawa-en")
	r.checkA11y("municipality (Kanagawa, English)", false)
	r.tap("other-pref")
	r.tap("lang-ja")
	r.waitFor("Japanese", `document.documentElement.lang === 'ja'`)

	// Every tab of every prefecture, in both languages: each tile inside
	// the viewport, no text cut off.
	for _, lang := range []string{"ja", "en"} {
		if lang == "en" {
			r.tap("lang-en")
			r.waitFor("English", `document.documentElement.lang === 'en'`)
		}
		var problems []string
		r.eval(layoutJS, &problems)
		for _, p := range problems {
			t.Errorf("%s: %s", lang, p)
		}
	}
	r.tap("lang-ja")
	r.waitFor("Japanese", `document.documentElement.lang === 'ja'`)

	// One municipality in each prefecture, by touch: the last in kana
	// order (the last tab), three touches each.
	var targets []struct {
		Pref, Tab, Code string
	}
	r.eval(targetsJS, &targets)
	if len(targets) != 47 {
		t.Fatalf("%d prefectures with municipalities, want 47", len(targets))
	}
	start := time.Now()
	for _, tg := range targets {
		r.tap("pref-" + tg.Pref)
		r.tap("tab-" + tg.Tab)
		r.tap("muni-" + tg.Code)
		r.waitState("kind")
		if got := r.kiosk.Snapshot().Municipality; got != tg.Code {
			t.Fatalf("prefecture %s: the kiosk took %s, want %s", tg.Pref, got, tg.Code)
		}
		r.tap("back")
		r.waitState("municipality")
		r.tap("other-pref")
	}
	t.Logf("reached a municipality in each of 47 prefectures in %v", time.Since(start))
	if got := len(r.center.Checks()); got != 47 {
		t.Errorf("%d checks, want 47", got)
	}
	r.tap("cancel")
	r.waitState("idle")
}

// targetsJS lists, per prefecture, the last municipality of its last tab
// by walking the page's own buttons.
const targetsJS = `(() => {
  const out = [];
  const prefs = [...document.querySelectorAll('[data-id^="pref-"]')].map((b) => b.dataset.id.slice(5));
  for (const p of prefs) {
    document.querySelector('[data-id="pref-' + p + '"]').click();
    const tabs = [...document.querySelectorAll('[role=tab]:not([disabled])')];
    const tab = tabs[tabs.length - 1];
    tab.click();
    const munis = [...document.querySelectorAll('#muni-panel [data-id^="muni-"]')];
    out.push({ pref: p, tab: tab.dataset.id.slice(4), code: munis[munis.length - 1].dataset.id.slice(5) });
    document.querySelector('[data-id="other-pref"]').click();
  }
  return out;
})()`

// layoutJS opens every tab of every prefecture and lists what does not fit:
// a tile outside the viewport, text wider than its tile, a tab with too
// many municipalities.
const layoutJS = `(() => {
  const problems = [];
  const inView = (e) => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; };
  const prefs = [...document.querySelectorAll('[data-id^="pref-"]')];
  for (const b of prefs) if (!inView(b)) problems.push('prefecture button ' + b.dataset.id + ' outside the viewport');
  for (const b of prefs) if (b.scrollWidth > b.clientWidth + 1) problems.push(b.dataset.id + ' text cut off');
  const ids = prefs.map((b) => b.dataset.id);
  let tiles = 0;
  for (const id of ids) {
    document.querySelector('[data-id="' + id + '"]').click();
    const tabs = [...document.querySelectorAll('[role=tab]:not([disabled])')].map((t) => t.dataset.id);
    for (const tid of tabs) {
      const tb = document.querySelector('[data-id="' + tid + '"]');
      if (!inView(tb)) problems.push(id + ' ' + tid + ': tab outside the viewport');
      tb.click();
      const ms = [...document.querySelectorAll('#muni-panel button')];
      if (ms.length > 24) problems.push(id + ' ' + tid + ': ' + ms.length + ' municipalities on one tab');
      for (const m of ms) {
        tiles++;
        if (!inView(m)) problems.push(id + ' ' + tid + ' ' + m.dataset.id + ' outside the viewport');
        const name = m.querySelector('.name');
        if (name.scrollWidth > name.clientWidth + 1 || m.scrollHeight > m.clientHeight + 1) problems.push(id + ' ' + m.dataset.id + ' "' + name.textContent + '" cut off');
      }
    }
    document.querySelector('[data-id="other-pref"]').click();
  }
  if (tiles < 1741) problems.push('only ' + tiles + ' tiles seen, want 1741');
  return problems.slice(0, 40);
})()`
