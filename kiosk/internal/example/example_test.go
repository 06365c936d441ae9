package example

// These tests run the example terminal against a real kiosk agent
// (agent.New: mutual TLS to a real demo issuance center process, the
// integrator API on loopback with its token file, the terminal as cash
// register and printer) while a scripted resident (kiosk/internal/headless)
// with a virtual My Number card plays the screen side.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/kiosk/internal/demo"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// env is the demo center and card authority the tests share, set up by
// the first test that needs it (fuzzing needs none) and torn down by
// TestMain.
var env struct {
	once   sync.Once
	err    error
	root   string
	center *demo.Center
	trust  string
	cards  *virtualcard.DemoSet
}

var kioskIDs = []string{"EX-FULL", "EX-PAPER", "EX-DECLINE", "EX-ARMED"}

func TestMain(m *testing.M) {
	code := m.Run()
	if env.center != nil {
		env.center.Stop()
	}
	if env.root != "" {
		os.RemoveAll(env.root)
	}
	os.Exit(code)
}

// setup builds the issuance-center binary and starts a demo center with
// the demo municipalities and records and the test kiosks enrolled.
func setup(t *testing.T) {
	t.Helper()
	env.once.Do(func() { env.err = setupEnv() })
	if env.err != nil {
		t.Fatalf("test environment: %v", env.err)
	}
}

func setupEnv() error {
	root, err := os.MkdirTemp("", "kioskcert-example-")
	if err != nil {
		return err
	}
	env.root = root
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := demo.BuildCenter(ctx, root)
	if err != nil {
		return err
	}
	auth, trust, err := demo.NewAuthority(filepath.Join(root, "jlis"))
	if err != nil {
		return err
	}
	env.trust = trust
	if env.cards, err = virtualcard.NewDemoSet(auth); err != nil {
		return err
	}
	center, err := demo.SetupCenter(ctx, bin, filepath.Join(root, "center"), trust, kioskIDs...)
	if err != nil {
		return err
	}
	if err := center.Start(ctx); err != nil {
		return err
	}
	env.center = center
	return nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// rig is one kiosk agent with the example terminal attached.
type rig struct {
	agent *agent.Agent
	slot  *virtualcard.Slot
	ex    *Integrator
	out   string
	seen  *lockedBuffer // everything the terminal received, PDFs aside
	logs  *lockedBuffer // the agent's log
}

// newRig starts an agent for kiosk id (terminal payment and printer, the
// integrator API on a free loopback port) and the example terminal.
func newRig(t *testing.T, id string, start string, o Options) *rig {
	t.Helper()
	setup(t)
	dir := t.TempDir()
	// The demo writes a spool-printer configuration; the terminal replaces
	// its printer and payment, as an integrator's kiosk.json would.
	cfg, _, err := env.center.KioskConfig(id, env.trust, config.Reader{Kind: "virtual"}, config.Printer{Kind: "spool", SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Printer = config.Printer{Kind: "terminal"}
	cfg.Payment = config.Payment{Mode: "terminal"}
	cfg.Listen = "127.0.0.1:0"
	cfg.Integrator = &config.Integrator{TokenFile: filepath.Join(dir, "integrator.token"), Start: start}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &rig{slot: virtualcard.NewSlot(id, true), out: filepath.Join(dir, "paper"), seen: &lockedBuffer{}, logs: &lockedBuffer{}}
	if err := os.Mkdir(r.out, 0o700); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.agent, err = agent.New(cfg, agent.Options{Reader: r.slot, Log: log,
		Timeouts: flow.Timeouts{Reminder: 50 * time.Millisecond, Error: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(cfg.Integrator.TokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.agent.Run(ctx) }()
	tok, err := ReadToken(cfg.Integrator.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	o.URL, o.Token, o.OutDir = "http://"+r.agent.Server.Addr(), tok, r.out
	o.Log = log.With("side", "terminal")
	o.Trace = func(what string, b []byte) { r.seen.Write(b); r.seen.Write([]byte{'\n'}) }
	if r.ex, err = New(o); err != nil {
		t.Fatal(err)
	}
	exCtx, exCancel := context.WithCancel(context.Background())
	exDone := make(chan error, 1)
	go func() { exDone <- r.ex.Run(exCtx) }()
	t.Cleanup(func() {
		exCancel()
		<-exDone
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent.Run: %v", err)
		}
		r.agent.Close()
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := r.agent.Client.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	if err := r.ex.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// play runs the demo resident id through one session.
func (r *rig) play(t *testing.T, id string, kind certificate.Kind, res headless.Resident) *headless.Result {
	t.Helper()
	card, resident, err := env.cards.Card(id, virtualcard.Options{ExtendedLength: true})
	if err != nil {
		t.Fatal(err)
	}
	res.PIN, res.Municipality, res.Kind, res.Copies = resident.PIN, "012041", kind, 1
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := headless.Run(ctx, r.agent.Kiosk, demo.SlotCard{Slot: r.slot, Card: card}, res)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// settled waits until the terminal has nothing open and the center has
// acknowledged every outcome.
func (r *rig) settled(t *testing.T) Health {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := r.ex.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if h.Terminal != nil && h.Terminal.PaymentsPending+h.Terminal.CapturesPending+h.Terminal.VoidsPending+h.Terminal.PrintJobsPending == 0 && h.PendingOutcomes == 0 {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled: %+v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ledgerOnce returns the integrator's ledger as soon as ready says it is
// complete, or as it stands after five seconds. The integrator books an
// answer once the kiosk has taken it, which may be just after the kiosk has
// moved on (and settled reports nothing pending).
func (r *rig) ledgerOnce(t *testing.T, ready func(Ledger) bool) Ledger {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := r.ex.Ledger()
		if ready(l) || time.Now().After(deadline) {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// printed returns the files the terminal "printed".
func (r *rig) printed(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(r.out, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// checkNoPersonalData scans what the terminal received and the agent's log
// for the resident's data.
func (r *rig) checkNoPersonalData(t *testing.T, id string) {
	t.Helper()
	res, err := env.cards.Residents.Resident(id)
	if err != nil {
		t.Fatal(err)
	}
	values := []string{res.MyNumber, res.Name, strings.NewReplacer(" ", "", "\u3000", "").Replace(res.Name), res.NameKana,
		res.BirthDate, res.CardBirthDate(), res.Address, res.PassportNumber, res.RomanFamily, res.RomanGiven}
	values = append(values, strings.Fields(res.Name)...)
	for what, b := range map[string][]byte{"integrator API responses": r.seen.Bytes(), "agent log": r.logs.Bytes()} {
		if len(b) == 0 {
			t.Fatalf("%s: nothing recorded", what)
		}
		for _, v := range values {
			if v == "" {
				continue
			}
			esc, _ := json.Marshal(v)
			if bytes.Contains(b, []byte(v)) || bytes.Contains(b, esc[1:len(esc)-1]) {
				t.Errorf("%s holds the resident's data (%d-byte value)", what, len(v))
			}
		}
	}
}

func TestFullSessionPaidAndPrintedOnce(t *testing.T) {
	r := newRig(t, "EX-FULL", "", Options{})
	res := r.play(t, "hanako", certificate.Domestic, headless.Resident{})
	if err := res.Must(); err != nil {
		t.Fatal(err)
	}
	h := r.settled(t)
	l := r.ledgerOnce(t, func(l Ledger) bool { return len(l.Captured) > 0 })
	if len(l.Authorized) != 1 || len(l.Captured) != 1 || l.CapturedYen() != 120 || len(l.Voided) != 0 || len(l.Failed) != 0 {
		t.Errorf("ledger %+v: want one payment of ¥120, captured once", l)
	}
	files := r.printed(t)
	if len(files) != 1 || !slices.Equal(files, l.Printed) {
		t.Fatalf("printed %v (ledger %v), want exactly one file", files, l.Printed)
	}
	for pid := range l.Captured {
		if _, ok := l.Authorized[pid]; !ok {
			t.Errorf("captured %s without authorising it", pid)
		}
	}
	// The file is the PDF the agent announced (the example checked its
	// size and SHA-256 before printing), complete. Its QR codes are
	// verified end to end in kiosk/internal/e2e.
	if b, err := os.ReadFile(files[0]); err != nil || !bytes.HasPrefix(b, []byte("%PDF-")) || !bytes.Contains(b[max(0, len(b)-32):], []byte("%%EOF")) {
		t.Errorf("printed file is not a complete PDF: %v", err)
	}
	if !h.CenterConnected || !h.ReaderPresent || !h.PrinterReady || h.Printer != "ready" || h.State != "idle" || h.LastError != "" {
		t.Errorf("health after the session: %+v", h)
	}
	if !r.agent.Kiosk.Wiped() {
		t.Error("session data left in the agent")
	}
	r.checkNoPersonalData(t, "hanako")
	r.checkRefused(t)
}

// checkRefused sends requests the real agent must refuse: no or a wrong
// token, a browser page's Origin, a rebound Host name.
func (r *rig) checkRefused(t *testing.T) {
	t.Helper()
	base := "http://" + r.agent.Server.Addr() + "/api/v1/integrator/"
	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		host               string
		want               int
	}{
		{"no token", "GET", "health", nil, "", http.StatusUnauthorized},
		{"wrong token", "GET", "session", map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 43)}, "", http.StatusUnauthorized},
		{"no token, payment", "POST", "payments/x-1", nil, "", http.StatusUnauthorized},
		{"no token, PDF", "GET", "print-jobs/x-1.pdf", nil, "", http.StatusUnauthorized},
		{"foreign origin", "GET", "health", map[string]string{"Authorization": "Bearer " + r.ex.o.Token, "Origin": "http://attacker.example"}, "", http.StatusForbidden},
		{"rebound host", "GET", "health", map[string]string{"Authorization": "Bearer " + r.ex.o.Token}, "attacker.example", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(`{"result":"paid"}`))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestPaperOutIsNotChargedAndRetried(t *testing.T) {
	r := newRig(t, "EX-PAPER", "", Options{FailPrints: []string{"paper_out"}})
	res := r.play(t, "taro", certificate.Domestic, headless.Resident{RetryPrint: true})
	if err := res.Must(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.States, flow.StatePrintFailed) {
		t.Errorf("states %v: the resident was not told of the paper", res.States)
	}
	h := r.settled(t)
	l := r.ledgerOnce(t, func(l Ledger) bool { return len(l.Captured) > 0 && len(l.Voided) > 0 })
	if len(l.Authorized) != 2 || len(l.Voided) != 1 || len(l.Captured) != 1 || l.CapturedYen() != 120 {
		t.Fatalf("ledger %+v: want two authorisations, the first voided, the second captured", l)
	}
	for pid, reason := range l.Voided {
		if _, captured := l.Captured[pid]; captured || reason != "print_failed" {
			t.Errorf("payment %s voided (%s) and captured=%v", pid, reason, captured)
		}
	}
	if len(l.Failed) != 1 || len(r.printed(t)) != 1 {
		t.Errorf("failed %v, printed %v", l.Failed, r.printed(t))
	}
	if h.LastError != "printer_paper_out" {
		t.Errorf("health last error %q, want printer_paper_out", h.LastError)
	}
	if b, err := os.ReadFile(r.printed(t)[0]); err != nil || !bytes.HasPrefix(b, []byte("%PDF-")) {
		t.Errorf("printed file is not a PDF: %v", err)
	}
	r.checkNoPersonalData(t, "taro")
}

func TestDeclinedPaymentPrintsNothing(t *testing.T) {
	r := newRig(t, "EX-DECLINE", "", Options{Decline: 1})
	res := r.play(t, "hanako", certificate.Domestic, headless.Resident{})
	if res.Printed || res.Error == nil || res.Error.Code != "payment_failed" {
		t.Fatalf("result %+v, want payment_failed", res)
	}
	h := r.settled(t)
	l := r.ledgerOnce(t, func(l Ledger) bool { return len(l.Declined) > 0 })
	if len(l.Declined) != 1 || len(l.Authorized) != 0 || len(l.Captured) != 0 || len(r.printed(t)) != 0 {
		t.Errorf("ledger %+v, printed %v", l, r.printed(t))
	}
	if h.LastError != "payment_failed" {
		t.Errorf("health last error %q", h.LastError)
	}
}

// TestArmedModeWaitsForTheTerminal: with integrator start "terminal" a card
// starts nothing until the terminal hands over the screen.
func TestArmedModeWaitsForTheTerminal(t *testing.T) {
	r := newRig(t, "EX-ARMED", "terminal", Options{})
	done := make(chan *headless.Result, 1)
	go func() { done <- r.play(t, "hanako", certificate.Domestic, headless.Resident{}) }()
	waitCardOn := time.Now().Add(5 * time.Second)
	for present, _ := r.slot.CardPresent(context.Background()); !present; present, _ = r.slot.CardPresent(context.Background()) {
		if time.Now().After(waitCardOn) {
			t.Fatal("the resident never placed the card")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if s := r.agent.Kiosk.Snapshot(); s.State != flow.StateIdle || s.Session != "" {
		t.Fatalf("a session started before the terminal handed over: %s", s.State)
	}
	// The answer shows the kiosk armed, or the session it started already
	// (the card was waiting on the reader).
	s, err := r.ex.Start(context.Background())
	if err != nil || (!s.Armed && s.Session == "") {
		t.Fatalf("start: %+v %v", s, err)
	}
	var res *headless.Result
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("session did not finish")
	}
	if err := res.Must(); err != nil {
		t.Fatal(err)
	}
	r.settled(t)
	if l := r.ledgerOnce(t, func(l Ledger) bool { return len(l.Captured) > 0 }); len(l.Captured) != 1 || len(r.printed(t)) != 1 {
		t.Errorf("ledger %+v", l)
	}
	if s, _ := r.ex.Cancel(context.Background()); s.Armed {
		t.Error("still armed after the session")
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Add([]byte("event: session\ndata: {\"state\":\"idle\"}\n\n"))
	f.Add([]byte(": keepalive\n\nid: 3\nevent: payment.authorize\ndata: {}\n\n"))
	f.Add([]byte("data: a\ndata: b\n\n"))
	f.Add([]byte("event:x\r\ndata:y\r\n\r\n"))
	f.Add([]byte("retry: 2000\n\nevent: print.job\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var got [][2]string
		err := ReadEvents(bytes.NewReader(in), func(name string, data []byte) error {
			got = append(got, [2]string{name, string(data)})
			return nil
		})
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "token too long") {
			t.Fatalf("ReadEvents: %v", err)
		}
		// Writing what was read and reading it again gives the same events
		// (names and data without line breaks survive unchanged).
		var buf bytes.Buffer
		for _, ev := range got {
			if strings.ContainsAny(ev[0], "\r\n") || strings.ContainsAny(ev[1], "\r\n") || strings.HasPrefix(ev[0], " ") {
				return
			}
			fmt.Fprintf(&buf, "event: %s\ndata: %s\n\n", ev[0], ev[1])
		}
		var again [][2]string
		ReadEvents(&buf, func(name string, data []byte) error {
			again = append(again, [2]string{name, string(data)})
			return nil
		})
		if !slices.Equal(got, again) {
			t.Fatalf("round trip: %q != %q", got, again)
		}
	})
}

// TestRunStopsOnRefusal: an agent without the integrator API (404) or
// refusing the token (401) stops Run at once with an error that says
// what to fix, instead of a silent retry loop.
func TestRunStopsOnRefusal(t *testing.T) {
	for _, c := range []struct {
		status int
		want   error
	}{{http.StatusNotFound, ErrNoIntegratorAPI}, {http.StatusUnauthorized, ErrUnauthorized}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", c.status)
		}))
		ex, err := New(Options{URL: srv.URL, Token: strings.Repeat("t", 43), OutDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = ex.Run(ctx)
		late := ctx.Err()
		cancel()
		srv.Close()
		if !errors.Is(err, c.want) || late != nil {
			t.Errorf("HTTP %d: Run = %v, want %v at once", c.status, err, c.want)
		}
	}
}
