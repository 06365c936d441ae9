// Package example is a store-terminal integrator for the kiosk agent's
// integrator API (docs/INTEGRATION.md), written with the standard library
// only so that terminal software can copy it as a starting point.
//
// It follows the agent's event stream (reconnecting when it drops), answers
// payment requests, "prints" each job by writing its PDF into a directory (a
// real terminal hands the bytes to its printer and keeps no copy), reports
// the result, and acknowledges captures and voids. Every answer is safe to
// repeat, so after a reconnect it simply answers the open requests again.
//
//	ex, err := example.New(example.Options{URL: "http://127.0.0.1:8800", Token: tok, OutDir: "paper"})
//	go ex.Run(ctx)
//
// It keeps a ledger of what it did (Ledger), so a test can check that a
// session was charged once, and only for paper that came out. The command
// kiosk/cmd/example-integrator runs it.
package example

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Options configure an Integrator.
type Options struct {
	// URL is the agent's local server, e.g. http://127.0.0.1:8800.
	URL string
	// Token is the content of the agent's integrator token file.
	Token string
	// OutDir receives each printed job as <jobId>.pdf: the stand-in for
	// paper. It must exist.
	OutDir string
	// Decline makes the first n payment requests fail ("declined").
	Decline int
	// FailPrints makes the first print jobs fail with these reasons
	// (paper_out, jam, other), one job each.
	FailPrints []string
	// HTTPClient sends the requests; nil means one with a 15 s timeout (the
	// event stream uses its own client without one).
	HTTPClient *http.Client
	// Trace, if set, sees every response body except PDFs, and every
	// event-stream line (tests scan them for personal data).
	Trace func(what string, body []byte)
	Log   *slog.Logger
}

// Integrator is the example terminal. It is safe for concurrent use.
type Integrator struct {
	o      Options
	client *http.Client
	stream *http.Client

	mu        sync.Mutex
	connected bool
	changed   chan struct{}
	ledger    Ledger
	answers   map[string]map[string]string // payment ID → answer sent
	results   map[string]map[string]string // job ID → report sent
	declines  int
	failures  []string
}

// Ledger is what the terminal did, by payment and job ID.
type Ledger struct {
	Authorized map[string]int    // answered paid: payment ID → yen
	Declined   []string          // answered failed
	Captured   map[string]int    // capture acknowledged: payment ID → yen
	Voided     map[string]string // void acknowledged: payment ID → void reason
	Printed    []string          // files written
	Failed     map[string]string // job ID → reason reported
	Cancelled  []string          // jobs the kiosk gave up on
}

// CapturedYen is the money kept.
func (l Ledger) CapturedYen() int {
	n := 0
	for _, y := range l.Captured {
		n += y
	}
	return n
}

// Event is one message of the stream (the payment and printJob events of
// docs/INTEGRATION.md).
type Event struct {
	Seq      uint64    `json:"seq"`
	Type     string    `json:"type"`
	Payment  *Payment  `json:"payment,omitempty"`
	PrintJob *PrintJob `json:"printJob,omitempty"`
}

// Payment is an authorisation as the agent announces it.
type Payment struct {
	PaymentID      string `json:"paymentId"`
	RequestID      string `json:"requestId"`
	Attempt        int    `json:"attempt"`
	AmountYen      int    `json:"amountYen"`
	IdempotencyKey string `json:"idempotencyKey"`
	State          string `json:"state"`
	VoidReason     string `json:"voidReason,omitempty"`
}

// PrintJob is a job as the agent announces it.
type PrintJob struct {
	JobID     string `json:"jobId"`
	Name      string `json:"name"`
	Attempt   int    `json:"attempt"`
	Copies    int    `json:"copies"`
	SizeBytes int    `json:"sizeBytes"`
	SHA256    string `json:"sha256"`
	State     string `json:"state"`
	Reason    string `json:"reason,omitempty"`
}

// Session is the agent's redacted view of the session.
type Session struct {
	Session string `json:"session,omitempty"`
	State   string `json:"state"`
	Seq     uint64 `json:"seq"`
	Armed   bool   `json:"armed,omitempty"`
	Copies  int    `json:"copies,omitempty"`
	FeeYen  int    `json:"feeYen,omitempty"`
	Error   *struct {
		Code string `json:"code"`
		Ja   string `json:"ja"`
		En   string `json:"en"`
	} `json:"error,omitempty"`
}

// New checks o and returns an Integrator.
func New(o Options) (*Integrator, error) {
	if o.URL == "" || o.Token == "" {
		return nil, errors.New("example: the agent's URL and token are required")
	}
	o.URL = strings.TrimSuffix(o.URL, "/")
	if fi, err := os.Stat(o.OutDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("example: output directory %q must exist", o.OutDir)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	i := &Integrator{
		o: o, client: o.HTTPClient, stream: &http.Client{},
		changed: make(chan struct{}),
		answers: map[string]map[string]string{}, results: map[string]map[string]string{},
		declines: o.Decline, failures: append([]string(nil), o.FailPrints...),
		ledger: Ledger{Authorized: map[string]int{}, Captured: map[string]int{}, Voided: map[string]string{}, Failed: map[string]string{}},
	}
	if i.client == nil {
		i.client = &http.Client{Timeout: 15 * time.Second}
	}
	return i, nil
}

// ReadToken reads the agent's token file.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("example: token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Ledger returns a copy of the ledger.
func (i *Integrator) Ledger() Ledger {
	i.mu.Lock()
	defer i.mu.Unlock()
	l := i.ledger
	l.Authorized, l.Captured = clone(l.Authorized), clone(l.Captured)
	l.Voided, l.Failed = clone(l.Voided), clone(l.Failed)
	l.Declined = append([]string(nil), l.Declined...)
	l.Printed = append([]string(nil), l.Printed...)
	l.Cancelled = append([]string(nil), l.Cancelled...)
	return l
}

func clone[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// WaitConnected blocks until the event stream is open or ctx ends.
func (i *Integrator) WaitConnected(ctx context.Context) error {
	for {
		i.mu.Lock()
		ok, ch := i.connected, i.changed
		i.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (i *Integrator) setConnected(v bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.connected != v {
		i.connected = v
		close(i.changed)
		i.changed = make(chan struct{})
	}
}

// Errors Run stops on: retrying cannot help, the terminal's set-up is wrong.
var (
	// ErrNoIntegratorAPI: the agent answers 404 for the integrator API.
	ErrNoIntegratorAPI = errors.New("example: the agent has no integrator API (HTTP 404): give its kiosk.json an integrator section with a tokenFile (docs/INTEGRATION.md), or run `make run`, which turns it on")
	// ErrUnauthorized: the agent refuses the token (HTTP 401).
	ErrUnauthorized = errors.New("example: the agent refused the token (HTTP 401): pass the token file the agent reads (its config integrator.tokenFile; `make run` prints the path)")
)

// Run follows the event stream until ctx ends, reconnecting after a drop
// (waiting 0.5 s, doubling up to 5 s). It stops with ErrNoIntegratorAPI
// or ErrUnauthorized when the agent answers 404 or 401: those need the
// operator, not another try.
func (i *Integrator) Run(ctx context.Context) error {
	wait := 500 * time.Millisecond
	for {
		err := i.follow(ctx)
		i.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNoIntegratorAPI) || errors.Is(err, ErrUnauthorized) {
			i.o.Log.Error("event stream refused", "err", err)
			return err
		}
		i.o.Log.Warn("event stream ended; reconnecting", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		if err == nil {
			wait = 500 * time.Millisecond
		} else if wait *= 2; wait > 5*time.Second {
			wait = 5 * time.Second
		}
	}
}

// follow reads one event stream to its end.
func (i *Integrator) follow(ctx context.Context) error {
	req, err := i.request(ctx, http.MethodGet, "/api/v1/integrator/events", nil)
	if err != nil {
		return err
	}
	resp, err := i.stream.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return fmt.Errorf("%w (%s)", ErrNoIntegratorAPI, i.o.URL)
	case http.StatusUnauthorized:
		return fmt.Errorf("%w (%s)", ErrUnauthorized, i.o.URL)
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("example: event stream: %s %s", resp.Status, b)
	}
	i.setConnected(true)
	return ReadEvents(resp.Body, func(name string, data []byte) error {
		i.trace("event "+name, data)
		i.handle(ctx, name, data)
		return ctx.Err()
	})
}

// ReadEvents parses a server-sent event stream, calling fn with each
// event's name and data (data lines joined by newlines) until the stream
// ends (nil) or fn fails. Comments and fields other than event and data
// are skipped.
func ReadEvents(r io.Reader, fn func(name string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	name, data, has := "", []byte(nil), false
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if has {
				if name == "" {
					name = "message"
				}
				if err := fn(name, data); err != nil {
					return err
				}
			}
			name, data, has = "", nil, false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			name = string(value)
		case "data":
			if has {
				data = append(data, '\n')
			}
			data, has = append(data, value...), true
		}
	}
	return sc.Err()
}

func (i *Integrator) handle(ctx context.Context, name string, data []byte) {
	if name == "session" {
		var s Session
		if err := json.Unmarshal(data, &s); err == nil {
			i.o.Log.Debug("session", "state", s.State)
		}
		return
	}
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		i.o.Log.Error("undecodable event", "event", name, "err", err)
		return
	}
	var err error
	switch {
	case ev.Type == "payment.authorize" && ev.Payment != nil:
		err = i.authorize(ctx, *ev.Payment)
	case ev.Type == "payment.capture" && ev.Payment != nil:
		err = i.acknowledge(ctx, *ev.Payment, "captured")
	case ev.Type == "payment.void" && ev.Payment != nil:
		err = i.acknowledge(ctx, *ev.Payment, "voided")
	case ev.Type == "print.job" && ev.PrintJob != nil:
		err = i.print(ctx, *ev.PrintJob)
	case ev.Type == "print.cancel" && ev.PrintJob != nil:
		// The kiosk gave up on the job (and voids its payment): do not
		// print it. A real terminal cancels it on its printer here.
		i.mu.Lock()
		i.ledger.Cancelled = append(i.ledger.Cancelled, ev.PrintJob.JobID)
		i.mu.Unlock()
	default:
		i.o.Log.Info("event ignored", "type", ev.Type)
	}
	if err != nil {
		i.o.Log.Error("answering an event", "type", ev.Type, "err", err)
	}
}

// authorize answers a payment request. A real terminal collects the fee
// here (cash, card, e-money), using IdempotencyKey with its processor; the
// same answer is sent again when the event repeats.
func (i *Integrator) authorize(ctx context.Context, p Payment) error {
	i.mu.Lock()
	answer, seen := i.answers[p.PaymentID]
	if !seen {
		answer = map[string]string{"result": "paid"}
		if i.declines > 0 {
			i.declines--
			answer = map[string]string{"result": "failed", "reason": "declined"}
		}
		i.answers[p.PaymentID] = answer
	}
	i.mu.Unlock()
	if _, err := i.post(ctx, "/api/v1/integrator/payments/"+p.PaymentID, answer); err != nil {
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if answer["result"] == "paid" {
		i.ledger.Authorized[p.PaymentID] = p.AmountYen
	} else if !seen {
		i.ledger.Declined = append(i.ledger.Declined, p.PaymentID)
	}
	return nil
}

// acknowledge confirms a capture (the money is kept: the paper is out) or
// a void (the money goes back: nothing was printed).
func (i *Integrator) acknowledge(ctx context.Context, p Payment, what string) error {
	if _, err := i.post(ctx, "/api/v1/integrator/payments/"+p.PaymentID+"/"+what, nil); err != nil {
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if what == "captured" {
		i.ledger.Captured[p.PaymentID] = p.AmountYen
	} else {
		i.ledger.Voided[p.PaymentID] = p.VoidReason
	}
	return nil
}

// print fetches the job's PDF (once: it cannot be fetched again), checks
// it, "prints" it and reports the result. A job seen again after a
// reconnect gets the report already sent.
func (i *Integrator) print(ctx context.Context, j PrintJob) error {
	i.mu.Lock()
	report, seen := i.results[j.JobID]
	var fail string
	if !seen && len(i.failures) > 0 {
		fail, i.failures = i.failures[0], i.failures[1:]
	}
	i.mu.Unlock()
	path := "/api/v1/integrator/print-jobs/" + j.JobID
	switch {
	case seen:
	case fail != "":
		// The printer is not ready (e.g. no paper): report before fetching.
		report = map[string]string{"result": "failed", "reason": fail}
	case j.State != "waiting":
		// Fetched by an earlier run of this program that did not report:
		// the PDF is gone, so this job cannot be printed.
		report = map[string]string{"result": "failed", "reason": "other"}
	default:
		report = i.printPDF(ctx, j)
	}
	i.mu.Lock()
	i.results[j.JobID] = report
	i.mu.Unlock()
	if _, err := i.post(ctx, path, report); err != nil {
		return err
	}
	if report["result"] == "failed" {
		i.mu.Lock()
		i.ledger.Failed[j.JobID] = report["reason"]
		i.mu.Unlock()
	}
	return nil
}

// printPDF fetches and writes the PDF, returning the report to send.
func (i *Integrator) printPDF(ctx context.Context, j PrintJob) map[string]string {
	failed := map[string]string{"result": "failed", "reason": "other"}
	req, err := i.request(ctx, http.MethodGet, "/api/v1/integrator/print-jobs/"+j.JobID+".pdf", nil)
	if err != nil {
		return failed
	}
	resp, err := i.client.Do(req)
	if err != nil {
		i.o.Log.Error("fetching a PDF", "job", j.JobID, "err", err)
		return failed
	}
	defer resp.Body.Close()
	pdf, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	defer clear(pdf) // personal data: do not keep it
	sum := sha256.Sum256(pdf)
	if err != nil || resp.StatusCode != http.StatusOK || len(pdf) != j.SizeBytes || hex.EncodeToString(sum[:]) != j.SHA256 {
		i.o.Log.Error("the PDF did not arrive intact", "job", j.JobID, "status", resp.StatusCode, "bytes", len(pdf))
		return failed
	}
	// The stand-in for paper. Job IDs are opaque IDs (letters, digits,
	// '-', '_', '.'), safe as file names; refuse anything else.
	if strings.ContainsAny(j.JobID, `/\`) || strings.HasPrefix(j.JobID, ".") {
		return failed
	}
	out := filepath.Join(i.o.OutDir, j.JobID+".pdf")
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		i.o.Log.Error("printing", "job", j.JobID, "err", err)
		return failed
	}
	_, werr := f.Write(pdf)
	if err := errors.Join(werr, f.Close()); err != nil {
		os.Remove(out)
		return failed
	}
	i.mu.Lock()
	i.ledger.Printed = append(i.ledger.Printed, out)
	i.mu.Unlock()
	return map[string]string{"result": "printed"}
}

// Start hands the screen over to the kiosk (armed mode).
func (i *Integrator) Start(ctx context.Context) (Session, error) {
	var s Session
	b, err := i.post(ctx, "/api/v1/integrator/session/start", nil)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	return s, err
}

// Cancel cancels the session (or an unused Start).
func (i *Integrator) Cancel(ctx context.Context) (Session, error) {
	var s Session
	b, err := i.post(ctx, "/api/v1/integrator/session/cancel", nil)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	return s, err
}

// Health is the agent's health as GET /health returns it.
type Health struct {
	State           string `json:"state"`
	ReaderPresent   bool   `json:"readerPresent"`
	Reader          string `json:"reader"`
	CenterConnected bool   `json:"centerConnected"`
	PrinterReady    bool   `json:"printerReady"`
	Printer         string `json:"printer"`
	PendingOutcomes int    `json:"pendingOutcomes"`
	Terminal        *struct {
		Streams          int `json:"streams"`
		PaymentsPending  int `json:"paymentsPending"`
		CapturesPending  int `json:"capturesPending"`
		VoidsPending     int `json:"voidsPending"`
		PrintJobsPending int `json:"printJobsPending"`
	} `json:"terminal,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// Health reads the agent's health.
func (i *Integrator) Health(ctx context.Context) (Health, error) {
	var h Health
	b, err := i.get(ctx, "/api/v1/integrator/health")
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	return h, err
}

// SetPrinterState tells the agent the printer's state (ready, paper-out,
// jammed, ...).
func (i *Integrator) SetPrinterState(ctx context.Context, state string) error {
	_, err := i.send(ctx, http.MethodPut, "/api/v1/integrator/printer", map[string]string{"state": state})
	return err
}

func (i *Integrator) request(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, i.o.URL+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+i.o.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

func (i *Integrator) get(ctx context.Context, path string) ([]byte, error) {
	return i.send(ctx, http.MethodGet, path, nil)
}

func (i *Integrator) post(ctx context.Context, path string, body any) ([]byte, error) {
	return i.send(ctx, http.MethodPost, path, body)
}

// send makes a request and returns the body of a 2xx answer; anything
// else is an error carrying the agent's error code.
func (i *Integrator) send(ctx context.Context, method, path string, body any) ([]byte, error) {
	req, err := i.request(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	resp, err := i.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	i.trace(method+" "+path, b)
	if resp.StatusCode/100 != 2 {
		var e struct{ Code, Message string }
		json.Unmarshal(b, &e)
		return b, fmt.Errorf("example: %s %s: %s %s: %s", method, path, resp.Status, e.Code, e.Message)
	}
	return b, nil
}

func (i *Integrator) trace(what string, b []byte) {
	if i.o.Trace != nil {
		i.o.Trace(what, b)
	}
}
