package centerclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// testCenter is an in-process issuance center for the client's tests: a
// real TLS 1.3 listener that requires the kiosk's client certificate, a
// real websocket, and the real protocol codec. What it answers is
// scripted per test, so that a connection can be cut or an answer held or
// delayed at an exact point; the real center is exercised end to end in
// kiosk/internal/e2e.
type testCenter struct {
	t   *testing.T
	srv *httptest.Server
	url string
	tls *tls.Config // the kiosk's side: client certificate, pinned CA

	// onIssue answers an issue on the n-th connection (1-based); nil
	// answers with a certificate at once.
	onIssue func(sc *serverConn, req protocol.Issue)
	// onOutcome answers an outcome; nil acknowledges it at once.
	onOutcome func(sc *serverConn, o protocol.Outcome)
	// onRenew answers a renewal; nil answers with a fixed chain.
	onRenew func(sc *serverConn, r protocol.Renew)

	mu       sync.Mutex
	conns    []*serverConn
	received []received
	changed  chan struct{} // closed at every connection and every frame received
	wg       sync.WaitGroup
}

// received is one frame the center read, with the connection it came on.
type received struct {
	conn int // 1-based connection number
	msg  protocol.Message
}

// serverConn is the center's end of one kiosk connection.
type serverConn struct {
	n  int
	ws *websocket.Conn
	wm sync.Mutex
	// pongs receives a value for every websocket pong.
	pongs chan struct{}
}

func (sc *serverConn) send(t *testing.T, m protocol.Message) {
	b, err := protocol.Encode(m)
	if err != nil {
		t.Errorf("test center: encode %s: %v", m.Type(), err)
		return
	}
	sc.wm.Lock()
	defer sc.wm.Unlock()
	sc.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	sc.ws.WriteMessage(websocket.TextMessage, b) // a cut connection loses it, as on the wire
}

// ping sends a websocket ping and waits for the kiosk's pong: every frame
// sent before it has then been read and dispatched by the client.
func (sc *serverConn) ping(t *testing.T) {
	t.Helper()
	sc.wm.Lock()
	err := sc.ws.WriteControl(websocket.PingMessage, []byte("sync"), time.Now().Add(5*time.Second))
	sc.wm.Unlock()
	if err != nil {
		t.Fatalf("test center: ping: %v", err)
	}
	select {
	case <-sc.pongs:
	case <-time.After(5 * time.Second):
		t.Fatal("test center: no pong from the kiosk within 5 s")
	}
}

// cut closes the connection without a close frame, as a network failure does.
func (sc *serverConn) cut() { sc.ws.NetConn().Close() }

func newTestCenter(t *testing.T) *testCenter {
	t.Helper()
	caKey, caCert := newCA(t, "test center CA")
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	serverCert := newLeaf(t, caKey, caCert, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	kioskCert := newLeaf(t, caKey, caCert, "K-TEST", x509.ExtKeyUsageClientAuth)

	tc := &testCenter{t: t, changed: make(chan struct{})}
	tc.srv = httptest.NewUnstartedServer(http.HandlerFunc(tc.serve))
	tc.srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	tc.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut by the tests
	tc.srv.StartTLS()
	tc.url = "wss://" + tc.srv.Listener.Addr().String() + "/v1/kiosk"
	tc.tls = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{kioskCert}, RootCAs: pool, ServerName: "127.0.0.1"}
	t.Cleanup(func() {
		tc.cutAll()
		tc.srv.Close()
		tc.wg.Wait()
	})
	return tc
}

func (tc *testCenter) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/kiosk" || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "not a kiosk", http.StatusForbidden)
		return
	}
	up := websocket.Upgrader{HandshakeTimeout: 5 * time.Second}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	tc.wg.Add(1)
	defer tc.wg.Done()
	defer ws.Close()
	sc := &serverConn{ws: ws, pongs: make(chan struct{}, 16)}
	ws.SetPongHandler(func(string) error {
		select {
		case sc.pongs <- struct{}{}:
		default:
		}
		return nil
	})
	tc.mu.Lock()
	tc.conns = append(tc.conns, sc)
	sc.n = len(tc.conns)
	tc.mu.Unlock()
	sc.send(tc.t, protocol.Hello{
		ProtocolVersion: 1, KioskID: "K-TEST", Time: time.Now().Format(time.RFC3339),
		Municipalities: []protocol.Municipality{{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City"}},
		FeePerCopyYen:  120, Kinds: []string{"domestic"}, MaxCopies: 5, HeartbeatSeconds: 15,
	})
	tc.notify()
	for {
		typ, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if typ != websocket.TextMessage {
			continue
		}
		m, err := protocol.Decode(b, protocol.MaxKioskFrame)
		if err != nil {
			tc.t.Errorf("test center: the kiosk sent an undecodable frame: %v", err)
			continue
		}
		tc.mu.Lock()
		tc.received = append(tc.received, received{sc.n, m})
		onIssue, onOutcome, onRenew := tc.onIssue, tc.onOutcome, tc.onRenew
		tc.mu.Unlock()
		tc.notify()
		switch m := m.(type) {
		case protocol.Issue:
			if onIssue != nil {
				onIssue(sc, m)
			} else {
				sc.send(tc.t, tc.certificate(m))
			}
		case protocol.Outcome:
			if onOutcome != nil {
				onOutcome(sc, m)
			} else {
				sc.send(tc.t, protocol.Ack{RequestID: m.RequestID})
			}
		case protocol.Renew:
			if onRenew != nil {
				onRenew(sc, m)
			} else {
				sc.send(tc.t, protocol.Renewed{RequestID: m.RequestID, Chain: testChain})
			}
		case protocol.Ping:
			sc.send(tc.t, protocol.Pong(m))
		}
	}
}

func (tc *testCenter) notify() {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	close(tc.changed)
	tc.changed = make(chan struct{})
}

// setIssue and setOutcome replace the scripts.
func (tc *testCenter) setIssue(f func(sc *serverConn, req protocol.Issue)) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.onIssue = f
}

func (tc *testCenter) setOutcome(f func(sc *serverConn, o protocol.Outcome)) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.onOutcome = f
}

// certificate is the center's answer to req: a valid synthetic
// certificate bound to the request and its card files.
func (tc *testCenter) certificate(req protocol.Issue) protocol.CertificateResponse {
	c := certtest.Resident(tc.t, "hanako", certificate.Domestic)
	c.SHC = "shc:/" + strings.Repeat("56", 40)
	return protocol.CertificateResponse{
		RequestID: req.RequestID, CardDigest: protocol.CardDigest(req.Card),
		Certificates: []certificate.Certificate{*c}, Copies: req.Copies, FeeYen: 120 * req.Copies,
	}
}

// conn returns the n-th connection (1-based).
func (tc *testCenter) conn(n int) *serverConn {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.conns[n-1]
}

func (tc *testCenter) connCount() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return len(tc.conns)
}

// cutAll cuts every connection.
func (tc *testCenter) cutAll() {
	tc.mu.Lock()
	conns := append([]*serverConn(nil), tc.conns...)
	tc.mu.Unlock()
	for _, sc := range conns {
		sc.cut()
	}
}

// count returns how many frames of type typ for requestID arrived on
// connection n (0: on any connection).
func (tc *testCenter) count(n int, typ, requestID string) int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	k := 0
	for _, r := range tc.received {
		if (n == 0 || r.conn == n) && r.msg.Type() == typ && messageRequestID(r.msg) == requestID {
			k++
		}
	}
	return k
}

func messageRequestID(m protocol.Message) string {
	switch m := m.(type) {
	case protocol.Issue:
		return m.RequestID
	case protocol.Outcome:
		return m.RequestID
	case protocol.Renew:
		return m.RequestID
	}
	return ""
}

// await waits until cond holds, re-checking it at every connection and
// every frame the center receives, and every few milliseconds for what
// changes at the client only.
func (tc *testCenter) await(what string, cond func() bool) {
	tc.t.Helper()
	timeout := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		tc.mu.Lock()
		ch := tc.changed
		tc.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-timeout:
			tc.t.Fatalf("test center: %s: not within 10 s", what)
		}
	}
}

// newClient returns a client of tc, running until the test ends, and
// waits until it is connected.
func (tc *testCenter) newClient(t *testing.T) *Client {
	t.Helper()
	c := New(Config{URL: tc.url, TLS: tc.tls, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// testIssue is a valid issue request with synthetic card files (the test
// center does not verify them).
func testIssue() protocol.Issue {
	return protocol.Issue{
		RequestID: protocol.NewRequestID(), Municipality: "012041", Kind: certificate.Domestic, Copies: 1,
		Card: protocol.CardFiles{MyNumber: []byte{1}, FourItems: []byte{2}, Signature: []byte{3}, Certificate: []byte{4}},
	}
}

func newCA(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func newLeaf(t *testing.T, caKey *ecdsa.PrivateKey, ca *x509.Certificate, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
