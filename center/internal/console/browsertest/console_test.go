package browsertest

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// tab is one browser tab on the console.
type tab struct {
	t    *testing.T
	ctx  context.Context
	ce   *center
	name string
	dl   string
}

func (ce *center) newTab(t *testing.T, name string, isolated bool) *tab {
	t.Helper()
	var opts []chromedp.ContextOption
	if isolated {
		opts = append(opts, chromedp.WithNewBrowserContext()) // its own cookies
	}
	ctx, cancel := chromedp.NewContext(browserCtx, opts...)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx, ce: ce, name: name, dl: t.TempDir()}
	// The first action opens the tab; it must not carry a timeout, which
	// would close the tab with it.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	return tb
}

func (tb *tab) run(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v", tb.name, err)
	}
}

func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, js, err)
	}
	return v
}

func (tb *tab) open(path string) { tb.t.Helper(); tb.run(chromedp.Navigate(tb.ce.url + path)) }

// text is the text of the first element matching sel ("" if none).
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf(`(function(){var e=document.querySelector(%q);return e?e.textContent.trim():""})()`, sel))
}

func (tb *tab) set(sel, v string) {
	tb.t.Helper()
	eval[bool](tb, fmt.Sprintf(`(function(){document.querySelector(%q).value=%q;return true})()`, sel, v))
}

// click clicks sel and waits for the page it leads to.
func (tb *tab) click(sel string) {
	tb.t.Helper()
	eval[bool](tb, fmt.Sprintf(`(function(){window.__before=1;document.querySelector(%q).click();return true})()`, sel))
	tb.waitJS(`!window.__before && document.readyState === "complete"`)
}

// waitJS waits up to 15 s for a JavaScript condition.
func (tb *tab) waitJS(cond string) {
	tb.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+cond+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: %s did not become true (%v)", tb.name, cond, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (tb *tab) location() string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		tb.t.Fatal(err)
	}
	return s
}

// shot saves a screenshot of the page under a name.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(80))
	if err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shotDir, tb.name+"-"+name+".jpg"), buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

func (tb *tab) login(a account, password, code string) {
	tb.t.Helper()
	tb.open("/login")
	tb.set("#operator", a.id)
	tb.set("#password", password)
	tb.set("#code", code)
	tb.click("#login-submit")
}

// download clicks sel and returns the file the browser saved.
func (tb *tab) download(sel string) []byte {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	progress := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: tb.dl, EventsEnabled: new(true)})
		return err
	}))
	if err != nil {
		tb.t.Fatal(err)
	}
	eval[bool](tb, fmt.Sprintf(`(function(){document.querySelector(%q).click();return true})()`, sel))
	for ev, err := range progress {
		if err != nil {
			tb.t.Fatalf("%s: download: %v", tb.name, err)
		}
		if ev.State != browser.DownloadProgressStateCompleted {
			continue
		}
		b, err := os.ReadFile(filepath.Join(tb.dl, ev.GUID))
		if err != nil {
			tb.t.Fatal(err)
		}
		return b
	}
	tb.t.Fatalf("%s: no download", tb.name)
	return nil
}

// waitFor reloads path until sel's text contains want (10 s).
func (tb *tab) waitFor(path, sel, want string) {
	tb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tb.open(path)
		got := tb.text(sel)
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: %s on %s shows %q, want %q", tb.name, sel, path, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func auditEvents(t *testing.T, ce *center, q store.EventQuery) []store.Event {
	t.Helper()
	evs, err := ce.c.Store.Events(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestConsole(t *testing.T) {
	ce := startCenter(t)
	adm := ce.newTab(t, "admin", false)

	// Refused logins: a wrong password, a wrong one-time code.
	adm.login(ce.admin, "not the password at all", ce.code(t, ce.admin))
	if msg := adm.text("#login-message"); !strings.Contains(msg, "ワンタイムコード") {
		t.Fatalf("wrong password: %q at %s: %s", msg, adm.location(), adm.text("body"))
	}
	adm.shot("login-refused")
	good := ce.code(t, ce.admin)
	wrong := fmt.Sprintf("%06d", (mustAtoi(t, good)+1)%1000000)
	adm.login(ce.admin, ce.admin.password, wrong)
	if !strings.Contains(adm.location(), "/login") {
		t.Fatal("a wrong TOTP code logged in")
	}
	fails := auditEvents(t, ce, store.EventQuery{Type: store.EventOperatorLogin, Result: "bad_credentials"})
	if len(fails) != 2 || fails[0].Object != "op-suzuki" || fails[0].Operator != "" || fails[0].Source != "127.0.0.1" {
		t.Fatalf("failed logins audited as %+v", fails)
	}

	// Password and TOTP: in.
	adm.login(ce.admin, ce.admin.password, ce.code(t, ce.admin))
	if who := adm.text("#whoami"); !strings.Contains(who, "op-suzuki") {
		t.Fatalf("after login: %q at %s", who, adm.location())
	}
	adm.shot("kiosks-empty")

	// Enroll a kiosk through the form; its bundle downloads; it connects.
	for sel, v := range map[string]string{"#e-id": "K-CONSOLE-1", "#e-store-name": "旭川駅前店", "#e-store-code": "S-0001",
		"#e-chain": "EXAMPLEMART", "#e-prefecture": "01", "#e-region": "hokkaido"} {
		adm.set(sel, v)
	}
	bundle := adm.download("#enroll")
	k := ce.connectKiosk(t, bundle)
	adm.waitFor("/kiosks?id=K-CONSOLE", `tr[data-kiosk="K-CONSOLE-1"] td.conn`, "接続中")
	adm.shot("kiosks")
	adm.open("/kiosks/K-CONSOLE-1")
	if v := adm.text("body"); !strings.Contains(v, "1.2.3-test") || !strings.Contains(v, "paper-low") {
		t.Errorf("kiosk page lacks its reported health: %q", v)
	}
	// The certificate its connection presented (after a renewal, the new one).
	if v := adm.text("#kiosk-cert"); !regexp.MustCompile(`シリアル [0-9a-f]{8,}, 有効期限 20\d\d-`).MatchString(v) {
		t.Errorf("kiosk page shows its certificate as %q", v)
	}
	adm.shot("kiosk")

	// Issuances, printed and paid.
	cards := ce.cards(t, 3)
	var certIDs []string
	var wantIssuances, wantCopies int
	for i, card := range cards {
		copies := i%2 + 1
		ids, perr := k.issue(t, card, copies)
		if perr != nil {
			t.Fatalf("issue %d refused: %v", i, perr)
		}
		certIDs = append(certIDs, ids...)
		wantIssuances++
		wantCopies += copies
	}

	// Find an issuance by certificate ID.
	adm.open("/audit")
	adm.set("#a-certificate", certIDs[0])
	adm.click("#audit-submit")
	issuedRows := eval[int](adm, fmt.Sprintf(`document.querySelectorAll('tr[data-type="issued"][data-certificate=%q]').length`, certIDs[0]))
	if issuedRows != 1 {
		t.Fatalf("audit search by certificate %s found %d issued rows", certIDs[0], issuedRows)
	}
	adm.shot("audit")

	// Settlement CSV: its totals are the issuances made above.
	adm.open("/settlement")
	adm.shot("settlement")
	csvBytes := adm.download("#settlement-export")
	rows, err := csv.NewReader(bytes.NewReader(csvBytes)).ReadAll()
	if err != nil || len(rows) < 2 || rows[0][0] != "period" {
		t.Fatalf("settlement CSV: %v\n%s", err, csvBytes)
	}
	var gotIssuances, gotCopies, gotFee int
	for _, r := range rows[1:] {
		gotIssuances += mustAtoi(t, r[6])
		gotCopies += mustAtoi(t, r[7])
		gotFee += mustAtoi(t, r[8])
		if r[3] != "EXAMPLEMART" {
			t.Errorf("settlement row of chain %q, want the kiosk's chain", r[3])
		}
	}
	if gotIssuances != wantIssuances || gotCopies != wantCopies || gotFee != wantCopies*ce.c.Config.FeePerCopyYen {
		t.Fatalf("settlement CSV totals %d issuances, %d copies, ¥%d; made %d issuances, %d copies", gotIssuances, gotCopies, gotFee, wantIssuances, wantCopies)
	}
	adm.open("/settlement/report?chain=EXAMPLEMART")
	if got := adm.text("#report-issuances"); got != strconv.Itoa(wantIssuances) {
		t.Errorf("monthly report per chain: %q issuances", got)
	}
	adm.shot("settlement-report")

	// Switch the first card's municipality off: the kiosk's next request
	// is refused.
	muni := cards[0].Municipality
	adm.open("/municipalities")
	adm.shot("municipalities")
	adm.click("#switch-" + muni)
	adm.shot("confirm")
	adm.click("#confirm")
	if p := adm.text("#participating-" + muni); !strings.Contains(p, "いいえ") {
		t.Fatalf("after switching off: %q", p)
	}
	if _, perr := k.issue(t, cards[0], 1); perr == nil || perr.Code != protocol.CodeNotParticipating {
		t.Fatalf("request for a switched-off municipality: %v", perr)
	}

	// An import job started through the operations API shows on the
	// municipalities page, and the console cancels it.
	job, err := ce.c.Admin.StartImport(context.Background(), admin.Actor{Operator: "op-setup", Source: "127.0.0.1"}, admin.ImportStart{Municipality: muni, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	adm.open("/municipalities")
	if st := adm.text(`[id="import-state-` + job.ID + `"]`); !strings.Contains(st, "waiting") {
		t.Fatalf("import job on the page: %q", st)
	}
	adm.shot("imports")
	adm.click(`[id="cancel-` + job.ID + `"]`)
	adm.click("#confirm")
	if st := adm.text(`[id="import-state-` + job.ID + `"]`); !strings.Contains(st, "cancelled") {
		t.Fatalf("import job after cancelling: %q", st)
	}
	if evs := auditEvents(t, ce, store.EventQuery{Type: store.EventRecordsImportCancel, Municipality: muni}); len(evs) != 1 || evs[0].Operator != "op-suzuki" {
		t.Fatalf("cancellation audited as %+v", evs)
	}

	// Rotate the SMART Health Card key: the JWKS changes.
	adm.open("/keys")
	before := adm.text("#jwks")
	adm.click("#rotate")
	adm.click("#confirm")
	after := adm.text("#jwks")
	if after == before || strings.Count(after, `"kid"`) != strings.Count(before, `"kid"`)+1 {
		t.Fatalf("JWKS after rotation:\n%s\nbefore:\n%s", after, before)
	}
	adm.shot("keys")

	// Revoke a certificate ID: it appears in its key's revocation list.
	adm.open("/revocations")
	adm.set("#r-certificate", certIDs[1])
	adm.click("#revoke-submit")
	adm.click("#confirm")
	crl := adm.text("pre.crl")
	if !strings.Contains(crl, `"rids"`) {
		t.Fatalf("revocation list as served: %q", crl)
	}
	if revs := auditEvents(t, ce, store.EventQuery{CertificateID: certIDs[1], Type: store.EventCertificateRevoke}); len(revs) != 1 || revs[0].Operator != "op-suzuki" {
		t.Fatalf("revocation audited as %+v", revs)
	}
	adm.shot("revocations")

	// The live page updates without a reload.
	adm.open("/live")
	adm.waitJS(`Number(document.getElementById("live").dataset.updates || 0) >= 1`)
	if n := adm.text("#kiosks-connected"); n != "1" {
		t.Errorf("live: %q kiosks connected", n)
	}
	adm.shot("live")
	adm.open("/operators")
	adm.shot("operators")

	// A viewer may look but not rotate a key, even with a forged form
	// carrying its own valid CSRF token.
	vw := ce.newTab(t, "viewer", true)
	vw.login(ce.viewer, ce.viewer.password, ce.code(t, ce.viewer))
	vw.open("/keys")
	rotateButtons := eval[int](vw, `document.querySelectorAll("#rotate").length`)
	if rotateButtons != 0 {
		t.Error("the keys page offers a viewer the rotation")
	}
	jwksBefore := vw.text("#jwks")
	eval[bool](vw, `(function(){window.__before=1;var f=document.createElement("form");f.method="post";f.action="/keys/rotate";
		var c=document.createElement("input");c.name="csrf";c.value=document.querySelector("input[name=csrf]").value;f.appendChild(c);
		var y=document.createElement("input");y.name="confirm";y.value="yes";f.appendChild(y);document.body.appendChild(f);f.submit();return true})()`)
	vw.waitJS(`!window.__before && document.readyState === "complete"`)
	if msg := vw.text("#message"); !strings.Contains(msg, "役割") {
		t.Errorf("viewer's forged rotation: %q", msg)
	}
	vw.shot("forbidden")
	vw.open("/keys")
	if vw.text("#jwks") != jwksBefore {
		t.Fatal("a viewer rotated the key")
	}

	// A page on another site posting to the console: refused, nothing changes.
	other := otherSite(t, ce.url+"/municipalities/"+muni+"/participation")
	adm.run(chromedp.Navigate(other))
	adm.waitJS(`location.host !== ` + fmt.Sprintf("%q", strings.TrimPrefix(other, "http://")) + ` && document.readyState === "complete"`)
	adm.shot("cross-site")
	if m, err := ce.c.Store.Municipality(context.Background(), muni); err != nil || m.Participating {
		t.Fatalf("a cross-site form switched %s back on (%v)", muni, err)
	}

	// An idle session expires.
	ce.clock.Advance(ce.c.Config.ConsoleSessionIdle.Duration + time.Minute)
	adm.open("/kiosks")
	if loc := adm.location(); !strings.Contains(loc, "/login?reason=expired") {
		t.Fatalf("after the idle time: at %s", loc)
	}
	adm.shot("expired")

	// Every action above left an event naming op-suzuki and the address.
	for _, typ := range []store.EventType{store.EventOperatorLogin, store.EventKioskEnrolled, store.EventParticipation, store.EventKeyRotated,
		store.EventCertificateRevoke, store.EventSettlementExport} {
		evs := auditEvents(t, ce, store.EventQuery{Operator: "op-suzuki", Type: typ})
		if len(evs) == 0 || evs[0].Source != "127.0.0.1" {
			t.Errorf("no %s event by op-suzuki from 127.0.0.1: %+v", typ, evs)
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// otherSite serves, on another origin, a page that submits a form to
// target at once (a cross-site request forgery attempt).
func otherSite(t *testing.T, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		l, err = net.Listen("tcp", "localhost:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id=f method=post action=%q><input name=participating value=true><input name=confirm value=yes></form><script>document.getElementById("f").submit()</script>`, target)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String() + "/"
}
