package localapi_test

// The integrator API's test rig: a real flow.Kiosk (virtual card, the real
// PDF renderer, flowtest's fake center answering from the demo residents) whose
// payment and printer are a terminal.Terminal, behind the real local
// server on httptest, and a test terminal that speaks the API over HTTP.
// Names start with "integ" so they cannot clash with the touch screen's
// tests in this package.

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
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/demo"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow/flowtest"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/kiosk/internal/terminal"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

const integToken = "integrator-test-token-0123456789abcdef"

// integStarter is the armed mode as the agent implements it, reduced to
// its flag (the agent's gate is tested in the agent package).
type integStarter struct {
	mu    sync.Mutex
	armed bool
}

func (s *integStarter) Arm()        { s.mu.Lock(); s.armed = true; s.mu.Unlock() }
func (s *integStarter) Armed() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.armed }
func (s *integStarter) Disarm() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.armed
	s.armed = false
	return was
}

type integRig struct {
	kiosk  *flow.Kiosk
	center *flowtest.Center
	term   *terminal.Terminal
	slot   *virtualcard.Slot
	srv    *httptest.Server
	client *integClient
}

type integOptions struct {
	timeouts   flow.Timeouts
	noTerminal bool
	starter    localapi.Starter
	token      string // "" uses integToken; "-" configures none
}

func newIntegRig(t *testing.T, o integOptions) *integRig {
	t.Helper()
	cards := flowtest.Cards(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &integRig{
		center: flowtest.NewCenter(cards),
		term:   terminal.New(terminal.Config{Log: quiet, AckTimeout: 2 * time.Second}),
		slot:   virtualcard.NewSlot("integ", true),
	}
	if o.timeouts.Reminder == 0 {
		o.timeouts.Reminder = 20 * time.Millisecond
	}
	if o.timeouts.Error == 0 {
		o.timeouts.Error = 200 * time.Millisecond
	}
	var err error
	r.kiosk, err = flow.New(flow.Config{
		Reader: r.slot, Verifier: cards.Verifier, Center: r.center, Renderer: flowtest.Renderer(t),
		Printer: agent.Printer{P: r.term}, Payment: r.term, PrintCode: agent.PrintCode,
		Timeouts: o.timeouts, Log: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	integ := &localapi.Integrator{
		Terminal: r.term,
		Health: func(context.Context) localapi.Health {
			return localapi.Health{ReaderPresent: true, Reader: "ok", CenterConnected: true, PrinterReady: true, Printer: "ready"}
		},
		Starter: o.starter,
	}
	if o.noTerminal {
		integ.Terminal = nil
	}
	token := o.token
	switch token {
	case "":
		token = integToken
	case "-":
		token = ""
	}
	s, err := localapi.New(localapi.Config{Listen: "127.0.0.1:0", Kiosk: r.kiosk, Token: token, Integrator: integ, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(s.Handler())
	r.client = &integClient{t: t, base: r.srv.URL, token: integToken}
	flowtest.Start(t, r.kiosk)
	// Registered after Start, so it runs first: the terminal and the server
	// go before the kiosk stops.
	t.Cleanup(func() {
		r.term.Close()
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
	return r
}

// play runs the demo resident id through one session.
func (r *integRig) play(t *testing.T, id string, res headless.Resident) *headless.Result {
	t.Helper()
	card, resident, err := flowtest.Cards(t).Card(id, virtualcard.Options{ExtendedLength: true})
	if err != nil {
		t.Fatal(err)
	}
	res.PIN, res.Municipality, res.Kind = resident.PIN, "012041", certificate.Domestic
	if res.Copies == 0 {
		res.Copies = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := headless.Run(ctx, r.kiosk, demo.SlotCard{Slot: r.slot, Card: card}, res)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// integClient is the test terminal's HTTP side. It keeps every response
// body (PDFs aside) and every event stream byte, for the personal-data scan.
type integClient struct {
	t     *testing.T
	base  string
	token string

	mu   sync.Mutex
	seen bytes.Buffer
}

func (c *integClient) record(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen.Write(b)
	c.seen.WriteByte('\n')
}

// Seen returns everything recorded.
func (c *integClient) Seen() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.seen.Bytes())
}

// do sends a request with the token and returns the status and body. A
// PDF body is returned but not recorded.
func (c *integClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") != "application/pdf" {
		c.record(b)
	}
	return resp.StatusCode, b
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name string
	data []byte
}

// stream opens the event stream and delivers its events until ctx ends.
func (c *integClient) stream(ctx context.Context) <-chan sseEvent {
	c.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/integrator/events", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		c.t.Fatalf("event stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 256)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Bytes()
			c.record(line)
			switch {
			case len(line) == 0:
				if ev.name != "" {
					select {
					case out <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case bytes.HasPrefix(line, []byte("event: ")):
				ev.name = string(line[len("event: "):])
			case bytes.HasPrefix(line, []byte("data: ")):
				ev.data = append(ev.data, line[len("data: "):]...)
			}
		}
	}()
	return out
}

// terminalScript says how the test terminal answers.
type terminalScript struct {
	// payment answers each authorisation (by attempt); nil answers paid.
	payment func(p terminal.Payment) (answer map[string]string, skip bool)
	// print reports each job (by attempt) after fetching its PDF; nil
	// reports printed. skip leaves the job unanswered.
	print func(j terminal.PrintJob) (report map[string]string, skip bool)
	// onSession sees every session view.
	onSession func(v localapi.SessionView)
}

// terminalSeen is what the test terminal did and saw.
type terminalSeen struct {
	events   []string // "type id" in order
	captured []string
	voided   map[string]string // payment ID -> void reason
	pdfs     map[string][]byte // job ID -> PDF
	states   []flow.State
}

// terminalLog is terminalSeen while the test terminal runs.
type terminalLog struct {
	mu sync.Mutex
	terminalSeen
}

func (l *terminalLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, s)
}

// runTerminal follows the event stream and answers per script until ctx
// ends. Every answer is sent twice (the second must be accepted: answers
// are idempotent), and a contradicting answer once (it must be refused).
func (r *integRig) runTerminal(ctx context.Context, t *testing.T, sc terminalScript) *terminalLog {
	c := r.client
	log := &terminalLog{terminalSeen: terminalSeen{voided: map[string]string{}, pdfs: map[string][]byte{}}}
	events := c.stream(ctx)
	go func() {
		for ev := range events {
			switch terminal.EventType(ev.name) {
			case "session":
				var v localapi.SessionView
				if err := json.Unmarshal(ev.data, &v); err != nil {
					t.Errorf("session event: %v", err)
					continue
				}
				log.mu.Lock()
				if n := len(log.states); n == 0 || log.states[n-1] != v.State {
					log.states = append(log.states, v.State)
				}
				log.mu.Unlock()
				if sc.onSession != nil {
					sc.onSession(v)
				}
				continue
			}
			var e terminal.Event
			if err := json.Unmarshal(ev.data, &e); err != nil {
				t.Errorf("%s event: %v", ev.name, err)
				continue
			}
			if string(e.Type) != ev.name {
				t.Errorf("event named %s carries type %s", ev.name, e.Type)
			}
			switch e.Type {
			case terminal.EventPaymentAuthorize:
				p := *e.Payment
				log.add("authorize " + p.ID)
				answer, skip := map[string]string{"result": "paid"}, false
				if sc.payment != nil {
					answer, skip = sc.payment(p)
				}
				if skip {
					continue
				}
				path := "/api/v1/integrator/payments/" + p.ID
				for range 2 {
					if st, b := c.do("POST", path, answer); st != http.StatusOK {
						t.Errorf("answer %v: %d %s", answer, st, b)
					}
				}
				contra := map[string]string{"result": "failed"}
				if answer["result"] == "failed" {
					contra = map[string]string{"result": "paid"}
				}
				if st, b := c.do("POST", path, contra); st != http.StatusConflict {
					t.Errorf("contradicting answer: %d %s, want 409", st, b)
				}
			case terminal.EventPaymentCapture:
				log.add("capture " + e.Payment.ID)
				for range 2 {
					if st, b := c.do("POST", "/api/v1/integrator/payments/"+e.Payment.ID+"/captured", nil); st != http.StatusOK {
						t.Errorf("captured: %d %s", st, b)
					}
				}
				log.mu.Lock()
				log.captured = append(log.captured, e.Payment.ID)
				log.mu.Unlock()
			case terminal.EventPaymentVoid:
				log.add("void " + e.Payment.ID)
				if st, b := c.do("POST", "/api/v1/integrator/payments/"+e.Payment.ID+"/voided", nil); st != http.StatusOK {
					t.Errorf("voided: %d %s", st, b)
				}
				log.mu.Lock()
				log.voided[e.Payment.ID] = e.Payment.VoidReason
				log.mu.Unlock()
			case terminal.EventPrintJob:
				j := *e.PrintJob
				log.add("print " + j.ID)
				report, skip := map[string]string{"result": "printed"}, false
				if sc.print != nil {
					report, skip = sc.print(j)
				}
				pdfPath := "/api/v1/integrator/print-jobs/" + j.ID + ".pdf"
				st, pdf := c.do("GET", pdfPath, nil)
				if st != http.StatusOK || !bytes.HasPrefix(pdf, []byte("%PDF-")) || len(pdf) != j.SizeBytes {
					t.Errorf("PDF: %d, %d bytes (announced %d)", st, len(pdf), j.SizeBytes)
				}
				log.mu.Lock()
				log.pdfs[j.ID] = pdf
				log.mu.Unlock()
				if st, b := c.do("GET", pdfPath, nil); st != http.StatusGone {
					t.Errorf("second PDF fetch: %d %s, want 410", st, b)
				}
				if skip {
					continue
				}
				for range 2 {
					if st, b := c.do("POST", "/api/v1/integrator/print-jobs/"+j.ID, report); st != http.StatusOK {
						t.Errorf("report %v: %d %s", report, st, b)
					}
				}
			case terminal.EventPrintCancel:
				log.add("cancel " + e.PrintJob.ID)
			}
		}
	}()
	// The stream counts as the terminal being there once it is open.
	deadline := time.Now().Add(5 * time.Second)
	for r.term.Counts().Streams == 0 {
		if time.Now().After(deadline) {
			t.Fatal("event stream not registered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return log
}

func (l *terminalLog) snapshot() terminalSeen {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := terminalSeen{events: append([]string(nil), l.events...), captured: append([]string(nil), l.captured...),
		voided: map[string]string{}, pdfs: map[string][]byte{}, states: append([]flow.State(nil), l.states...)}
	for k, v := range l.voided {
		out.voided[k] = v
	}
	for k, v := range l.pdfs {
		out.pdfs[k] = v
	}
	return out
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// personalData lists what the demo resident's data looks like in any
// form an API might leak it.
func personalData(t *testing.T, id string) []string {
	t.Helper()
	r, err := flowtest.Cards(t).Residents.Resident(id)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{r.MyNumber, r.Name, strings.NewReplacer(" ", "", "\u3000", "").Replace(r.Name), r.NameKana, r.BirthDate, r.CardBirthDate(), r.Address}
	for _, s := range []string{r.RomanFamily, r.RomanGiven, r.PassportNumber} {
		if s != "" {
			out = append(out, s)
		}
	}
	return append(out, strings.Fields(r.Name)...)
}

// scanPersonal fails if b holds any of the values, raw or JSON-escaped.
func scanPersonal(t *testing.T, what string, b []byte, values []string) {
	t.Helper()
	if len(b) == 0 {
		t.Fatalf("%s: nothing recorded to scan", what)
	}
	for _, v := range values {
		esc, _ := json.Marshal(v)
		if bytes.Contains(b, []byte(v)) || bytes.Contains(b, esc[1:len(esc)-1]) {
			t.Errorf("%s contains personal data (%d-byte value)", what, len(v))
		}
	}
}
