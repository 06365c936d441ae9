package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/cardreader/pcsc"
	"github.com/kioskcert/kioskcert/cardreader/pcsctest"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/cardreader/vpcd"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/ipptest"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// BenchmarkAgentIdleMemory reports the heap a kiosk agent holds when it is
// connected to the center and idle (after GC), as the difference from the
// test process before the agent was made, and the whole process's heap.
func BenchmarkAgentIdleMemory(b *testing.B) {
	env.ensureCenter(b)
	p := startPrinter(b, ipptest.Options{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	k := startKiosk(b, kioskOptions{id: kioskMemory, printerURI: p.URI})
	// Let it settle: hello received, status sent, idle snapshot published.
	time.Sleep(time.Second)
	if !k.Client.Connected() || k.Kiosk.Snapshot().State != "idle" {
		b.Fatal("the agent is not connected and idle")
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	var ms runtime.MemStats
	for b.Loop() {
		runtime.ReadMemStats(&ms)
	}
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse)), "agent-heap-inuse-B")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)), "agent-heap-alloc-B")
	b.ReportMetric(float64(after.HeapInuse), "process-heap-inuse-B")
	runtime.KeepAlive(k)
}

// BenchmarkPINToPrint measures, per session through pcscd, the loopback
// center and the IPP printer, the time from the card accepting the PIN to
// the print job being submitted (the printer answering Print-Job),
// without the time the kiosk waits for the resident to take the card
// (pcscd notices a removal on its 400 ms poll). The scripted resident
// answers every screen at once, so the rest is the kiosk's own work:
// reading and verifying the card, the request to the center, the binding
// check, rendering the PDF, authorising the payment and submitting.
func BenchmarkPINToPrint(b *testing.B) {
	env.ensureCenter(b)
	p := startPrinter(b, ipptest.Options{})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: env.printerCA.Pool()}
	submits := &submitClock{next: tr}
	ipp, err := printer.NewIPP(p.URI, printer.IPPOptions{HTTPClient: &http.Client{Transport: submits}, PollInterval: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	pr, err := pcsc.Open(pcsc.Options{Reader: pcsctest.ReaderName})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pr.Close() })
	reader := &timedReader{Reader: pr}
	k := startKiosk(b, kioskOptions{id: kioskBench, reader: reader, printer: agent.Printer{P: ipp}})
	card, r, err := env.cards.Card("hanako", virtualcard.Options{ExtendedLength: true})
	if err != nil {
		b.Fatal(err)
	}
	hc := &quickCard{card: card}
	var kioskTimes, removalWaits []time.Duration
	for b.Loop() {
		reader.reset()
		submits.reset()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := headless.Run(ctx, k.Kiosk, hc, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if err := res.Must(); err != nil {
			b.Fatal(err)
		}
		pinOK, removal := reader.times()
		submitted := submits.last()
		if pinOK.IsZero() || submitted.Before(pinOK) {
			b.Fatalf("no PIN acceptance (%v) before the job submission (%v)", pinOK, submitted)
		}
		kioskTimes = append(kioskTimes, submitted.Sub(pinOK)-removal)
		removalWaits = append(removalWaits, removal)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	slices.Sort(kioskTimes)
	var sum, rsum time.Duration
	for i := range kioskTimes {
		sum += kioskTimes[i]
		rsum += removalWaits[i]
	}
	n := time.Duration(len(kioskTimes))
	b.ReportMetric(ms(sum/n), "pin-to-submit-ms")
	b.ReportMetric(ms(kioskTimes[len(kioskTimes)/2]), "p50-ms")
	b.ReportMetric(ms(kioskTimes[len(kioskTimes)-1]), "max-ms")
	b.ReportMetric(ms(rsum/n), "removal-wait-ms")
}

// timedReader notes when the card accepted the PIN and how long the kiosk
// then waited for the card to be taken.
type timedReader struct {
	cardreader.Reader
	mu      sync.Mutex
	pinOK   time.Time
	lastUse time.Time // the end of the last command after the PIN
	removal time.Duration
}

func (r *timedReader) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pinOK, r.lastUse, r.removal = time.Time{}, time.Time{}, 0
}

func (r *timedReader) times() (time.Time, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pinOK, r.removal
}

// Connect implements cardreader.Reader.
func (r *timedReader) Connect(ctx context.Context) (cardreader.Transport, error) {
	tr, err := r.Reader.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &timedTransport{Transport: tr, r: r}, nil
}

// WaitForRemoval implements cardreader.Reader. The part of a wait after
// the card was last used (read after the PIN) is the resident's time, not
// the kiosk's. The flow starts its removal wait before the PIN and keeps it
// through the card phase, so only that tail counts.
func (r *timedReader) WaitForRemoval(ctx context.Context) error {
	start := time.Now()
	err := r.Reader.WaitForRemoval(ctx)
	end := time.Now()
	r.mu.Lock()
	if err == nil && !r.lastUse.IsZero() && end.After(r.lastUse) {
		from := r.lastUse
		if start.After(from) {
			from = start
		}
		r.removal += end.Sub(from)
	}
	r.mu.Unlock()
	return err
}

type timedTransport struct {
	cardreader.Transport
	r *timedReader
}

// Transmit implements cardreader.Transport: a VERIFY carrying a PIN
// (INS 20, with data) answered 90 00 is the PIN accepted.
func (t *timedTransport) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	resp, err := t.Transport.Transmit(ctx, apdu)
	now := time.Now()
	t.r.mu.Lock()
	if err == nil && len(apdu) > 5 && apdu[1] == 0x20 && bytes.HasSuffix(resp, []byte{0x90, 0x00}) {
		t.r.pinOK = now
	}
	if !t.r.pinOK.IsZero() {
		t.r.lastUse = now
	}
	t.r.mu.Unlock()
	return resp, err
}

// submitClock is the IPP client's transport; it notes when the printer
// answered a Print-Job (operation 0x0002).
type submitClock struct {
	next http.RoundTripper // the printer speaks ipps
	mu   sync.Mutex
	at   time.Time
}

func (s *submitClock) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = time.Time{}
}

func (s *submitClock) last() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at
}

// RoundTrip implements http.RoundTripper.
func (s *submitClock) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := s.next.RoundTrip(req)
	if err == nil && len(body) >= 4 && body[2] == 0x00 && body[3] == 0x02 {
		s.mu.Lock()
		s.at = time.Now()
		s.mu.Unlock()
	}
	return resp, err
}

// quickCard is a pcscd card whose removal returns as soon as pcscd has
// seen the reader empty, like a resident walking away; the wait pcscd's
// polling needs before the next card is done at the next insertion, so it
// does not delay the session being measured.
type quickCard struct {
	card    *virtualcard.Card
	conn    *vpcd.Connection
	removed time.Time
}

// Insert implements headless.Card.
func (c *quickCard) Insert() error {
	time.Sleep(time.Until(c.removed.Add(600 * time.Millisecond)))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := env.daemon.Insert(ctx, c.card)
	c.conn = conn
	return err
}

// Remove implements headless.Card.
func (c *quickCard) Remove() error {
	if c.conn == nil {
		return nil
	}
	c.conn.Remove()
	c.conn = nil
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := env.daemon.WaitForCard(ctx, false)
	c.removed = time.Now()
	return err
}
