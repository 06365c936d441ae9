package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	demodata "github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/cardreader/pcsctest"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/cardreader/vpcd"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/certpdf"
	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/payment"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/ipptest"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// kioskOptions say how to wire a test kiosk. The zero value (with an ID
// and a printer) is the production wiring: agent.New from a configuration
// with the PC/SC reader of the private pcscd and an IPP printer.
type kioskOptions struct {
	id string
	// reader replaces the PC/SC reader (the load test's in-process slots).
	reader cardreader.Reader
	// printerURI is the IPP printer the configuration names.
	printerURI string
	// printer replaces the configured printer.
	printer flow.Printer
	// payment is the store terminal; a fresh simulator if nil.
	payment flow.Payment
	// centerAddr, if set, is dialled instead of the center (a proxy).
	centerAddr string
	// wrapCenter and wrapRenderer interpose on the flow's center and
	// renderer. agent.New does not take them, so the agent's flow is then
	// rebuilt with the agent's own reader, printer, payment and client.
	wrapCenter   func(flow.Center) flow.Center
	wrapRenderer func(flow.Renderer) flow.Renderer
	timeouts     flow.Timeouts
	log          *slog.Logger
	// noWait returns without waiting for the first connection.
	noWait bool
	// clock is the agent's clock for certificate renewal (the system's if nil).
	clock agent.Clock
	// tpm is the TPM holding the kiosk's key (a swtpm socket), if any.
	tpm string
}

// kiosk is a running agent.
type kiosk struct {
	*agent.Agent
	pay *payment.Simulator // the payment terminal, when the test did not supply one
}

// startKiosk wires and runs an agent until the test ends, and waits until
// it is connected to the center.
func startKiosk(t testing.TB, o kioskOptions) *kiosk {
	t.Helper()
	readerCfg := config.Reader{Kind: "pcsc", Name: pcsctest.ReaderName}
	if o.reader != nil {
		readerCfg = config.Reader{Kind: "virtual"}
	}
	// The printers speak ipps (startPrinter), as a deployed kiosk's must.
	printerCfg := config.Printer{Kind: "ipp", URL: o.printerURI, CAFile: env.printerCA.File}
	if o.printer != nil {
		// Not opened: the supplied printer takes precedence.
		printerCfg = config.Printer{Kind: "spool", SpoolDir: os.DevNull}
	}
	cfg, _, err := env.center.KioskConfig(o.id, env.trust, readerCfg, printerCfg)
	if err != nil {
		t.Fatalf("kiosk config: %v", err)
	}
	if o.centerAddr != "" {
		cfg.CenterURL = "wss://" + o.centerAddr + "/v1/kiosk"
	}
	cfg.TPM = o.tpm
	k := &kiosk{}
	if o.payment == nil {
		k.pay = payment.NewSimulator()
		o.payment = k.pay
	}
	if o.log == nil {
		o.log = newLogger(o.id)
	}
	a, err := agent.New(cfg, agent.Options{Reader: o.reader, Printer: o.printer, Payment: o.payment, Timeouts: o.timeouts, Log: o.log, Clock: o.clock})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	k.Agent = a
	if o.wrapCenter != nil || o.wrapRenderer != nil {
		var center flow.Center = a.Client
		if o.wrapCenter != nil {
			center = o.wrapCenter(center)
		}
		var r flow.Renderer
		if r, err = certpdf.NewRenderer(); err != nil {
			t.Fatal(err)
		}
		if o.wrapRenderer != nil {
			r = o.wrapRenderer(r)
		}
		a.Kiosk, err = flow.New(flow.Config{
			Reader: a.Reader, Verifier: env.cards.Verifier, Center: center, Renderer: r,
			Printer: a.Printer, Payment: a.Payment, PrintCode: agent.PrintCode, Timeouts: o.timeouts, Log: o.log,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("kiosk %s did not stop within 30 s", o.id)
		}
		a.Close()
	})
	if o.noWait {
		return k
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := a.Client.WaitConnected(wctx); err != nil {
		t.Fatalf("kiosk %s: %v", o.id, err)
	}
	return k
}

// play runs one scripted resident's session to its end.
func play(t testing.TB, k *kiosk, card headless.Card, r headless.Resident) *headless.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := headless.Run(ctx, k.Kiosk, card, r)
	if err != nil {
		t.Fatalf("session: %v (states %v)", err, res.States)
	}
	return res
}

// pcscCard is a virtual card placed on the private pcscd's vpcd reader.
type pcscCard struct {
	card *virtualcard.Card
	conn *vpcd.Connection
	// beforeRemove runs once, when the resident first takes the card back
	// (at the remove-card screen, or at an error).
	beforeRemove func()
}

// Insert implements headless.Card.
func (c *pcscCard) Insert() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := env.daemon.Insert(ctx, c.card)
	c.conn = conn
	return err
}

// Remove implements headless.Card; it returns once pcscd has seen the
// reader empty (pcsctest handles pcscd's polling).
func (c *pcscCard) Remove() error {
	if c.conn == nil {
		return nil
	}
	if f := c.beforeRemove; f != nil {
		c.beforeRemove = nil
		f()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := env.daemon.Remove(ctx, c.conn)
	c.conn = nil
	return err
}

// demoCard returns a fresh card (full PIN counter) of a demo resident.
func demoCard(t testing.TB, id string) (*virtualcard.Card, demodata.Resident) {
	t.Helper()
	card, r, err := env.cards.Card(id, virtualcard.Options{ExtendedLength: true})
	if err != nil {
		t.Fatal(err)
	}
	return card, r
}

// startPrinter starts a real IPP printer for one test, speaking IPP over
// TLS with a certificate from the environment's printer CA. Its spool is
// the paper, so the personal-data scan skips it.
func startPrinter(t testing.TB, opts ipptest.Options) *ipptest.Printer {
	t.Helper()
	opts.TLS = env.printerCA
	p := ipptest.Start(t, opts)
	env.exclude(p.SpoolDir)
	return p
}

// printedFor returns the documents the IPP printer kept for a request
// (job name "kioskcert-<request ID>").
func printedFor(t testing.TB, p *ipptest.Printer, requestID string) [][]byte {
	t.Helper()
	var out [][]byte
	for name, b := range p.Documents(t) {
		if strings.HasSuffix(name, "-kioskcert-"+requestID+".pdf") {
			out = append(out, b)
		}
	}
	return out
}

// onlyRequest returns the one request ID in a payment ledger.
func onlyRequest(t testing.TB, pay *payment.Simulator) (string, payment.Entry) {
	t.Helper()
	l := pay.Ledger()
	if len(l) != 1 {
		t.Fatalf("payment ledger has %d entries, want 1", len(l))
	}
	for id, e := range l {
		return id, e
	}
	panic("unreachable")
}

// countEvents counts audit events of a type for a request ("" for any).
func countEvents(evs []auditEvent, typ, requestID string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ && (requestID == "" || e.RequestID == requestID) {
			n++
		}
	}
	return n
}

// requestIDs lists the distinct request IDs in evs, in order.
func requestIDs(evs []auditEvent) []string {
	var ids []string
	for _, e := range evs {
		if e.RequestID != "" && !slices.Contains(ids, e.RequestID) {
			ids = append(ids, e.RequestID)
		}
	}
	return ids
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(25 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// normName folds a name as the kiosk's binding check does for comparison
// (spaces removed; the demo names are already NFKC).
func normName(s string) string {
	return strings.NewReplacer(" ", "", "　", "", "\t", "").Replace(s)
}

// recordingRenderer remembers, by the SHA-256 of the PDF, the certificates
// each rendered PDF was made from, so a printer can tell what it printed.
type recordingRenderer struct {
	inner flow.Renderer
	mu    sync.Mutex
	byPDF map[[32]byte][]certificate.Certificate
}

func newRecordingRenderer(inner flow.Renderer) *recordingRenderer {
	return &recordingRenderer{inner: inner, byPDF: map[[32]byte][]certificate.Certificate{}}
}

// Render implements flow.Renderer.
func (r *recordingRenderer) Render(w io.Writer, certs ...*certificate.Certificate) error {
	var buf bytes.Buffer
	if err := r.inner.Render(&buf, certs...); err != nil {
		return err
	}
	// A deep copy: the flow overwrites its own strings when the session ends.
	var cp []certificate.Certificate
	for _, c := range certs {
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		var d certificate.Certificate
		if err := json.Unmarshal(b, &d); err != nil {
			return err
		}
		cp = append(cp, d)
	}
	r.mu.Lock()
	r.byPDF[sha256.Sum256(buf.Bytes())] = cp
	r.mu.Unlock()
	_, err := w.Write(buf.Bytes())
	return err
}

func (r *recordingRenderer) lookup(pdf []byte) ([]certificate.Certificate, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.byPDF[sha256.Sum256(pdf)]
	return c, ok
}

// printedJob is one job a recordingPrinter completed.
type printedJob struct {
	Name         string
	Copies       int
	Certificates []certificate.Certificate // nil if the PDF was not one the renderer made
}

// recordingPrinter passes jobs to a printer and records the completed
// ones with the certificates whose PDF they carried.
type recordingPrinter struct {
	inner    flow.Printer
	renderer *recordingRenderer
	mu       sync.Mutex
	jobs     []printedJob
	failures []error
}

// Print implements flow.Printer.
func (p *recordingPrinter) Print(ctx context.Context, name string, pdf []byte, copies int) error {
	certs, _ := p.renderer.lookup(pdf)
	err := p.inner.Print(ctx, name, pdf, copies)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failures = append(p.failures, err)
		return err
	}
	p.jobs = append(p.jobs, printedJob{Name: name, Copies: copies, Certificates: certs})
	return nil
}

func (p *recordingPrinter) printed() []printedJob {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.jobs)
}
