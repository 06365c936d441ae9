package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/demo"
	"github.com/kioskcert/kioskcert/kiosk/internal/example"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
)

// TestSimulator runs `make run`'s simulator with the real demo center and
// plays one resident through it over HTTP, as the panel and the page do:
// place the demo card, type the PIN, take the card, choose, confirm, pay
// on the panel, take the certificate. The PDF lands in the spool folder.
func TestSimulator(t *testing.T) {
	center, err := demo.BuildCenter(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := filepath.Join(t.TempDir(), "sim")
	sim, err := start(ctx, options{
		listen: "127.0.0.1:0", out: out, center: center,
		timeouts: flow.Timeouts{Reminder: 200 * time.Millisecond},
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			sim.wait()
		}
	}()
	base := strings.TrimSuffix(sim.url, "/")
	origin := base

	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", base+"/api/v1/screen/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	until := func(state string) map[string]any {
		t.Helper()
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var s map[string]any
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				t.Fatal(err)
			}
			// The idle screen takes a card once the kiosk is ready for one.
			if s["state"] == state && (state != "idle" || s["ready"] == true) {
				return s
			}
			if s["state"] == "error" {
				t.Fatalf("error screen while waiting for %s: %v", state, s["error"])
			}
		}
		t.Fatalf("event stream ended waiting for %s: %v", state, sc.Err())
		return nil
	}
	post := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(rctx, "POST", base+path, bytes.NewBufferString(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("POST %s %s: HTTP %d %s", path, body, resp.StatusCode, b)
		}
	}

	until("idle")
	post("/sim/api/card", `{"id":"hanako"}`)
	until("pin")
	post("/api/v1/screen/input", `{"type":"pin","state":"pin","pin":"1234"}`)
	until("remove-card")
	post("/sim/api/card", `{"id":""}`)
	until("municipality")
	post("/api/v1/screen/input", `{"type":"municipality","state":"municipality","municipality":"012041"}`)
	until("kind")
	post("/api/v1/screen/input", `{"type":"kind","state":"kind","kind":"domestic"}`)
	until("copies")
	post("/api/v1/screen/input", `{"type":"copies","state":"copies","copies":1}`)
	preview := until("preview")
	certs, _ := preview["preview"].([]any)
	if len(certs) != 1 || !strings.Contains(mustJSON(t, certs[0]), "試験") {
		t.Fatalf("preview %v, want the demo resident's certificate", preview["preview"])
	}
	post("/api/v1/screen/input", `{"type":"confirm","state":"preview"}`)
	until("payment")
	// The panel approves once the store terminal asks.
	deadline := time.Now().Add(10 * time.Second)
	for {
		amount, pending := sim.sim.Payment.Pending()
		if pending {
			if amount != 120 {
				t.Fatalf("terminal asks for ¥%d, want ¥120", amount)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the store terminal was never asked for the payment")
		}
		time.Sleep(20 * time.Millisecond)
	}
	post("/sim/api/payment", `{"approve":true}`)
	until("take-certificate")
	post("/api/v1/screen/input", `{"type":"stop","state":"take-certificate"}`)
	until("idle")

	pdfs, err := filepath.Glob(filepath.Join(sim.spool, "*.pdf"))
	if err != nil || len(pdfs) != 1 {
		t.Fatalf("spool has %v (%v), want one printed certificate", pdfs, err)
	}
	if got := sim.sim.Payment.Ledger.CapturedYen(); got != 120 {
		t.Fatalf("captured ¥%d, want ¥120", got)
	}

	// The integrator API is on, behind the token in the file printed at
	// start: what README.md's curl call does, then the example terminal.
	tok, err := example.ReadToken(sim.token)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {tok, http.StatusOK}} {
		req, _ := http.NewRequestWithContext(rctx, "GET", base+"/api/v1/integrator/health", nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET /api/v1/integrator/health with token %v: HTTP %d %s, want %d", c.token != "", resp.StatusCode, b, c.want)
		}
		if c.want == http.StatusOK && !strings.Contains(string(b), `"centerConnected":true`) {
			t.Errorf("health %s, want the center connected", b)
		}
	}
	ex, err := example.New(example.Options{URL: base, Token: tok, OutDir: sim.paper, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	exCtx, exStop := context.WithCancel(rctx)
	exDone := make(chan error, 1)
	go func() { exDone <- ex.Run(exCtx) }()
	wctx, wcancel := context.WithTimeout(rctx, 10*time.Second)
	if err := ex.WaitConnected(wctx); err != nil {
		t.Errorf("the example integrator did not connect: %v", err)
	}
	wcancel()
	exStop()
	if err := <-exDone; err != nil {
		t.Errorf("the example integrator: %v", err)
	}

	cancel()
	stopped = true
	if err := sim.wait(); err != nil {
		t.Fatalf("stopping the simulator: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
