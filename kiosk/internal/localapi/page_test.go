package localapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow/flowtest"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// pageCenter offers one municipality and never issues: the page tests stop
// before the request.
type pageCenter struct{}

func (pageCenter) Hello() (protocol.Hello, bool) {
	return protocol.Hello{Municipalities: []protocol.Municipality{{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City"}},
		Kinds: []string{"domestic"}, MaxCopies: 5, FeePerCopyYen: 120}, true
}

func (pageCenter) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	return nil, protocol.NewError(req.RequestID, protocol.CodeUnavailable, "")
}

func (pageCenter) ReportOutcome(context.Context, protocol.Outcome) error { return nil }

type pageRenderer struct{}

func (pageRenderer) Render(io.Writer, ...*certificate.Certificate) error { return nil }

type pagePrinter struct{}

func (pagePrinter) Print(context.Context, string, []byte, int) error { return nil }

// pageKiosk is a running kiosk with a virtual card slot, its local server
// with the simulator's panel, and the server's handler.
type pageKiosk struct {
	kiosk   *flow.Kiosk
	sim     *localapi.Sim
	handler http.Handler
}

func newPageKiosk(t *testing.T, withSim bool) *pageKiosk {
	t.Helper()
	set := flowtest.Cards(t)
	slot := virtualcard.NewSlot("page-test", true)
	pay := localapi.NewSimPayment(false)
	k, err := flow.New(flow.Config{Reader: slot, Verifier: set.Verifier, Center: pageCenter{}, Renderer: pageRenderer{},
		Printer: pagePrinter{}, Payment: pay, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	p := &pageKiosk{kiosk: k}
	cfg := localapi.Config{Listen: "127.0.0.1:8800", Kiosk: k, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if withSim {
		p.sim = &localapi.Sim{Slot: slot, Cards: localapi.DemoCards(set), Payment: pay, Printer: &localapi.SimPrinter{P: pagePrinter{}}}
		cfg.Sim = p.sim
	}
	srv, err := localapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.handler = srv.Handler()
	flowtest.Start(t, k)
	return p
}

func (p *pageKiosk) do(method, path, host, origin, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://"+host+path, strings.NewReader(body))
	req.Host = host
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	p.handler.ServeHTTP(w, req)
	return w
}

// TestPageRoutes checks what the page's routes serve and refuse: only
// loopback Hosts (DNS rebinding), only the page's own origin, no directory
// listings, no simulator without simulator mode.
func TestPageRoutes(t *testing.T) {
	p := newPageKiosk(t, false)
	const host, self = "127.0.0.1:8800", "http://127.0.0.1:8800"
	const js = "application/json"
	tests := []struct {
		name, method, path, host, origin, ctype, body string
		status                                        int
		wantType                                      string
	}{
		{"page", "GET", "/", host, "", "", "", 200, "text/html; charset=utf-8"},
		{"page by localhost", "GET", "/", "localhost:8800", "", "", "", 200, "text/html; charset=utf-8"},
		{"page by IPv6 loopback", "GET", "/", "[::1]:8800", "", "", "", 200, "text/html; charset=utf-8"},
		{"rebinding host", "GET", "/", "kiosk.attacker.example:8800", "", "", "", 403, ""},
		{"LAN address as host", "GET", "/", "192.168.1.20:8800", "", "", "", 403, ""},
		{"script", "GET", "/ui/app.js", host, "", "", "", 200, "text/javascript; charset=utf-8"},
		{"styles", "GET", "/ui/style.css", host, "", "", "", 200, "text/css; charset=utf-8"},
		{"messages", "GET", "/ui/i18n/ja.json", host, "", "", "", 200, "application/json"},
		{"languages", "GET", "/ui/i18n/languages.json", host, "", "", "", 200, "application/json"},
		{"wards", "GET", "/ui/wards.json", host, "", "", "", 200, "application/json"},
		{"voice", "GET", "/audio/ja/idle.opus", host, "", "", "", 200, "audio/ogg; codecs=opus"},
		{"font", "GET", "/fonts/ipaexg.ttf", host, "", "", "", 200, "font/ttf"},
		{"no directory listing", "GET", "/ui/i18n/", host, "", "", "", 404, ""},
		{"no such file", "GET", "/ui/nothing.js", host, "", "", "", 404, ""},
		{"no simulator panel", "GET", "/sim/", host, "", "", "", 404, ""},
		{"no simulator files", "GET", "/ui/sim/sim.js", host, "", "", "", 404, ""},
		{"no simulator API", "POST", "/sim/api/card", host, self, js, `{"id":"hanako"}`, 404, ""},
		{"input the screen does not offer", "POST", "/api/v1/screen/input", host, self, js, `{"type":"cancel","state":"idle"}`, 409, ""},
		{"input from another origin", "POST", "/api/v1/screen/input", host, "http://attacker.example", js, `{"type":"cancel","state":"idle"}`, 403, ""},
		{"input from another port", "POST", "/api/v1/screen/input", host, "http://127.0.0.1:9999", js, `{"type":"cancel","state":"idle"}`, 403, ""},
		{"input from a null origin", "POST", "/api/v1/screen/input", host, "null", js, `{"type":"cancel","state":"idle"}`, 403, ""},
		{"input as a form", "POST", "/api/v1/screen/input", host, self, "application/x-www-form-urlencoded", `type=cancel`, 415, ""},
		{"input for another screen", "POST", "/api/v1/screen/input", host, self, js, `{"type":"confirm","state":"preview"}`, 409, ""},
		{"malformed input", "POST", "/api/v1/screen/input", host, self, js, `{"type":"pin","state":"idle","pin":"12"}`, 400, ""},
		{"oversized input", "POST", "/api/v1/screen/input", host, self, js, `{"type":"cancel","state":"idle","municipality":"` + strings.Repeat("x", 2000) + `"}`, 413, ""},
		{"input by GET", "GET", "/api/v1/screen/input", host, "", "", "", 405, ""},
		{"events from another origin", "GET", "/api/v1/screen/events", host, "http://attacker.example", "", "", 403, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := p.do(tc.method, tc.path, tc.host, tc.origin, tc.ctype, tc.body)
			if w.Code != tc.status {
				t.Fatalf("%s %s: HTTP %d (%s), want %d", tc.method, tc.path, w.Code, strings.TrimSpace(w.Body.String()), tc.status)
			}
			if tc.wantType != "" && w.Header().Get("Content-Type") != tc.wantType {
				t.Errorf("Content-Type %q, want %q", w.Header().Get("Content-Type"), tc.wantType)
			}
			if w.Code == 200 {
				if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", cc)
				}
				csp := w.Header().Get("Content-Security-Policy")
				for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'self'"} {
					if !strings.Contains(csp, want) {
						t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
					}
				}
			}
		})
	}

	var langs []struct{ Code, Name, Voice, File string }
	w := p.do("GET", "/ui/i18n/languages.json", host, "", "", "")
	if err := json.Unmarshal(w.Body.Bytes(), &langs); err != nil || len(langs) < 2 || langs[0].Code != "ja" {
		t.Fatalf("languages %s (%v): want Japanese first and at least English besides", w.Body, err)
	}
	page := p.do("GET", "/", host, "", "", "").Body.String()
	for _, external := range []string{"http://", "https://", "//cdn"} {
		if strings.Contains(page, external) {
			t.Errorf("the page refers to %s: the kiosk may be offline", external)
		}
	}
}

// sseReader reads snapshots from the page's event stream.
type sseReader struct {
	t  *testing.T
	sc *bufio.Scanner
}

func (r *sseReader) next() map[string]any {
	r.t.Helper()
	for r.sc.Scan() {
		data, ok := strings.CutPrefix(r.sc.Text(), "data: ")
		if !ok {
			continue
		}
		var snap map[string]any
		if err := json.Unmarshal([]byte(data), &snap); err != nil {
			r.t.Fatal(err)
		}
		return snap
	}
	r.t.Fatalf("event stream ended: %v", r.sc.Err())
	return nil
}

// until reads snapshots until one is in state.
func (r *sseReader) until(state string) map[string]any {
	r.t.Helper()
	for {
		if s := r.next(); s["state"] == state {
			return s
		}
	}
}

// TestScreenInputReachesTheCard drives a session over HTTP as the page
// does: the event stream shows the PIN screen with the tries left, a wrong
// PIN posted to the input route reaches the card (one try spent), and the
// right one reads it.
func TestScreenInputReachesTheCard(t *testing.T) {
	p := newPageKiosk(t, true)
	ts := httptest.NewServer(p.handler)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/screen/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events Content-Type %q", ct)
	}
	events := &sseReader{t: t, sc: bufio.NewScanner(resp.Body)}
	first := events.next()
	for key := range first {
		if key != "state" && key != "seq" && key != "ready" {
			t.Fatalf("idle snapshot %v carries %s; want only the state, sequence and readiness", first, key)
		}
	}

	post := func(body string) int {
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/api/v1/screen/input", bytes.NewBufferString(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", ts.URL)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if err := p.sim.Insert("hanako"); err != nil {
		t.Fatal(err)
	}
	s := events.until("pin")
	if s["triesLeft"] != float64(3) || s["remainingMs"] == nil {
		t.Fatalf("PIN snapshot %v, want 3 tries left and the time left", s)
	}
	if code := post(`{"type":"pin","state":"pin","pin":"0000"}`); code != 204 {
		t.Fatalf("wrong PIN: HTTP %d", code)
	}
	s = events.until("pin")
	if s["wrongPin"] != true || s["triesLeft"] != float64(2) {
		t.Fatalf("after a wrong PIN %v, want wrongPin and 2 tries left", s)
	}
	if code := post(`{"type":"pin","state":"pin","pin":"1234"}`); code != 204 {
		t.Fatalf("right PIN: HTTP %d", code)
	}
	events.until("remove-card")
	if p.sim.Inserted() != "hanako" {
		t.Fatal("the simulator lost track of the card")
	}
	p.sim.Remove()
	events.until("municipality")
	if code := post(`{"type":"cancel","state":"municipality"}`); code != 204 {
		t.Fatalf("cancel: HTTP %d", code)
	}
	events.until("idle")
}
