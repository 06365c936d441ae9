package browsertest

import (
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
)

// TestMunicipalityWards reaches residents of designated cities by their
// ward (行政区): each city has a tab of its wards; choosing a ward sends the
// city's code, as the city keeps the records. Hamamatsu shows its three
// wards of today and, marked with their last month, the seven it had until
// 2023 (residents were registered there when vaccinated). Tokyo's special
// wards are municipalities and send their own codes. A city that does not
// take part greys its wards, and touching one says why. Every ward tab of
// the 20 cities, in both languages: every ward listed, every tile and tab
// label inside the screen and not cut off.
func TestMunicipalityWards(t *testing.T) {
	r := newRig(t, "wards", rigOptions{timeouts: flow.Timeouts{Input: 5 * time.Minute}})

	// The demo's participating municipalities only: Yokohama does not take part.
	r.center.UseNationalList(false)
	r.open("/")
	r.toMunicipality("an")
	r.tap("pref-14")
	r.tap("tab-city-141003")
	r.shot("yokohama-not-participating")
	var greyed struct {
		N   int `json:"n"`
		Off int `json:"off"`
	}
	r.eval(`({ n: document.querySelectorAll('#muni-panel [data-id^="ward-"]').length,
	           off: document.querySelectorAll('#muni-panel [data-id^="ward-"][aria-disabled="true"]').length })`, &greyed)
	if greyed.N != 18 || greyed.Off != 18 {
		t.Errorf("Yokohama's tab shows %d wards, %d greyed; want 18, all greyed", greyed.N, greyed.Off)
	}
	r.tap("ward-141011")
	r.waitFor("the reason a greyed ward cannot be chosen", `document.querySelector('#local-notice [data-code="not_participating"]') !== null`)
	r.contains("municipality", "横浜市：")
	if st := r.kiosk.Snapshot().State; st != flow.StateMunicipality {
		t.Fatalf("touching a greyed ward moved the kiosk to %s", st)
	}
	r.checkA11y("municipality (greyed wards)", false)
	r.tap("cancel")
	r.waitState("idle")

	// Every municipality takes part from here on.
	r.center.UseNationalList(true)
	r.center.CheckAnyMunicipality()
	r.toMunicipality("an")
	r.tap("pref-01")
	r.tap("tab-city-011002")
	r.shot("sapporo-ja")
	r.checkA11y("municipality (Sapporo's wards)", true)
	r.checkType("municipality (Sapporo's wards)")
	r.contains("municipality", "札幌市の区", "中央区", "白石区", "清田区", "札幌市にお住まいの方は、市か区を選んでください")
	// choose touches a tile, checks the code the kiosk took, and comes back
	// to the same tab.
	choose := func(tile, wantCode string) {
		t.Helper()
		var tab string
		r.eval(`document.querySelector('[role=tab][aria-selected="true"]').dataset.id`, &tab)
		r.tap(tile)
		r.waitState("kind")
		if got := r.kiosk.Snapshot().Municipality; got != wantCode {
			t.Errorf("%s: the kiosk took %s, want %s", tile, got, wantCode)
		}
		if c := r.center.Checks(); len(c) == 0 || c[len(c)-1] != wantCode {
			t.Errorf("%s: the center was asked about %v, want %s last", tile, c, wantCode)
		}
		r.tap("back")
		r.waitState("municipality")
		var again string
		r.eval(`document.querySelector('[role=tab][aria-selected="true"]')?.dataset.id || ''`, &again)
		if again != tab {
			t.Errorf("back from %s opens the tab %q, want %q where it was chosen", tile, again, tab)
		}
	}
	choose("ward-011045", "011002") // 白石区 → 札幌市

	// Hamamatsu: three wards of today, then seven until December 2023.
	r.tap("other-pref")
	r.tap("pref-22")
	r.tap("tab-city-221309")
	r.shot("hamamatsu-ja")
	var tiles []string
	r.eval(`[...document.querySelectorAll('#muni-panel [data-id^="ward-"]')].map((b) => (b.dataset.id + ' ' + (b.querySelector('.sub')?.textContent || '')).trim())`, &tiles)
	want := []string{"ward-221384", "ward-221406", "ward-221392"}
	for _, code := range []string{"221317", "221325", "221333", "221341", "221350", "221368", "221376"} {
		want = append(want, "ward-"+code+" 2023年12月まで")
	}
	if strings.Join(tiles[:min(3, len(tiles))], "|") != strings.Join(want[:3], "|") || len(tiles) != 10 {
		t.Errorf("Hamamatsu's tiles %q, want today's wards in kana order (中央区, 天竜区, 浜名区) first, then the seven old ones", tiles)
	}
	for _, w := range want[3:] {
		found := false
		for _, got := range tiles {
			found = found || got == w
		}
		if !found {
			t.Errorf("Hamamatsu's tab lacks %q (it shows %q)", w, tiles)
		}
	}
	choose("ward-221317", "221309") // the old 中区 → 浜松市

	// Tokyo's special wards send their own codes.
	r.tap("other-pref")
	r.tap("pref-13")
	r.tap("tab-wards")
	choose("muni-131016", "131016") // 千代田区

	// Every ward tab, in both languages.
	r.tap("other-pref")
	for _, lang := range []string{"ja", "en"} {
		if lang == "en" {
			r.tap("lang-en")
			r.waitFor("English", `document.documentElement.lang === 'en'`)
		}
		var problems []string
		r.eval(wardsLayoutJS, &problems)
		for _, p := range problems {
			t.Errorf("%s: %s", lang, p)
		}
	}

	r.tap("pref-14")
	r.tap("tab-city-141003")
	r.shot("yokohama-en")
	r.contains("municipality", "Yokohama wards", "Tsurumi Ward", "Hodogaya Ward", "鶴見区")
	r.checkA11y("municipality (Yokohama's wards, English)", false)
	choose("ward-141011", "141003") // Tsurumi Ward → Yokohama City
	r.tap("cancel")
	r.waitState("idle")
}

// wardsLayoutJS opens every prefecture and every designated city's ward
// tab and lists what is wrong: a city without its wards (wards.json), a
// tile or tab outside the viewport, a name or tab label cut off.
const wardsLayoutJS = `(async () => {
  const wards = await (await fetch('/ui/wards.json')).json();
  const want = new Map();
  for (const w of wards) want.set(w.city, (want.get(w.city) || 0) + 1);
  const problems = [];
  const inView = (e) => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; };
  const cut = (e) => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1;
  const seen = new Set();
  const prefs = [...document.querySelectorAll('[data-id^="pref-"]')].map((b) => b.dataset.id);
  for (const id of prefs) {
    document.querySelector('[data-id="' + id + '"]').click();
    for (const tb of document.querySelectorAll('[role=tab]')) {
      if (!inView(tb)) problems.push(id + ' ' + tb.dataset.id + ': tab outside the viewport');
      if (cut(tb)) problems.push(id + ' ' + tb.dataset.id + ': tab label "' + tb.textContent + '" cut off');
    }
    const cities = [...document.querySelectorAll('[role=tab][data-id^="tab-city-"]')].map((b) => b.dataset.id);
    for (const tid of cities) {
      document.querySelector('[data-id="' + tid + '"]').click();
      const city = tid.slice('tab-city-'.length);
      seen.add(city);
      const tiles = [...document.querySelectorAll('#muni-panel [data-id^="ward-"]')];
      if (tiles.length !== want.get(city)) problems.push(city + ': ' + tiles.length + ' ward tiles, want ' + want.get(city));
      for (const m of tiles) {
        if (!inView(m)) problems.push(city + ' ' + m.dataset.id + ' outside the viewport');
        const name = m.querySelector('.name');
        if (cut(name) || cut(m)) problems.push(city + ' ' + m.dataset.id + ' "' + name.textContent + '" cut off');
      }
    }
    document.querySelector('[data-id="other-pref"]').click();
  }
  if (seen.size !== 20) problems.push('ward tabs for ' + seen.size + ' cities, want the 20 designated cities');
  return problems.slice(0, 40);
})()`
