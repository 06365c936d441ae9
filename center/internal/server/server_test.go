package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// The harness runs the real issuance.Service, with its register on the
// real bbolt store, behind the websocket: what these tests pin down is the
// edge (admission, limits, error mapping, shutdown) over the real request
// semantics. Only the checks' inputs are stand-ins: the card verifier
// accepts any card and reads its "My Number" from the first byte, the
// records hold one synthetic person, and the SMART Health Card signer
// counts, can hold every signature until gate is closed, and returns a
// fixed payload.

// testMyNumber is a synthetic My Number with a valid check digit.
const testMyNumber = "123456789018"

type fakeCards struct{}

func (fakeCards) Verify(raw carddata.Raw) (*carddata.Data, error) {
	return &carddata.Data{MyNumber: testMyNumber, FourItems: carddata.FourItems{Name: "試験　花子", BirthDate: "19850402", Sex: '2'}}, nil
}

type fakeRecords struct {
	mu  sync.Mutex
	err error
}

func (f *fakeRecords) Lookup(ctx context.Context, municipality, myNumber string) (records.Record, error) {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return records.Record{}, err
	}
	return records.Record{Municipality: municipality, Name: "試験　花子", BirthDate: "1985-04-02", Sex: "2",
		Doses: []records.Dose{{Number: 1, Date: "2021-06-14", Product: "comirnaty", Lot: "FA5765"}}}, nil
}

func (f *fakeRecords) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// gatedSHC counts signatures per certificate and can hold them.
type gatedSHC struct {
	mu      sync.Mutex
	calls   int
	gate    chan struct{}
	started chan struct{}
}

func (g *gatedSHC) Issue(c *certificate.Certificate, nbf time.Time) (string, error) {
	g.mu.Lock()
	g.calls++
	gate, started := g.gate, g.started
	g.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	return "shc:/5676", nil
}

func (g *gatedSHC) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

func (g *gatedSHC) hold() {
	g.mu.Lock()
	g.gate, g.started = make(chan struct{}), make(chan struct{}, 16)
	g.mu.Unlock()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is a Server behind a real mutual-TLS loopback listener, over a
// boltstore on a temporary file.
type harness struct {
	srv     *Server
	ts      *httptest.Server
	st      *boltstore.Store
	ca      *kioskpki.CA
	pool    *x509.CertPool
	shc     *gatedSHC
	records *fakeRecords
	log     *syncBuffer
	reg     *prometheus.Registry
}

func newHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	h := &harness{shc: &gatedSHC{}, records: &fakeRecords{}, log: &syncBuffer{}, reg: prometheus.NewRegistry()}
	var err error
	h.st, err = boltstore.Open(filepath.Join(t.TempDir(), "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.st.Close() })
	ctx := context.Background()
	for _, m := range []store.Municipality{
		{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City", AuthorityJa: "旭川市長", AuthorityEn: "Mayor of Asahikawa City", Participating: true,
			CounterJa: "旭川市役所 市民課", CounterEn: "Asahikawa City Hall, Citizens Division"},
		{Code: "112453", NameJa: "ふじみ野市", NameEn: "Fujimino City", AuthorityJa: "ふじみ野市長", AuthorityEn: "Mayor of Fujimino City",
			CounterJa: "ふじみ野市役所 市民課", CounterEn: "Fujimino City Hall, Citizens Division"},
	} {
		if err := h.st.UpsertMunicipality(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewJSONHandler(h.log, nil))
	svc, err := issuance.New(issuance.Config{
		Kiosks: h.st, Municipalities: h.st, Records: h.records, Register: h.st,
		Cards: fakeCards{}, SHC: h.shc, FeePerCopyYen: 120, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: h.st, Issuer: svc, Heartbeat: time.Second, IssueTimeout: 5 * time.Second,
		Log: log, Metrics: NewMetrics(h.reg)}
	if edit != nil {
		edit(&cfg)
	}
	if h.srv, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if h.ca, err = kioskpki.NewCA("server test kiosk CA", time.Now()); err != nil {
		t.Fatal(err)
	}
	h.pool = x509.NewCertPool()
	h.pool.AddCert(h.ca.Cert)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := h.ca.IssueServer([]string{"127.0.0.1"}, &key.PublicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.ts = httptest.NewUnstartedServer(h.srv.Handler())
	h.ts.TLS = kioskpki.ServerTLS(tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}, h.ca.Cert, h.srv.CheckKiosk)
	h.ts.StartTLS()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
		h.ts.Close()
	})
	return h
}

// enroll enrolls a kiosk with a fresh key and returns its TLS configuration.
func (h *harness) enroll(t *testing.T, id string, status store.KioskStatus) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := h.ca.IssueKiosk(id, &key.PublicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := h.st.EnrollKiosk(ctx, store.Kiosk{ID: id, StoreName: "テスト店", StoreCode: "S-" + id, Chain: "TEST", Prefecture: "01",
		CertSerial: cert.SerialNumber.Text(16), CertSHA256: kioskpki.Fingerprint(cert), EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if status != store.KioskActive {
		if err := h.st.SetKioskStatus(ctx, id, status, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return kioskpki.ClientTLS(tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}, h.pool, "127.0.0.1")
}

type client struct {
	t     *testing.T
	ws    *websocket.Conn
	hello protocol.Hello
}

func (h *harness) dial(t *testing.T, conf *tls.Config, header http.Header) (*client, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: conf, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial("wss://"+h.ts.Listener.Addr().String()+Path, header)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { ws.Close() })
	c := &client{t: t, ws: ws}
	hello, ok := c.read().(protocol.Hello)
	if !ok {
		t.Fatal("first frame is not hello")
	}
	c.hello = hello
	return c, resp, nil
}

func (c *client) send(m protocol.Message) {
	c.t.Helper()
	b, err := protocol.Encode(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read() protocol.Message {
	c.t.Helper()
	m, err := c.tryRead()
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

func (c *client) tryRead() (protocol.Message, error) {
	c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	return protocol.Decode(b, protocol.MaxCenterFrame)
}

func newIssue() protocol.Issue {
	return protocol.Issue{
		RequestID: protocol.NewRequestID(), Municipality: "012041", Kind: certificate.Domestic, Copies: 1,
		Card: carddata.Raw{MyNumber: []byte{byte(time.Now().UnixNano())}, FourItems: []byte{2}, Signature: []byte{3}, Certificate: []byte{4}},
	}
}

func TestHello(t *testing.T) {
	h := newHarness(t, nil)
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	hl := c.hello
	if hl.KioskID != "K1" || hl.ProtocolVersion != protocol.Version || hl.FeePerCopyYen != 120 || hl.MaxCopies != protocol.MaxCopies || hl.HeartbeatSeconds != 1 {
		t.Fatalf("hello %+v", hl)
	}
	if len(hl.Municipalities) != 1 || hl.Municipalities[0].Code != "012041" {
		t.Fatalf("hello lists %+v; want only the participating municipality", hl.Municipalities)
	}
}

// TestHelloCounterNames: the counter's names go only to a kiosk that
// announced it decodes them (a kiosk of before decodes hello strictly and
// would drop the frame), and only for participating municipalities.
func TestHelloCounterNames(t *testing.T) {
	h := newHarness(t, nil)
	conf := h.enroll(t, "K1", store.KioskActive)
	for _, tt := range []struct {
		name   string
		header string
		want   protocol.Municipality
	}{
		{"older kiosk", "", protocol.Municipality{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City"}},
		{"other features only", "colour, braille", protocol.Municipality{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City"}},
		{"announces counter", "braille, counter", protocol.Municipality{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City",
			CounterJa: "旭川市役所 市民課", CounterEn: "Asahikawa City Hall, Citizens Division"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			if tt.header != "" {
				hdr.Set(protocol.HeaderKioskFeatures, tt.header)
			}
			d := websocket.Dialer{TLSClientConfig: conf, HandshakeTimeout: 5 * time.Second}
			ws, _, err := d.Dial("wss://"+h.ts.Listener.Addr().String()+Path, hdr)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, raw, err := ws.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.CounterJa == "" && bytes.Contains(raw, []byte("counter")) {
				t.Fatalf("a kiosk that did not ask got counter fields: %s", raw)
			}
			m, err := protocol.Decode(raw, protocol.MaxCenterFrame)
			if err != nil {
				t.Fatal(err)
			}
			hl := m.(protocol.Hello)
			if len(hl.Municipalities) != 1 || hl.Municipalities[0] != tt.want {
				t.Errorf("participating %+v, want %+v", hl.Municipalities, tt.want)
			}
			if len(hl.NotParticipating) != 1 || hl.NotParticipating[0].CounterJa != "" {
				t.Errorf("not participating %+v, want Fujimino without its counter", hl.NotParticipating)
			}
		})
	}
}

func TestAdmission(t *testing.T) {
	h := newHarness(t, nil)
	good := h.enroll(t, "K-GOOD", store.KioskActive)
	susp := h.enroll(t, "K-SUSP", store.KioskSuspended)
	revoked := h.enroll(t, "K-REV", store.KioskRevoked)

	// A certificate from the right CA that was never enrolled.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := h.ca.IssueKiosk("K-GOOD", &key.PublicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	twin := kioskpki.ClientTLS(tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}, h.pool, "127.0.0.1")

	tests := []struct {
		name string
		conf *tls.Config
		ok   bool
	}{
		{"active", good, true},
		{"suspended", susp, false},
		{"revoked", revoked, false},
		{"same ID, certificate not enrolled", twin, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := h.dial(t, tt.conf, nil)
			if (err == nil) != tt.ok {
				t.Fatalf("dial: %v, want ok=%v", err, tt.ok)
			}
		})
	}
	// The checker refuses a registered certificate presented under another ID.
	k, err := h.st.Kiosk(context.Background(), "K-GOOD")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.CheckKiosk("K-OTHER", k.CertSHA256); err == nil {
		t.Fatal("CheckKiosk accepted a certificate under another kiosk ID")
	}
	if err := h.srv.CheckKiosk("K-GOOD", k.CertSHA256); err != nil {
		t.Fatalf("CheckKiosk refused the enrolled kiosk: %v", err)
	}
	for _, want := range []string{"certificate not enrolled", "kiosk is suspended: test", "kiosk is revoked: test", "does not match the enrolled kiosk ID"} {
		if !strings.Contains(h.log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestOriginRefused(t *testing.T) {
	h := newHarness(t, nil)
	conf := h.enroll(t, "K1", store.KioskActive)
	_, resp, err := h.dial(t, conf, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade from a web page: err=%v resp=%v", err, resp)
	}
}

// TestRetryWhileFirstAttemptRuns: the kiosk loses its connection while the
// center is still issuing, reconnects and repeats the request. The repeat
// waits for the first run and gets its certificate; nothing is issued twice.
func TestRetryWhileFirstAttemptRuns(t *testing.T) {
	h := newHarness(t, nil)
	h.shc.hold()
	conf := h.enroll(t, "K1", store.KioskActive)
	c1, _, err := h.dial(t, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := newIssue()
	c1.send(req)
	<-h.shc.started
	c1.ws.Close()

	c2, _, err := h.dial(t, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2.send(req)
	// Let the repeat reach the server before the first run ends. (Should it
	// arrive after, it is replayed all the same.)
	waitFor(t, func() bool { return framesSeen(h) >= 2 })
	close(h.shc.gate)
	resp, ok := c2.read().(protocol.CertificateResponse)
	if !ok || resp.RequestID != req.RequestID || resp.CardDigest != protocol.CardDigest(req.Card) {
		t.Fatalf("retry answered with %+v", resp)
	}
	if !resp.Replayed {
		t.Error("the retry is not marked as a replay")
	}
	// Once more, after the answer: the same certificate again.
	c2.send(req)
	again, ok := c2.read().(protocol.CertificateResponse)
	if !ok || !again.Replayed || again.Certificates[0].ID != resp.Certificates[0].ID {
		t.Fatal("second retry did not replay the same certificate")
	}
	if n := h.shc.count(); n != 1 {
		t.Fatalf("signed %d times, want once", n)
	}
	c2.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1})
	if ack, ok := c2.read().(protocol.Ack); !ok || ack.RequestID != req.RequestID {
		t.Fatal("no ack")
	}
	r, err := h.st.Request(context.Background(), req.RequestID)
	if err != nil || r.State != store.RequestSettled || len(r.Replay) != 0 {
		t.Fatalf("register after the outcome: %+v, %v; want settled without replay", r, err)
	}
	// After the outcome the ID is spent.
	c2.send(req)
	if e, ok := c2.read().(*protocol.Error); !ok || e.Code != protocol.CodeRequestIDReused {
		t.Fatalf("request repeated after its outcome got %#v", e)
	}
}

// framesSeen counts the frames the server read, from its metrics.
func framesSeen(h *harness) int {
	mfs, err := h.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "kioskcert_center_frames_received_total" {
			return int(mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReuseByAnotherKioskRefused(t *testing.T) {
	h := newHarness(t, nil)
	c1, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, _, err := h.dial(t, h.enroll(t, "K2", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	req := newIssue()
	c1.send(req)
	if _, ok := c1.read().(protocol.CertificateResponse); !ok {
		t.Fatal("no certificate")
	}
	c2.send(req)
	if e, ok := c2.read().(*protocol.Error); !ok || e.Code != protocol.CodeRequestIDReused {
		t.Fatalf("another kiosk reusing the ID got %#v", e)
	}
	// Nor may it report the other kiosk's outcome.
	c2.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1})
	if e, ok := c2.read().(*protocol.Error); !ok || e.Code != protocol.CodeUnknownRequest {
		t.Fatalf("outcome for another kiosk's request got %#v", e)
	}
	if h.shc.count() != 1 {
		t.Fatal("issued twice")
	}
}

func TestInFlightLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxInFlight = 1 })
	h.shc.hold()
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	first, second := newIssue(), newIssue()
	c.send(first)
	<-h.shc.started
	c.send(second)
	e, ok := c.read().(*protocol.Error)
	if !ok || e.Code != protocol.CodeRateLimited || e.RequestID != second.RequestID || !e.Retryable {
		t.Fatalf("second request in flight got %#v", e)
	}
	close(h.shc.gate)
	if r, ok := c.read().(protocol.CertificateResponse); !ok || r.RequestID != first.RequestID {
		t.Fatal("first request not answered")
	}
	// The refused request was not remembered: it can be sent again. (The
	// slot is freed just after the answer is queued, so the very first
	// resend may still be refused; a kiosk backs off and retries.)
	for attempt := 0; ; attempt++ {
		c.send(second)
		m := c.read()
		if e, ok := m.(*protocol.Error); ok && e.Code == protocol.CodeRateLimited && attempt < 50 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if r, ok := m.(protocol.CertificateResponse); !ok || r.RequestID != second.RequestID || r.Replayed {
			t.Fatalf("second request not issued on retry: %#v", m)
		}
		break
	}
	if n := h.shc.count(); n != 2 {
		t.Fatalf("%d signatures for two requests", n)
	}
}

func TestRetryableErrorIsRunAgain(t *testing.T) {
	h := newHarness(t, nil)
	h.records.fail(errors.New("records: region key unwrap failed for 123456789018"))
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	req := newIssue()
	c.send(req)
	e, ok := c.read().(*protocol.Error)
	if !ok || e.Code != protocol.CodeInternal || e.Detail != "" {
		t.Fatalf("got %#v, want internal_error without detail", e)
	}
	h.records.fail(nil)
	c.send(req)
	if r, ok := c.read().(protocol.CertificateResponse); !ok || r.Replayed {
		t.Fatal("retry after an internal error was not run again")
	}
	evs, err := h.st.Events(context.Background(), store.EventQuery{RequestID: req.RequestID})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, string(ev.Type))
	}
	if got := strings.Join(types, " "); got != "requested failed requested issued" {
		t.Fatalf("events %s", got)
	}
}

func TestOutcomes(t *testing.T) {
	h := newHarness(t, nil)
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() protocol.Issue {
		req := newIssue()
		c.send(req)
		if _, ok := c.read().(protocol.CertificateResponse); !ok {
			t.Fatal("no certificate")
		}
		return req
	}
	tests := []struct {
		name      string
		outcome   func(id string) protocol.Outcome
		wantEvent store.EventType
		wantErr   protocol.Code
	}{
		{"printed", func(id string) protocol.Outcome {
			return protocol.Outcome{RequestID: id, Outcome: protocol.OutcomePrinted, Copies: 1}
		}, store.EventPrinted, ""},
		{"paper out", func(id string) protocol.Outcome {
			return protocol.Outcome{RequestID: id, Outcome: protocol.OutcomeFailed, Reason: protocol.CodePrinterPaperOut}
		}, store.EventPrintFailed, ""},
		{"refused by the kiosk", func(id string) protocol.Outcome {
			return protocol.Outcome{RequestID: id, Outcome: protocol.OutcomeRefused, Reason: protocol.CodeHolderMismatch}
		}, store.EventPrintRefused, ""},
		{"cancelled", func(id string) protocol.Outcome {
			return protocol.Outcome{RequestID: id, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled}
		}, store.EventCancelled, ""},
		{"printed more copies than issued", func(id string) protocol.Outcome {
			return protocol.Outcome{RequestID: id, Outcome: protocol.OutcomePrinted, Copies: 3}
		}, "", protocol.CodeBadMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := issue()
			c.send(tt.outcome(req.RequestID))
			m := c.read()
			if tt.wantErr != "" {
				if e, ok := m.(*protocol.Error); !ok || e.Code != tt.wantErr {
					t.Fatalf("got %#v, want %s", m, tt.wantErr)
				}
				// Nothing was recorded; the corrected report is accepted.
				c.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1})
				if ack, ok := c.read().(protocol.Ack); !ok || ack.RequestID != req.RequestID {
					t.Fatal("corrected outcome not acknowledged")
				}
				return
			}
			if ack, ok := m.(protocol.Ack); !ok || ack.RequestID != req.RequestID {
				t.Fatalf("got %#v, want ack", m)
			}
			evs, err := h.st.Events(context.Background(), store.EventQuery{KioskID: "K1"})
			if err != nil {
				t.Fatal(err)
			}
			last := evs[len(evs)-1]
			if last.Type != tt.wantEvent || last.RequestID != req.RequestID || last.Municipality != "012041" || last.CertificateID == "" || last.StoreCode != "S-K1" {
				t.Fatalf("event %+v, want %s for the request", last, tt.wantEvent)
			}
			if o := tt.outcome(req.RequestID); o.Reason != "" && last.Result != string(o.Reason) {
				t.Errorf("event result %q, want the reason %q", last.Result, o.Reason)
			}
			if o := tt.outcome(req.RequestID); o.Outcome == protocol.OutcomePrinted && last.Copies != o.Copies {
				t.Errorf("printed event copies %d", last.Copies)
			}
		})
	}
}

func TestOutcomeWhileIssuing(t *testing.T) {
	h := newHarness(t, nil)
	h.shc.hold()
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	req := newIssue()
	c.send(req)
	<-h.shc.started
	c.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled})
	if e, ok := c.read().(*protocol.Error); !ok || e.Code != protocol.CodeUnavailable || !e.Retryable {
		t.Fatalf("outcome while issuing got %#v, want unavailable", e)
	}
	close(h.shc.gate)
	if _, ok := c.read().(protocol.CertificateResponse); !ok {
		t.Fatal("no certificate")
	}
	c.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled})
	if _, ok := c.read().(protocol.Ack); !ok {
		t.Fatal("outcome after the certificate not acknowledged")
	}
}

// TestShutdown: issuances in flight finish and are answered; new ones are
// refused as unavailable; then the connections close.
func TestShutdown(t *testing.T) {
	h := newHarness(t, nil)
	h.shc.hold()
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	running := newIssue()
	c.send(running)
	<-h.shc.started
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	waitFor(t, h.srv.isDraining)
	late := newIssue()
	c.send(late)
	if e, ok := c.read().(*protocol.Error); !ok || e.Code != protocol.CodeUnavailable || e.RequestID != late.RequestID {
		t.Fatalf("issue while draining got %#v", e)
	}
	close(h.shc.gate)
	if r, ok := c.read().(protocol.CertificateResponse); !ok || r.RequestID != running.RequestID {
		t.Fatal("the issuance in flight was not answered before shutdown")
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var ce *websocket.CloseError
	if _, err := c.tryRead(); !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("after shutdown read %v, want close going away", err)
	}
	if h.srv.InFlight() != 0 {
		t.Fatal("issuances still counted in flight after shutdown")
	}
}

func TestLiveStatus(t *testing.T) {
	h := newHarness(t, nil)
	conf := h.enroll(t, "K1", store.KioskActive)
	c, _, err := h.dial(t, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.send(protocol.Status{Reader: "ok", Printer: "paper-out", State: "idle"})
	c.send(protocol.Ping{Nonce: "n1"})
	if p, ok := c.read().(protocol.Pong); !ok || p.Nonce != "n1" {
		t.Fatal("no pong")
	}
	live := h.srv.Live()
	if len(live) != 1 || !live[0].Connected || live[0].Printer != "paper-out" || live[0].State != "idle" {
		t.Fatalf("live %+v", live)
	}
	c.ws.Close()
	waitFor(t, func() bool { l := h.srv.Live(); return len(l) == 1 && !l[0].Connected })
}

// TestCloseKiosk: an operator suspends a kiosk while it is connected. Its
// connections close at once, nothing more is answered on them, and its
// reconnection is refused at the handshake.
func TestCloseKiosk(t *testing.T) {
	h := newHarness(t, nil)
	conf := h.enroll(t, "K1", store.KioskActive)
	other, _, err := h.dial(t, h.enroll(t, "K2", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*client
	for range 2 {
		c, _, err := h.dial(t, conf, nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if err := h.st.SetKioskStatus(context.Background(), "K1", store.KioskSuspended, "investigation", time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.CloseKiosk("K1"); n != 2 {
		t.Fatalf("CloseKiosk closed %d connections, want 2", n)
	}
	for _, c := range conns {
		var ce *websocket.CloseError
		if _, err := c.tryRead(); !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("suspended kiosk's connection read %v, want close", err)
		}
	}
	if _, _, err := h.dial(t, conf, nil); err == nil {
		t.Fatal("suspended kiosk reconnected")
	}
	// The other kiosk is untouched.
	other.send(protocol.Ping{Nonce: "still-here"})
	if p, ok := other.read().(protocol.Pong); !ok || p.Nonce != "still-here" {
		t.Fatal("another kiosk lost its connection")
	}
}
