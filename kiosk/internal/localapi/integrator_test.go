package localapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow/flowtest"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/kiosk/internal/terminal"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// integRoutes are the integrator API's routes with concrete paths.
var integRoutes = []struct{ method, path string }{
	{"GET", "/api/v1/integrator/session"},
	{"POST", "/api/v1/integrator/session/start"},
	{"POST", "/api/v1/integrator/session/cancel"},
	{"GET", "/api/v1/integrator/events"},
	{"GET", "/api/v1/integrator/pending"},
	{"GET", "/api/v1/integrator/health"},
	{"POST", "/api/v1/integrator/payments/0123456789abcdef0123456789abcdef-1"},
	{"POST", "/api/v1/integrator/payments/0123456789abcdef0123456789abcdef-1/captured"},
	{"POST", "/api/v1/integrator/payments/0123456789abcdef0123456789abcdef-1/voided"},
	{"GET", "/api/v1/integrator/print-jobs/kioskcert-0123456789abcdef0123456789abcdef-1.pdf"},
	{"POST", "/api/v1/integrator/print-jobs/kioskcert-0123456789abcdef0123456789abcdef-1"},
	{"PUT", "/api/v1/integrator/printer"},
	{"GET", "/api/v1/integrator/no-such-route"},
}

func TestIntegratorRefusesWithoutToken(t *testing.T) {
	r := newIntegRig(t, integOptions{})
	for _, auth := range []struct{ name, header string }{
		{"none", ""},
		{"wrong token", "Bearer not-the-token-0123456789abcdef0123"},
		{"token prefix", "Bearer " + integToken[:len(integToken)-1]},
		{"token and more", "Bearer " + integToken + "x"},
		{"basic", "Basic " + integToken},
		{"lower-case scheme", "bearer " + integToken},
	} {
		for _, rt := range integRoutes {
			t.Run(auth.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				req, _ := http.NewRequest(rt.method, r.srv.URL+rt.path, strings.NewReader(`{"result":"paid"}`))
				if auth.header != "" {
					req.Header.Set("Authorization", auth.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var e struct{ Code string }
				json.NewDecoder(resp.Body).Decode(&e)
				if resp.StatusCode != http.StatusUnauthorized || e.Code != "unauthorized" {
					t.Errorf("got %d %q, want 401 unauthorized", resp.StatusCode, e.Code)
				}
			})
		}
	}
	// A request from a browser page elsewhere is refused before the token.
	req, _ := http.NewRequest("GET", r.srv.URL+"/api/v1/integrator/session", nil)
	req.Header.Set("Authorization", "Bearer "+integToken)
	req.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin request: %d, want 403", resp.StatusCode)
	}
	// Nothing was touched: no payment, no stream, no presence.
	if c := r.term.Counts(); c != (terminal.Counts{}) || r.term.Present() {
		t.Errorf("unauthorised requests changed the terminal: %+v present=%v", c, r.term.Present())
	}
}

func TestIntegratorWithoutTokenConfiguredRefusesAll(t *testing.T) {
	r := newIntegRig(t, integOptions{token: "-"})
	r.client.token = ""
	for _, rt := range integRoutes[:3] {
		if st, _ := r.client.do(rt.method, rt.path, nil); st != http.StatusUnauthorized {
			t.Errorf("%s %s: %d, want 401", rt.method, rt.path, st)
		}
	}
	r.client.token = " "
	if st, _ := r.client.do("GET", "/api/v1/integrator/session", nil); st != http.StatusUnauthorized {
		t.Errorf("blank token accepted: %d", st)
	}
}

// TestIntegratorSessionPaidAndPrintedOnce drives a whole session with the
// terminal as cash register and printer, and checks that nothing the
// integrator API returned carried the resident's data.
func TestIntegratorSessionPaidAndPrintedOnce(t *testing.T) {
	r := newIntegRig(t, integOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sawPreview := make(chan struct{}, 1)
	log := r.runTerminal(ctx, t, terminalScript{onSession: func(v localapi.SessionView) {
		if v.State == flow.StatePreview {
			// What the terminal can read while the resident checks the
			// certificate: none of it.
			for _, p := range []string{"/api/v1/integrator/session", "/api/v1/integrator/health", "/api/v1/integrator/pending"} {
				if st, b := r.client.do("GET", p, nil); st != http.StatusOK {
					t.Errorf("GET %s: %d %s", p, st, b)
				}
			}
			select {
			case sawPreview <- struct{}{}:
			default:
			}
		}
	}})
	res := r.play(t, "hanako", headless.Resident{Copies: 2})
	if err := res.Must(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sawPreview:
	case <-time.After(5 * time.Second):
		t.Fatal("the terminal never saw the preview state")
	}
	waitFor(t, "the capture", func() bool { return len(log.snapshot().captured) == 1 })
	got := log.snapshot()
	id := r.center.LastOutcome().RequestID
	want := []string{"authorize " + id + "-1", "print kioskcert-" + id + "-1", "capture " + id + "-1"}
	if !slices.Equal(got.events, want) {
		t.Errorf("terminal events %v, want %v", got.events, want)
	}
	if len(got.pdfs) != 1 || len(got.voided) != 0 {
		t.Errorf("printed %d, voided %v; want one print and no void", len(got.pdfs), got.voided)
	}
	if o := r.center.LastOutcome(); o.Outcome != protocol.OutcomePrinted || o.Copies != 2 {
		t.Errorf("outcome %+v", o)
	}
	// States the flow holds until the terminal acts are always seen; a
	// slow subscriber may miss one it passes through on its own (the
	// take-certificate reminder ends as soon as the test's resident takes
	// it), as Kiosk.Subscribe promises.
	for _, s := range []flow.State{flow.StatePreview, flow.StatePayment, flow.StatePrinting, flow.StateIdle} {
		if !slices.Contains(got.states, s) {
			t.Errorf("session events never showed %s (saw %v)", s, got.states)
		}
	}
	p, ok := r.term.Payment(id + "-1")
	if !ok || p.State != terminal.PaymentCaptured || p.AmountYen != 240 {
		t.Errorf("payment %+v", p)
	}
	// After the session: nothing pending, the PDF gone.
	var pend struct{ Events []terminal.Event }
	_, b := r.client.do("GET", "/api/v1/integrator/pending", nil)
	if err := json.Unmarshal(b, &pend); err != nil || len(pend.Events) != 0 {
		t.Errorf("pending after the session: %s", b)
	}
	if st, _ := r.client.do("GET", "/api/v1/integrator/print-jobs/kioskcert-"+id+"-1.pdf", nil); st != http.StatusGone {
		t.Errorf("PDF after the session: %d, want 410", st)
	}
	var h localapi.Health
	_, b = r.client.do("GET", "/api/v1/integrator/health", nil)
	if err := json.Unmarshal(b, &h); err != nil || h.Terminal == nil || h.Terminal.Streams != 1 || h.Terminal.PaymentsPending+h.Terminal.CapturesPending+h.Terminal.VoidsPending+h.Terminal.PrintJobsPending != 0 || h.State != flow.StateIdle {
		t.Errorf("health after the session: %s", b)
	}
	scanPersonal(t, "integrator API responses", r.client.Seen(), personalData(t, "hanako"))
}

func TestIntegratorPaperOutIsNotCharged(t *testing.T) {
	r := newIntegRig(t, integOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := r.runTerminal(ctx, t, terminalScript{print: func(j terminal.PrintJob) (map[string]string, bool) {
		if j.Attempt == 1 {
			return map[string]string{"result": "failed", "reason": "paper_out"}, false
		}
		return map[string]string{"result": "printed"}, false
	}})
	res := r.play(t, "taro", headless.Resident{RetryPrint: true})
	if err := res.Must(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.States, flow.StatePrintFailed) || res.Error != nil {
		t.Errorf("states %v, error %+v", res.States, res.Error)
	}
	waitFor(t, "the capture", func() bool { return len(log.snapshot().captured) == 1 })
	got := log.snapshot()
	id := r.center.LastOutcome().RequestID
	want := []string{
		"authorize " + id + "-1", "print kioskcert-" + id + "-1", "void " + id + "-1",
		"authorize " + id + "-2", "print kioskcert-" + id + "-2", "capture " + id + "-2",
	}
	if !slices.Equal(got.events, want) {
		t.Errorf("terminal events %v, want %v", got.events, want)
	}
	if got.voided[id+"-1"] != terminal.VoidPrintFailed || !slices.Equal(got.captured, []string{id + "-2"}) {
		t.Errorf("voided %v, captured %v", got.voided, got.captured)
	}
	var h localapi.Health
	_, b := r.client.do("GET", "/api/v1/integrator/health", nil)
	json.Unmarshal(b, &h)
	if o := r.center.LastOutcome(); o.Outcome != protocol.OutcomePrinted {
		t.Errorf("outcome %+v", o)
	}
	scanPersonal(t, "integrator API responses", r.client.Seen(), personalData(t, "taro"))
}

func TestIntegratorPaymentTimeoutVoids(t *testing.T) {
	r := newIntegRig(t, integOptions{timeouts: flow.Timeouts{Payment: 300 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pay terminal.Payment
	got := make(chan struct{})
	log := r.runTerminal(ctx, t, terminalScript{payment: func(p terminal.Payment) (map[string]string, bool) {
		pay = p
		close(got)
		return nil, true // the cash register never answers
	}})
	res := r.play(t, "hanako", headless.Resident{})
	if res.Printed || res.Error == nil || res.Error.Code != "payment_failed" {
		t.Fatalf("result %+v", res)
	}
	<-got
	if !pay.Deadline.After(time.Now().Add(-time.Minute)) {
		t.Errorf("payment event has no deadline: %+v", pay)
	}
	waitFor(t, "the void", func() bool { return len(log.snapshot().voided) == 1 })
	if reason := log.snapshot().voided[pay.ID]; reason != terminal.VoidExpired {
		t.Errorf("void reason %q, want expired", reason)
	}
	// The cash register wakes up too late: refused, nothing charged.
	st, b := r.client.do("POST", "/api/v1/integrator/payments/"+pay.ID, map[string]string{"result": "paid"})
	var e struct{ Code string }
	json.Unmarshal(b, &e)
	if st != http.StatusConflict || e.Code != "expired" {
		t.Errorf("late paid: %d %s, want 409 expired", st, b)
	}
	if p, _ := r.term.Payment(pay.ID); p.State != terminal.PaymentVoided {
		t.Errorf("payment %+v, want voided", p)
	}
	if len(log.snapshot().captured) != 0 || len(log.snapshot().pdfs) != 0 {
		t.Error("a timed-out payment was captured or printed")
	}
	if o := r.center.LastOutcome(); o.Outcome != protocol.OutcomeCancelled {
		t.Errorf("outcome %+v", o)
	}
}

func TestIntegratorPrintTimeoutVoidsAndForgetsPDF(t *testing.T) {
	r := newIntegRig(t, integOptions{timeouts: flow.Timeouts{Print: 300 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := r.runTerminal(ctx, t, terminalScript{print: func(j terminal.PrintJob) (map[string]string, bool) {
		return nil, true // fetches the PDF, never reports
	}})
	res := r.play(t, "hanako", headless.Resident{}) // no retry: cancel on print-failed
	if res.Printed {
		t.Fatal("printed")
	}
	waitFor(t, "the void", func() bool { return len(log.snapshot().voided) == 1 })
	got := log.snapshot()
	id := r.center.LastOutcome().RequestID
	want := []string{"authorize " + id + "-1", "print kioskcert-" + id + "-1", "cancel kioskcert-" + id + "-1", "void " + id + "-1"}
	if !slices.Equal(got.events, want) {
		t.Errorf("terminal events %v, want %v", got.events, want)
	}
	if got.voided[id+"-1"] != terminal.VoidPrintFailed || len(got.captured) != 0 {
		t.Errorf("voided %v captured %v", got.voided, got.captured)
	}
	st, _ := r.client.do("POST", "/api/v1/integrator/print-jobs/kioskcert-"+id+"-1", map[string]string{"result": "printed"})
	if st != http.StatusConflict {
		t.Errorf("late printed report: %d, want 409", st)
	}
	if o := r.center.LastOutcome(); o.Outcome != protocol.OutcomeFailed || o.Reason != protocol.CodePrinterFailed {
		t.Errorf("outcome %+v", o)
	}
}

func TestIntegratorAnswerErrors(t *testing.T) {
	r := newIntegRig(t, integOptions{})
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{"unknown payment", "POST", "/api/v1/integrator/payments/x-1", map[string]string{"result": "paid"}, 404, "not_found"},
		{"bad result", "POST", "/api/v1/integrator/payments/x-1", map[string]string{"result": "ok"}, 400, "bad_request"},
		{"unknown field", "POST", "/api/v1/integrator/payments/x-1", map[string]string{"result": "paid", "name": "x"}, 400, "bad_request"},
		{"no body", "POST", "/api/v1/integrator/payments/x-1", nil, 400, "bad_request"},
		{"unknown capture", "POST", "/api/v1/integrator/payments/x-1/captured", nil, 404, "not_found"},
		{"unknown job", "POST", "/api/v1/integrator/print-jobs/x-1", map[string]string{"result": "printed"}, 404, "not_found"},
		{"bad print result", "POST", "/api/v1/integrator/print-jobs/x-1", map[string]string{"result": "done"}, 400, "bad_request"},
		{"bad print reason", "POST", "/api/v1/integrator/print-jobs/x-1", map[string]string{"result": "failed", "reason": "fire"}, 400, "bad_request"},
		{"unknown PDF", "GET", "/api/v1/integrator/print-jobs/x-1.pdf", nil, 404, "not_found"},
		{"PDF without suffix", "GET", "/api/v1/integrator/print-jobs/x-1", nil, 404, "not_found"},
		{"bad printer state", "PUT", "/api/v1/integrator/printer", map[string]string{"state": "on fire"}, 400, "bad_request"},
		{"start without armed mode", "POST", "/api/v1/integrator/session/start", nil, 409, "start_not_enabled"},
		{"unknown route", "GET", "/api/v1/integrator/sessions", nil, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, b := r.client.do(tc.method, tc.path, tc.body)
			var e struct{ Code, Message string }
			if err := json.Unmarshal(b, &e); err != nil || st != tc.status || e.Code != tc.code || e.Message == "" {
				t.Errorf("got %d %s, want %d %s", st, b, tc.status, tc.code)
			}
		})
	}
}

func TestIntegratorPrinterState(t *testing.T) {
	r := newIntegRig(t, integOptions{})
	for _, tc := range []struct {
		state string
		ready bool
	}{{"paper-out", false}, {"jammed", false}, {"busy", true}, {"ready", true}} {
		t.Run(tc.state, func(t *testing.T) {
			st, b := r.client.do("PUT", "/api/v1/integrator/printer", map[string]string{"state": tc.state})
			var got struct {
				State string
				Ready bool
			}
			json.Unmarshal(b, &got)
			if st != http.StatusOK || got.State != tc.state || got.Ready != tc.ready {
				t.Errorf("got %d %s", st, b)
			}
		})
	}
}

func TestIntegratorNotEnabledWithoutTerminal(t *testing.T) {
	r := newIntegRig(t, integOptions{noTerminal: true})
	for _, rt := range []struct{ method, path string }{
		{"GET", "/api/v1/integrator/pending"},
		{"POST", "/api/v1/integrator/payments/x-1"},
		{"POST", "/api/v1/integrator/payments/x-1/voided"},
		{"GET", "/api/v1/integrator/print-jobs/x-1.pdf"},
		{"POST", "/api/v1/integrator/print-jobs/x-1"},
		{"PUT", "/api/v1/integrator/printer"},
	} {
		st, b := r.client.do(rt.method, rt.path, map[string]string{"result": "paid"})
		if st != http.StatusNotFound || !strings.Contains(string(b), "not_enabled") {
			t.Errorf("%s %s: %d %s", rt.method, rt.path, st, b)
		}
	}
	var h localapi.Health
	_, b := r.client.do("GET", "/api/v1/integrator/health", nil)
	if err := json.Unmarshal(b, &h); err != nil || h.Terminal != nil || !h.ReaderPresent || h.State != flow.StateIdle {
		t.Errorf("health %s", b)
	}
}

func TestIntegratorStartAndCancel(t *testing.T) {
	st := &integStarter{}
	r := newIntegRig(t, integOptions{starter: st})
	view := func(b []byte) localapi.SessionView {
		var v localapi.SessionView
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return v
	}
	code, b := r.client.do("POST", "/api/v1/integrator/session/start", nil)
	if code != http.StatusAccepted || !view(b).Armed || !st.Armed() {
		t.Fatalf("start: %d %s", code, b)
	}
	if _, b := r.client.do("GET", "/api/v1/integrator/session", nil); !view(b).Armed {
		t.Errorf("session not armed: %s", b)
	}
	code, b = r.client.do("POST", "/api/v1/integrator/session/cancel", nil)
	if code != http.StatusAccepted || view(b).Armed || st.Armed() {
		t.Fatalf("cancel: %d %s", code, b)
	}
	// A running session cannot be started again; cancel reaches the flow
	// where the resident could cancel (here: the PIN screen).
	card, _, err := flowtest.Cards(t).Card("hanako", virtualcard.Options{ExtendedLength: true})
	if err != nil {
		t.Fatal(err)
	}
	r.slot.Insert(card)
	waitFor(t, "the PIN screen", func() bool { return r.kiosk.Snapshot().State == flow.StatePIN })
	if code, b := r.client.do("POST", "/api/v1/integrator/session/start", nil); code != http.StatusConflict || !strings.Contains(string(b), "session_running") {
		t.Errorf("start during a session: %d %s", code, b)
	}
	// The answer shows the flow as it was when answered: still on the PIN
	// screen, or already on the cancelled screen (the flow may have acted
	// on the cancel first).
	if code, b := r.client.do("POST", "/api/v1/integrator/session/cancel", nil); code != http.StatusAccepted ||
		(view(b).State != flow.StatePIN && !(view(b).State == flow.StateError && strings.Contains(string(b), `"cancelled"`))) {
		t.Errorf("cancel: %d %s", code, b)
	}
	waitFor(t, "the cancelled screen", func() bool {
		s := r.kiosk.Snapshot()
		return s.State == flow.StateError && s.Error != nil && s.Error.Code == "cancelled"
	})
	r.slot.Remove()
	waitFor(t, "idle", func() bool { s := r.kiosk.Snapshot(); return s.State == flow.StateIdle && s.Session == "" })
}

func TestRedactLeavesOutPersonalData(t *testing.T) {
	res, err := flowtest.Cards(t).Residents.Resident("an")
	if err != nil {
		t.Fatal(err)
	}
	holder := certificate.Holder{Name: res.Name, FamilyName: strings.Fields(res.Name)[0], RomanFamily: res.RomanFamily,
		RomanGiven: res.RomanGiven, BirthDate: res.BirthDate, Sex: res.Sex, Nationality: res.Nationality, PassportNumber: res.PassportNumber}
	snap := flow.Snapshot{
		Session: "0123456789abcdef", State: flow.StatePreview, Seq: 9, Deadline: time.Now(),
		Municipalities: []protocol.Municipality{{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City"}},
		Kinds:          []certificate.Kind{certificate.Overseas}, MaxCopies: 5, FeePerCopyYen: 120,
		Municipality: "012041", Kind: certificate.Overseas, Copies: 2, FeeYen: 240,
		Preview:  []certificate.Certificate{{ID: "CERTID000001", Kind: certificate.Overseas, Holder: holder, SHC: "shc:/5676", VDSNC: res.PassportNumber}},
		Reminder: 1, CanRetry: true, Error: &flow.Message{Code: "timeout", Ja: "時間切れ", En: "Timed out"},
	}
	b, err := json.Marshal(localapi.Redact(snap))
	if err != nil {
		t.Fatal(err)
	}
	scanPersonal(t, "redacted snapshot", b, append(personalData(t, "an"), "CERTID000001", "shc:/", "012041", "overseas"))
	v := localapi.Redact(snap)
	if v.State != snap.State || v.Deadline != snap.Deadline || v.FeeYen != 240 || v.Copies != 2 || v.Error.Code != "timeout" || v.Seq != 9 {
		t.Errorf("redacted view lost what the terminal needs: %+v", v)
	}
	v.Error.Code = "changed"
	if snap.Error.Code != "timeout" {
		t.Error("the view shares the flow's message")
	}
}
