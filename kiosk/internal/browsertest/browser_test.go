package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow/flowtest"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/printertest"
)

var (
	browser context.Context // the running Chromium; tabs derive from it
	shotDir string
	axeJS   string   // axe-core's source (.ci/fetch-axe)
	axeSeen sync.Map // screens axe-core checked: state/lang → true
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	exe, err := findChromium()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	profile, err := os.MkdirTemp("", "kioskcert-chromium-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
		return 1
	}
	defer os.RemoveAll(profile)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// As the kiosk's Chromium is started (assets/audio/README.md), so
		// the voice plays without a touch; muted so tests make no sound.
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	b, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	// The first action starts the browser; it must not carry a timeout,
	// which would end the browser with it.
	if err := chromedp.Do(b); err != nil {
		fmt.Fprintf(os.Stderr, "browsertest: starting %s failed: %v\n", exe, err)
		return 1
	}
	browser = b

	if shotDir, err = screenshotDir(); err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
		return 1
	}
	if axeJS, err = loadAxe(); err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		fmt.Fprintf(os.Stderr, "browsertest: screenshots in %s\n", shotDir)
	}
	return code
}

// findChromium returns the browser to test with, or says how to install it.
func findChromium() (string, error) {
	if p := os.Getenv("KIOSKCERT_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("browsertest: KIOSKCERT_CHROMIUM=%s: %v (unset it to use /usr/bin/chromium, which `make deps` installs)", p, err)
		}
		return p, nil
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("browsertest: Chromium not found (/usr/bin/chromium): run `make deps`, which installs " +
		"the Debian chromium package, or set KIOSKCERT_CHROMIUM to a Chromium binary")
}

// moduleRoot is the directory of go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("cannot find the module root: %v", err)
	}
	return filepath.Dir(mod), nil
}

// loadAxe runs .ci/fetch-axe, which fetches axe-core from the npm registry
// once into out/cache, and returns its source. Without it the tests fail
// and say why: the accessibility check is not skipped.
func loadAxe() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out, err := exec.Command("bash", filepath.Join(root, ".ci", "fetch-axe")).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return "", fmt.Errorf("fetching axe-core (.ci/fetch-axe) failed: %v %s", err, stderr)
	}
	src, err := os.ReadFile(strings.TrimSpace(string(out)))
	if err != nil {
		return "", fmt.Errorf("axe-core: %w", err)
	}
	return string(src), nil
}

// screenshotDir is $KIOSKCERT_ARTIFACTS/screenshots, else out/screenshots
// at the module root (never testdata: screenshots are outputs).
func screenshotDir() (string, error) {
	dir := os.Getenv("KIOSKCERT_ARTIFACTS")
	if dir == "" {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		mod := strings.TrimSpace(string(out))
		if err != nil || mod == "" || mod == os.DevNull {
			return "", fmt.Errorf("cannot find the module root for out/screenshots (set KIOSKCERT_ARTIFACTS): %v", err)
		}
		dir = filepath.Join(filepath.Dir(mod), "out")
	}
	dir = filepath.Join(dir, "screenshots")
	return dir, os.MkdirAll(dir, 0o755)
}

// rigOptions shape one test's kiosk.
type rigOptions struct {
	timeouts flow.Timeouts
	autoPay  bool
}

// rig is one kiosk (flow, fake center, card slot, simulator payment and
// printer), its local server and a browser tab on its page.
type rig struct {
	t       *testing.T
	kiosk   *flow.Kiosk
	center  *flowtest.Center
	printer *printertest.Fake
	sim     *localapi.Sim
	url     string
	tab     context.Context
	prefix  string // screenshot file prefix
	shots   int

	// Gates hold the card, the center and the printer (see gate).
	cardGate, centerGate, printGate *gate

	mu   sync.Mutex
	card *virtualcard.Card // the card last placed on the reader

	agent     localapi.Config // the agent's local server, as started
	stopAgent func()          // stops it (a no-op once stopped)
}

// startAgent serves the agent's local API and pages; after the first
// start, on the same address again (as an agent restarted by its service
// manager), so the open page reconnects by itself.
func (r *rig) startAgent() {
	r.t.Helper()
	cfg := r.agent
	if r.url != "" {
		cfg.Listen = strings.TrimSuffix(strings.TrimPrefix(r.url, "http://"), "/")
	}
	srv, err := localapi.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		r.t.Fatalf("start the agent's local server: %v", err)
	}
	r.url = srv.URL()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx); close(served) }()
	var once sync.Once
	r.stopAgent = func() { once.Do(func() { cancel(); <-served }) }
}

// lastCard is the card last placed on the reader.
func (r *rig) lastCard() *virtualcard.Card {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.card
}

func newRig(t *testing.T, prefix string, o rigOptions) *rig {
	t.Helper()
	if o.timeouts.Reminder == 0 {
		o.timeouts.Reminder = 400 * time.Millisecond
	}
	cards := flowtest.Cards(t)
	r := &rig{t: t, prefix: prefix, cardGate: newGate(), centerGate: newGate(), printGate: newGate()}
	r.center = flowtest.NewCenter(cards)
	r.printer = printertest.New()
	// Released first thing at cleanup, so that nothing waits on a gate.
	t.Cleanup(func() { r.cardGate.release(); r.centerGate.release(); r.printGate.release() })
	slot := virtualcard.NewSlot("browser-test", true)
	simPrinter := &localapi.SimPrinter{P: gatedPrinter{agent.Printer{P: r.printer}, r.printGate}}
	pay := localapi.NewSimPayment(o.autoPay)
	demoCards := localapi.DemoCards(cards)
	for i := range demoCards {
		mk := demoCards[i].New
		demoCards[i].New = func() (*virtualcard.Card, error) {
			c, err := mk()
			if err != nil {
				return nil, err
			}
			r.mu.Lock()
			r.card = c
			r.mu.Unlock()
			return c, nil
		}
	}
	r.sim = &localapi.Sim{Slot: slot, Cards: demoCards, Payment: pay, Printer: simPrinter}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	r.kiosk, err = flow.New(flow.Config{
		Reader: gatedReader{slot, r.cardGate}, Verifier: cards.Verifier, Center: gatedCenter{r.center, r.centerGate},
		Renderer: flowtest.Renderer(t), Printer: simPrinter, Payment: pay, Timeouts: o.timeouts, Log: log, PrintCode: agent.PrintCode,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.agent = localapi.Config{Listen: "127.0.0.1:0", Kiosk: r.kiosk, Sim: r.sim, Log: log}
	r.startAgent()
	t.Cleanup(func() { r.stopAgent() })
	flowtest.Start(t, r.kiosk)

	tab, closeTab := chromedp.NewContext(browser)
	t.Cleanup(closeTab)
	// A kiosk screen is a touch screen: taps are touch events.
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1280, 800, chromedp.EmulateTouch)); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	// Generous: under make test the whole suite shares two cores.
	tab, cancelTab := context.WithTimeout(tab, 5*time.Minute)
	t.Cleanup(cancelTab)
	r.tab = tab
	return r
}

// run runs chromedp actions in the tab, failing the test on error.
func (r *rig) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	r.t.Helper()
	if err := chromedp.Do(r.tab, actions...); err != nil {
		r.t.Fatalf("%s: %v (screen state %q)", what, err, r.stateNow())
	}
}

func (r *rig) stateNow() string {
	ctx, cancel := context.WithTimeout(r.tab, 2*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.state`))
	return s
}

// eval evaluates a JavaScript expression (awaiting a promise) into out.
func (r *rig) eval(js string, out any) {
	r.t.Helper()
	raw, err := chromedp.Run(r.tab, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		r.t.Fatalf("evaluate: %v (screen state %q)", err, r.stateNow())
	}
	if err := json.Unmarshal(raw, out); err != nil {
		r.t.Fatalf("evaluate: decode %s: %v", raw, err)
	}
}

// open loads path and waits until the page shows the kiosk's idle screen.
func (r *rig) open(path string) {
	r.t.Helper()
	r.run("open "+path, chromedp.Navigate(r.url+strings.TrimPrefix(path, "/")))
	if path == "/" {
		r.waitState("idle")
	}
}

// waitState waits until the page shows state.
func (r *rig) waitState(state string) {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		var err error
		if last, err = chromedp.Run(r.tab, chromedp.Evaluate[string](`document.body.dataset.state`)); err != nil {
			r.t.Fatalf("waiting for the %s screen: %v", state, err)
		}
		if last == state {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("the page shows %q, want %q (kiosk state %s)", last, state, r.kiosk.Snapshot().State)
}

// waitFor waits until the JavaScript condition is true.
func (r *rig) waitFor(what, cond string) {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(r.tab, chromedp.Evaluate[bool](`!!(`+cond+`)`))
		if err != nil {
			r.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("timed out waiting for %s (screen %q)", what, r.stateNow())
}

// tap touches the control with data-id id once it is enabled.
func (r *rig) tap(id string) {
	r.t.Helper()
	sel := fmt.Sprintf(`[data-id=%q]`, id)
	r.waitFor("control "+id, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e && !e.disabled && e.getClientRects().length > 0; })()`, sel))
	r.run("tap "+id, chromedp.Tap(chromedp.CSS(sel)))
}

// typePIN taps the digits and OK on the PIN pad.
func (r *rig) typePIN(pin string) {
	r.t.Helper()
	for _, d := range pin {
		r.tap("pin-" + string(d))
	}
	var masks string
	r.eval(`document.querySelector('.pin-dots').textContent`, &masks)
	if masks != strings.Repeat("●", len(pin)) {
		r.t.Fatalf("PIN display shows %q after %d digits, want %d masks", masks, len(pin), len(pin))
	}
	var html string
	r.eval(`document.documentElement.outerHTML`, &html)
	if strings.Contains(html, pin) {
		r.t.Fatal("the PIN appears in the page")
	}
	r.tap("pin-ok")
}

// text returns the text on screen, furigana left out.
func (r *rig) text() string {
	var s string
	r.eval(`(() => {
	  const c = document.body.cloneNode(true);
	  c.querySelectorAll('rt, rp, .visually-hidden, [hidden], audio').forEach((e) => e.remove());
	  return c.textContent;
	})()`, &s)
	return s
}

// shot saves a screenshot of the page as <prefix>-NN-<name>.png.
func (r *rig) shot(name string) {
	r.t.Helper()
	png, err := chromedp.Run(r.tab, chromedp.CaptureScreenshot())
	if err != nil {
		r.t.Fatalf("screenshot: %v", err)
	}
	r.shots++
	file := filepath.Join(shotDir, fmt.Sprintf("%s-%02d-%s.png", r.prefix, r.shots, name))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// screen waits for state, saves a screenshot and checks the accessibility
// basics.
func (r *rig) screen(state, name string, checkFocus bool) {
	r.t.Helper()
	r.waitState(state)
	r.shot(name)
	r.checkA11y(state, checkFocus)
	r.checkType(state)
	var fit struct {
		Scrolls bool   `json:"scrolls"`
		Text    string `json:"text"`
	}
	r.eval(`(() => { const s = document.getElementById('screen'); return { scrolls: s.scrollHeight > s.clientHeight + 1, text: s.textContent }; })()`, &fit)
	if fit.Scrolls {
		r.t.Errorf("%s screen: the content does not fit the screen (it scrolls)", state)
	}
	if m := strayValue.FindString(fit.Text); m != "" {
		r.t.Errorf("%s screen shows %q", state, m)
	}
}

// strayValue finds JavaScript values printed by mistake.
var strayValue = regexp.MustCompile(`\b(null|undefined|NaN|\[object Object\])\b`)

// checkType checks the Japanese typography of the screen: furigana never
// spreads its word apart (the word is as wide as it is set without
// furigana), a word with furigana is never broken across lines, and
// common words and phrases are never split by a line break.
func (r *rig) checkType(state string) {
	r.t.Helper()
	var problems []string
	r.eval(typeJS, &problems)
	for _, p := range problems {
		r.t.Errorf("%s screen: %s", state, p)
	}
}

// typeJS lists typography problems on the page (Japanese only).
const typeJS = `(() => {
  if (document.documentElement.lang !== 'ja') return [];
  const out = [];
  const visible = (e) => e.getClientRects().length > 0 && !e.closest('[hidden], .visually-hidden');
  for (const rb of document.querySelectorAll('ruby')) {
    if (!visible(rb)) continue;
    const base = [...rb.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join('');
    const boxes = new Set([...rb.getClientRects()].map((b) => Math.round(b.top)));
    if (boxes.size > 1) out.push('the word ' + base + ' is broken across lines');
    const tn = [...rb.childNodes].find((n) => n.nodeType === 3);
    // From the first glyph's left edge to the last one's right edge (the
    // base box may be wider than its text: the reading is centred).
    const glyph = (i) => { const g = document.createRange(); g.setStart(tn, i); g.setEnd(tn, i + 1); return g.getBoundingClientRect(); };
    const set = glyph(tn.textContent.length - 1).right - glyph(0).left;
    const probe = document.createElement('span');
    const cs = getComputedStyle(rb);
    probe.style.cssText = 'position:absolute;visibility:hidden;white-space:nowrap;font:' + cs.font + ';letter-spacing:' + cs.letterSpacing;
    probe.textContent = tn.textContent;
    document.body.append(probe);
    const natural = probe.getBoundingClientRect().width;
    probe.remove();
    if (set > natural + 1.5) out.push('furigana spreads ' + base + ' apart (' + set.toFixed(1) + ' px, set alone ' + natural.toFixed(1) + ' px)');
  }
  // Phrases that must stay on one line.
  const phrases = ['ください', 'お取りください', '選んでください', 'してください', 'お待ちください', 'マイナンバーカード', 'カードリーダー', 'できません', 'できませんでした'];
  const blocks = [...document.querySelectorAll('h1, h2, h3, p, dt, dd, th, td, button, .sub, .name')].filter(visible);
  for (const b of blocks) {
    const parts = [];
    const walk = document.createTreeWalker(b, NodeFilter.SHOW_TEXT);
    for (let n; (n = walk.nextNode());) {
      if (n.parentElement.closest('rt, rp')) continue;
      parts.push(n);
    }
    let text = '';
    const at = [];
    for (const n of parts) { for (let i = 0; i < n.textContent.length; i++) at.push([n, i]); text += n.textContent; }
    for (const p of phrases) {
      for (let i = text.indexOf(p); i >= 0; i = text.indexOf(p, i + 1)) {
        const bottoms = new Set();
        for (let k = i; k < i + p.length; k++) {
          const [n, o] = at[k];
          const rg = document.createRange();
          rg.setStart(n, o); rg.setEnd(n, o + 1);
          const rc = rg.getClientRects()[0];
          if (rc) bottoms.add(Math.round(rc.bottom / 8));
        }
        if (bottoms.size > 1) out.push('"' + p + '" is split across lines in "' + text.slice(0, 40) + '"');
      }
    }
  }
  return [...new Set(out)].slice(0, 20);
})()`

// held checks a screen that stays only while g holds the step behind it
// (card check, reading, requesting, printing), and that it says each of
// want, then releases g.
func (r *rig) held(g *gate, state, name string, want ...string) {
	r.t.Helper()
	r.screen(state, name, false)
	r.contains(state, want...)
	if got := r.stateNow(); got != state {
		r.t.Fatalf("the %s screen did not stay while held (now %s)", state, got)
	}
	g.release()
}

// checkA11y checks that every control has an accessible name (from
// Chromium's accessibility tree), that text contrast is at least 4.5:1,
// that touch targets are at least 15 mm, and (when asked) that Tab moves
// through the controls in visual order with a visible focus ring.
func (r *rig) checkA11y(state string, checkFocus bool) {
	r.t.Helper()
	tree, err := chromedp.Call(r.tab, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		r.t.Fatalf("accessibility tree: %v", err)
	}
	nodes := tree.Nodes
	controls := map[string]bool{"button": true, "link": true, "checkbox": true, "combobox": true, "textbox": true,
		"radio": true, "slider": true, "spinbutton": true, "menuitem": true, "tab": true, "region": true, "progressbar": true, "timer": true}
	named := 0
	for _, n := range nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		role := axString(n.Role)
		if !controls[role] {
			continue
		}
		if strings.TrimSpace(axString(n.Name)) == "" {
			r.t.Errorf("%s screen: a %s has no accessible name", state, role)
		}
		named++
	}
	if named == 0 && state != "offline" {
		r.t.Errorf("%s screen: no controls found in the accessibility tree", state)
	}

	var contrast struct {
		Min      float64 `json:"min"`
		Count    int     `json:"count"`
		Failures []struct {
			Text  string  `json:"text"`
			Ratio float64 `json:"ratio"`
			FG    string  `json:"fg"`
			BG    string  `json:"bg"`
		} `json:"failures"`
		Small []string `json:"small"`
	}
	r.eval(contrastJS, &contrast)
	if contrast.Count == 0 {
		r.t.Errorf("%s screen: no text found for the contrast check", state)
	}
	for _, f := range contrast.Failures {
		r.t.Errorf("%s screen: text %q has contrast %.2f:1 (%s on %s), want ≥ 4.5:1", state, f.Text, f.Ratio, f.FG, f.BG)
	}
	for _, s := range contrast.Small {
		r.t.Errorf("%s screen: touch target %s is smaller than 15 mm (57 CSS px)", state, s)
	}
	r.checkAxe(state)
	if checkFocus {
		r.checkFocusOrder(state)
	}
}

// checkAxe runs axe-core's WCAG 2.2 A/AA rules and best practices on the
// page and reports every violation. axe is removed from the page after the
// run, so it keeps nothing of the session.
func (r *rig) checkAxe(state string) {
	r.t.Helper()
	var lang string
	r.eval(`document.documentElement.lang`, &lang)
	// Each screen (by its name here, which tells variants apart) in each
	// language once per test run: axe takes 0.3–1 s a screen.
	if _, seen := axeSeen.LoadOrStore(state+"/"+lang, true); seen {
		return
	}
	if _, err := chromedp.Run(r.tab, chromedp.Evaluate[bool](axeJS+"\n;true")); err != nil {
		r.t.Fatalf("%s screen: load axe-core: %v", state, err)
	}
	var res struct {
		Violations []struct {
			ID    string   `json:"id"`
			Help  string   `json:"help"`
			Nodes []string `json:"nodes"`
		} `json:"violations"`
		Passes int `json:"passes"`
	}
	r.eval(`(async () => {
	  try {
	    const r = await axe.run(document, { resultTypes: ['violations'],
	      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] } });
	    return { violations: r.violations.map((v) => ({ id: v.id, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) })),
	             passes: r.passes.length };
	  } finally { delete window.axe; }
	})()`, &res)
	for _, v := range res.Violations {
		r.t.Errorf("%s screen: axe-core %s: %s (%s)", state, v.ID, v.Help, strings.Join(v.Nodes, ", "))
	}
	if res.Passes == 0 {
		r.t.Errorf("%s screen: axe-core passed no rule: it did not run", state)
	}
}

func axString(v *accessibility.Value) string {
	if v == nil || len(v.Value) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v.Value, &s) != nil {
		return string(v.Value)
	}
	return s
}

// contrastJS computes, for every visible text node, the contrast of its
// colour against the background behind it (the nearest opaque ancestor
// background, blending translucent ones), per WCAG 2 relative luminance;
// and lists controls smaller than 57 × 57 CSS px.
const contrastJS = `(() => {
  const parse = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c);
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const lum = (c) => 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
  const blend = (top, base) => ({ r: top.r * top.a + base.r * (1 - top.a), g: top.g * top.a + base.g * (1 - top.a), b: top.b * top.a + base.b * (1 - top.a), a: 1 });
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let base = { r: 255, g: 255, b: 255, a: 1 };
    for (const c of layers.reverse()) base = blend(c, base);
    return base;
  };
  const out = { min: 99, count: 0, failures: [], small: [] };
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n; (n = walk.nextNode());) {
    const t = n.textContent.trim();
    if (!t) continue;
    const el = n.parentElement;
    if (el.closest('.visually-hidden, [hidden], audio, script, style')) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility !== 'visible' || el.getClientRects().length === 0) continue;
    const bg = background(el);
    const fg = blend(parse(cs.color), bg);
    const l1 = lum(fg), l2 = lum(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    out.count++;
    out.min = Math.min(out.min, ratio);
    if (ratio < 4.5) out.failures.push({ text: t.slice(0, 40), ratio, fg: cs.color, bg: JSON.stringify(bg) });
  }
  // Touch targets on the kiosk screen (not the simulator's desktop panel).
  const kiosk = document.body.dataset.state !== undefined;
  for (const b of kiosk ? document.querySelectorAll('button, a[href], input, select, [role=button]') : []) {
    if (b.closest('[hidden]') || b.getClientRects().length === 0) continue;
    const r = b.getBoundingClientRect();
    if (r.width < 57 || r.height < 57) out.small.push((b.dataset.id || b.id || b.textContent.trim()).slice(0, 30) + ' ' + Math.round(r.width) + '×' + Math.round(r.height));
  }
  return out;
})()`

// checkFocusOrder tabs through the page from the top and checks that each
// control comes after the previous one in reading order (top to bottom,
// then left to right within a row) and shows a focus ring.
func (r *rig) checkFocusOrder(state string) {
	r.t.Helper()
	type stop struct {
		ID      string  `json:"id"`
		X       float64 `json:"x"`
		Y       float64 `json:"y"`
		W       float64 `json:"w"`
		H       float64 `json:"h"`
		Outline bool    `json:"outline"`
	}
	// Tab until focus leaves the document (the wrap point), then collect
	// one full round from the top of the page until it leaves again.
	var stops []stop
	wrapped := false
	for range 80 {
		r.run("tab", chromedp.KeyEvent(kb.Tab))
		var s stop
		r.eval(`(() => {
		  const e = document.activeElement;
		  if (!e || e === document.body) return { id: '' };
		  const r = e.getBoundingClientRect();
		  const cs = getComputedStyle(e);
		  return { id: e.dataset.id || e.id || e.tagName, x: r.left, y: r.top, w: r.width, h: r.height,
		           outline: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2 };
		})()`, &s)
		if s.ID == "" {
			if wrapped {
				break
			}
			wrapped = true
			continue
		}
		if wrapped {
			stops = append(stops, s)
		}
	}
	if len(stops) == 0 {
		r.t.Errorf("%s screen: Tab reaches no control", state)
		return
	}
	var ids []string
	for i, s := range stops {
		ids = append(ids, s.ID)
		if !s.Outline {
			r.t.Errorf("%s screen: %s shows no focus ring", state, s.ID)
		}
		if i == 0 {
			continue
		}
		p := stops[i-1]
		sameRow := s.Y < p.Y+p.H && p.Y < s.Y+s.H // vertical overlap
		switch {
		case sameRow && s.X+1 < p.X:
			r.t.Errorf("%s screen: focus goes from %s to %s, which is to its left on the same row", state, p.ID, s.ID)
		case !sameRow && s.Y+1 < p.Y:
			r.t.Errorf("%s screen: focus goes from %s up to %s", state, p.ID, s.ID)
		}
	}
	r.t.Logf("%s screen focus order: %s", state, strings.Join(ids, " → "))
}

// personal is what must not remain in the page after a session.
type personal []string

// checkNoPersonalData checks, back at idle, that the page holds none of
// secrets: not in the DOM (text or attributes), not in a window global, not
// in storage, cookies or caches, and (with heap, after a garbage
// collection) not anywhere in the page's JavaScript heap. The secrets are
// never sent to the page; the page's data is brought here and searched.
// The kiosk itself must hold nothing either (flow.Kiosk.Wiped).
func (r *rig) checkNoPersonalData(secrets personal, heap bool) {
	r.t.Helper()
	r.waitState("idle")
	var page struct {
		HTML    string   `json:"html"`
		Globals []string `json:"globals"`
		Values  string   `json:"values"`
		Local   int      `json:"local"`
		Session int      `json:"session"`
		Cookie  string   `json:"cookie"`
		Caches  int      `json:"caches"`
		IDB     int      `json:"idb"`
	}
	r.eval(`(async () => {
	  const values = [];
	  const globals = [];
	  for (const k of Object.getOwnPropertyNames(window)) {
	    let v;
	    try { v = window[k]; } catch { continue; }
	    if (v === null || v === undefined || typeof v === 'function') continue;
	    const plain = typeof v === 'string' || Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype;
	    if (!plain) continue;
	    globals.push(k);
	    try { values.push(JSON.stringify(v)); } catch {}
	  }
	  return {
	    html: document.documentElement.outerHTML,
	    globals, values: values.join('\n'),
	    local: localStorage.length, session: sessionStorage.length, cookie: document.cookie,
	    caches: typeof caches === 'undefined' ? 0 : (await caches.keys()).length,
	    idb: indexedDB.databases ? (await indexedDB.databases()).length : 0,
	  };
	})()`, &page)
	for _, s := range secrets {
		if strings.Contains(page.HTML, s) {
			r.t.Errorf("after the session the page's DOM still holds %q", s)
		}
		if strings.Contains(page.Values, s) {
			r.t.Errorf("after the session a window global still holds %q", s)
		}
	}
	if page.Local != 0 || page.Session != 0 || page.Cookie != "" || page.Caches != 0 || page.IDB != 0 {
		r.t.Errorf("the page stored data: localStorage %d, sessionStorage %d, cookie %q, caches %d, IndexedDB %d",
			page.Local, page.Session, page.Cookie, page.Caches, page.IDB)
	}
	for _, g := range page.Globals {
		if g == "snap" || g == "pin" || g == "langs" || g == "dicts" {
			r.t.Errorf("the page's state %q is a window global", g)
		}
	}

	// The JavaScript heap, after a collection: strings still reachable.
	if !r.kiosk.Wiped() {
		r.t.Error("the kiosk holds session data after the session")
	}
	if !heap {
		return
	}
	strs := r.heapStrings()
	for _, s := range secrets {
		for _, h := range strs {
			if strings.Contains(h, s) {
				r.t.Errorf("after the session the page's JavaScript heap still holds %q", s)
				break
			}
		}
	}
}

// heapStrings takes a heap snapshot of the page after garbage collection
// and returns its strings.
func (r *rig) heapStrings() []string {
	r.t.Helper()
	var mu sync.Mutex
	var buf strings.Builder
	ctx, cancel := context.WithCancel(r.tab)
	defer cancel()
	// Listen sees each chunk before TakeHeapSnapshot returns.
	if err := chromedp.Listen(ctx, func(ev any) {
		if c, ok := ev.(*heapprofiler.EventAddHeapSnapshotChunk); ok {
			mu.Lock()
			buf.WriteString(c.Chunk)
			mu.Unlock()
		}
	}); err != nil {
		r.t.Fatal(err)
	}
	r.run("heap snapshot", func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for _, cmd := range []cdp.Command[cdp.Empty, cdp.Empty]{heapprofiler.Enable, heapprofiler.CollectGarbage, heapprofiler.CollectGarbage} {
			if _, err := cdp.Call(ctx, t, cmd, cdp.Empty{}); err != nil {
				return chromedp.Void{}, err
			}
		}
		if _, err := cdp.Call(ctx, t, heapprofiler.TakeHeapSnapshot, heapprofiler.TakeHeapSnapshotParams{ReportProgress: new(false)}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, t, heapprofiler.Disable, cdp.Empty{})
		return chromedp.Void{}, err
	})
	mu.Lock()
	defer mu.Unlock()
	var snap struct {
		Strings []string `json:"strings"`
	}
	if err := json.Unmarshal([]byte(buf.String()), &snap); err != nil {
		r.t.Fatalf("heap snapshot: %v", err)
	}
	if len(snap.Strings) < 100 {
		r.t.Fatalf("heap snapshot has only %d strings", len(snap.Strings))
	}
	return snap.Strings
}

// voice returns the last voice prompt the page started (<lang>/<key>) and
// how many it has started.
func (r *rig) voice() (prompt string, count int) {
	var v struct {
		Prompt string `json:"prompt"`
		Count  string `json:"count"`
	}
	r.eval(`({ prompt: document.getElementById('voice').dataset.prompt || '', count: document.getElementById('voice').dataset.count || '0' })`, &v)
	fmt.Sscan(v.Count, &count)
	return v.Prompt, count
}

// waitQueued waits until the page has queued prompt for this screen.
func (r *rig) waitQueued(prompt string) {
	r.t.Helper()
	r.waitFor("voice prompts with "+prompt, fmt.Sprintf(`(document.getElementById('voice').dataset.queue || '').split(' ').includes(%q)`, prompt))
}

// waitVoice waits until the page has started prompt.
func (r *rig) waitVoice(prompt string) {
	r.t.Helper()
	r.waitFor("voice prompt "+prompt, fmt.Sprintf(`document.getElementById('voice').dataset.prompt === %q`, prompt))
}

var spaces = regexp.MustCompile(`\s+`)

// contains fails unless the screen's text contains each of want.
func (r *rig) contains(state string, want ...string) {
	r.t.Helper()
	got := spaces.ReplaceAllString(r.text(), " ")
	for _, w := range want {
		if !strings.Contains(got, w) {
			r.t.Errorf("%s screen does not say %q; it says: %s", state, w, got)
		}
	}
}
