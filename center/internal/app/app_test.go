package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/app"
	centerauthority "github.com/kioskcert/kioskcert/center/internal/authority"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/demodata"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// syncBuffer collects the center's log for the personal-data scan.
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

type testCenter struct {
	dir       string
	cfg       *config.Config
	center    *app.Center
	auth      carddata.Authority
	residents *demo.Data
	log       *syncBuffer
	cancel    context.CancelFunc
	done      chan error
}

var (
	authOnce sync.Once
	testAuth carddata.Authority
	apKey    *rsa.PrivateKey
)

func authority(t testing.TB) carddata.Authority {
	authOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		var id [16]byte
		copy(id[:], "JLIS-TEST-CENTER")
		testAuth = carddata.Authority{KeyID: id, Signer: k}
		if apKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testAuth
}

// startCenter creates and runs a demo center on loopback ports, with two
// kiosks enrolled: K-GOOD (active) and K-SUSP (suspended).
func startCenter(t *testing.T, change ...func(*config.Config)) *testCenter {
	t.Helper()
	return startCenterIn(t, t.TempDir(), change...)
}

// startCenterIn is startCenter with the center's files in dir.
func startCenterIn(t *testing.T, dir string, change ...func(*config.Config)) *testCenter {
	t.Helper()
	tc := &testCenter{dir: dir, auth: authority(t), log: &syncBuffer{}}
	ik, _ := tc.auth.IssuerKey()
	trust, err := carddata.MarshalIssuerKey(ik)
	if err != nil {
		t.Fatal(err)
	}
	trustFile := filepath.Join(t.TempDir(), "trust.pem")
	os.WriteFile(trustFile, trust, 0o644)
	ctx := context.Background()
	tc.cfg, err = admin.Init(ctx, admin.InitOptions{
		Dir: tc.dir, CardTrustFile: trustFile, IssuerURL: "https://issuer.test/kioskcert",
		KioskListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", EnrollListen: "127.0.0.1:0",
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tc.cfg.Heartbeat.Duration = time.Second
	for _, f := range change {
		f(tc.cfg)
	}
	s, closeLocal, err := admin.OpenLocal(ctx, tc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	op := admin.Actor{Operator: "test-operator", Source: "local"}
	if _, err := demodata.Load(ctx, s, op); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"K-GOOD", "K-SUSP"} {
		e, err := s.EnrollKiosk(ctx, op, admin.KioskEnrollment{ID: id, StoreName: "テスト店", StoreCode: "S-" + id, Chain: "TEST", Prefecture: "01", Region: "hokkaido"})
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.WriteEnrollment(filepath.Join(tc.dir, "kiosks", id), e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SetKioskStatus(ctx, op, "K-SUSP", store.KioskSuspended, "maintenance"); err != nil {
		t.Fatal(err)
	}
	closeLocal()
	if tc.residents, err = demo.Load(); err != nil {
		t.Fatal(err)
	}
	tc.start(t)
	return tc
}

func (tc *testCenter) start(t *testing.T) {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(tc.log, nil))
	c, err := app.Open(context.Background(), tc.cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	tc.center = c
	ctx, cancel := context.WithCancel(context.Background())
	tc.cancel, tc.done = cancel, make(chan error, 1)
	go func() { tc.done <- c.Serve(ctx); c.Close() }()
	t.Cleanup(tc.stop)
}

func (tc *testCenter) stop() {
	if tc.cancel != nil {
		tc.cancel()
		<-tc.done
		tc.cancel = nil
	}
}

func (tc *testCenter) tlsFor(t *testing.T, kiosk string) *tls.Config {
	t.Helper()
	dir := filepath.Join(tc.dir, "kiosks", kiosk)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, admin.KioskCertFile), filepath.Join(dir, admin.KioskKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := kioskpki.LoadCertPool(filepath.Join(dir, admin.CenterCAFile))
	if err != nil {
		t.Fatal(err)
	}
	return kioskpki.ClientTLS(cert, pool, "localhost")
}

type kioskClient struct {
	t     *testing.T
	ws    *websocket.Conn
	hello protocol.Hello
}

func (tc *testCenter) dial(t *testing.T, tlsConf *tls.Config) (*kioskClient, error) {
	d := websocket.Dialer{TLSClientConfig: tlsConf, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial("wss://"+tc.center.Addr("kiosk")+"/v1/kiosk", nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	k := &kioskClient{t: t, ws: ws}
	t.Cleanup(func() { ws.Close() })
	m := k.read()
	h, ok := m.(protocol.Hello)
	if !ok {
		return nil, fmt.Errorf("first frame is %T", m)
	}
	k.hello = h
	return k, nil
}

func (k *kioskClient) send(m protocol.Message) {
	b, err := protocol.Encode(m)
	if err != nil {
		k.t.Fatal(err)
	}
	k.sendRaw(b)
}

func (k *kioskClient) sendRaw(b []byte) {
	k.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := k.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		k.t.Fatal(err)
	}
}

func (k *kioskClient) read() protocol.Message {
	k.t.Helper()
	k.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, b, err := k.ws.ReadMessage()
	if err != nil {
		k.t.Fatal(err)
	}
	m, err := protocol.Decode(b, protocol.MaxCenterFrame)
	if err != nil {
		k.t.Fatal(err)
	}
	return m
}

// card makes the card files of a demo resident, optionally with a changed
// name (a validly signed card whose holder differs from the record).
func (tc *testCenter) card(t *testing.T, id string, name string) carddata.Raw {
	t.Helper()
	r, err := tc.residents.Resident(id)
	if err != nil {
		t.Fatal(err)
	}
	if name == "" {
		name = r.Name
	}
	var sub [16]byte
	copy(sub[:], id)
	raw, err := tc.auth.Personalize(r.MyNumber, carddata.FourItems{Name: name, Address: r.Address, BirthDate: r.CardBirthDate(), Sex: carddata.Sex(r.Sex[0])}, apKey, sub)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (k *kioskClient) issue(muni string, kind certificate.Kind, card carddata.Raw) (protocol.Issue, protocol.Message) {
	req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: muni, Kind: kind, Copies: 1, Card: card}
	k.send(req)
	return req, k.read()
}

func (tc *testCenter) jwks(t *testing.T) *shc.JWKS {
	resp, err := http.Get("http://" + tc.center.Addr("public") + "/kioskcert/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("JWKS lacks CORS")
	}
	b, _ := io.ReadAll(resp.Body)
	set, err := shc.ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestIssueAndVerify(t *testing.T) {
	tc := startCenter(t)
	k, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	if len(k.hello.Municipalities) != 2 || k.hello.FeePerCopyYen != 120 || len(k.hello.Kinds) != 2 {
		t.Fatalf("hello: %+v", k.hello)
	}
	for _, m := range k.hello.Municipalities {
		if m.Code == "112453" {
			t.Fatal("hello lists a non-participating municipality")
		}
	}
	jwks := tc.jwks(t)
	csca, err := os.ReadFile(filepath.Join(tc.dir, "keys", "vdsnc", "csca.pem"))
	if err != nil {
		t.Fatal(err)
	}

	for _, kind := range []certificate.Kind{certificate.Domestic, certificate.Overseas} {
		t.Run(string(kind), func(t *testing.T) {
			card := tc.card(t, "hanako", "")
			req, m := k.issue("012041", kind, card)
			resp, ok := m.(protocol.CertificateResponse)
			if !ok {
				t.Fatalf("got %#v", m)
			}
			if resp.RequestID != req.RequestID || resp.CardDigest != protocol.CardDigest(card) || resp.FeeYen != 120 {
				t.Fatalf("response not bound to the request: %+v", resp)
			}
			want := 1
			if kind == certificate.Overseas {
				want = 2
			}
			if len(resp.Certificates) != want || resp.Certificates[0].Kind != kind {
				t.Fatalf("%d certificates, first %s", len(resp.Certificates), resp.Certificates[0].Kind)
			}
			for _, c := range resp.Certificates {
				card, err := shc.Verify(c.SHC, shc.VerifyOptions{Keys: jwks, Issuer: "https://issuer.test/kioskcert", Now: time.Now()})
				if err != nil {
					t.Fatalf("SHC of %s: %v", c.Kind, err)
				}
				if card.Holder.BirthDate != "1985-04-02" || len(card.Doses) != 2 {
					t.Fatalf("SHC content: %+v", card.Holder)
				}
				if c.Kind == certificate.Overseas {
					v, err := vdsnc.Verify([]byte(c.VDSNC), vdsnc.VerifyOptions{CSCAs: pemCerts(t, csca), Now: time.Now()})
					if err != nil {
						t.Fatalf("VDS-NC: %v", err)
					}
					if v.Data.Msg.UVCI != c.ID {
						t.Fatalf("VDS-NC uvci %q, certificate ID %q", v.Data.Msg.UVCI, c.ID)
					}
				}
			}
			k.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1})
			if ack, ok := k.read().(protocol.Ack); !ok || ack.RequestID != req.RequestID {
				t.Fatal("no ack for the outcome")
			}
		})
	}
	tc.checkNoPersonalData(t)
}

func pemCerts(t *testing.T, b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no certificates")
	}
	return out
}

func TestRefusals(t *testing.T) {
	tc := startCenter(t)
	k, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	other := carddata.Authority{Signer: mustRSA(t)}
	copy(other.KeyID[:], "UNKNOWN-ISSUER-0")
	hanako, _ := tc.residents.Resident("hanako")
	unknownIssuer, err := other.Personalize(hanako.MyNumber, carddata.FourItems{Name: hanako.Name, Address: hanako.Address, BirthDate: hanako.CardBirthDate(), Sex: '2'}, apKey, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	tampered := tc.card(t, "hanako", "")
	tampered.FourItems[len(tampered.FourItems)-3] ^= 1

	tests := []struct {
		name string
		muni string
		kind certificate.Kind
		card carddata.Raw
		want protocol.Code
	}{
		{"non-participating municipality", "112453", certificate.Domestic, tc.card(t, "hanako", ""), protocol.CodeNotParticipating},
		{"unknown municipality", "131016", certificate.Domestic, tc.card(t, "hanako", ""), protocol.CodeUnknownMunicipality},
		{"tampered card", "012041", certificate.Domestic, tampered, protocol.CodeCardInvalid},
		{"unknown issuing authority", "012041", certificate.Domestic, unknownIssuer, protocol.CodeCardIssuerUnknown},
		{"no record anywhere", "012041", certificate.Domestic, tc.card(t, "norecord", ""), protocol.CodeNoRecord},
		{"record in another municipality", "011002", certificate.Domestic, tc.card(t, "hanako", ""), protocol.CodeNoRecord},
		{"holder mismatch", "012041", certificate.Domestic, tc.card(t, "hanako", "試験　花代"), protocol.CodeHolderMismatch},
		{"overseas without passport", "012041", certificate.Overseas, tc.card(t, "takasaki", ""), protocol.CodePassportRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, m := k.issue(tt.muni, tt.kind, tt.card)
			e, ok := m.(*protocol.Error)
			if !ok || e.Code != tt.want || e.RequestID != req.RequestID {
				t.Fatalf("got %#v, want error %s", m, tt.want)
			}
			if e.Message.Ja == "" || e.Message.En == "" {
				t.Fatal("error without resident messages")
			}
		})
	}
	// The moved resident: each municipality certifies its own doses.
	for muni, doses := range map[string][]int{"011002": {1, 2}, "012041": {3, 4}} {
		_, m := k.issue(muni, certificate.Domestic, tc.card(t, "ichiro", ""))
		resp, ok := m.(protocol.CertificateResponse)
		if !ok {
			t.Fatalf("ichiro in %s: %#v", muni, m)
		}
		var got []int
		for _, d := range resp.Certificates[0].Doses {
			got = append(got, d.Number)
		}
		if fmt.Sprint(got) != fmt.Sprint(doses) {
			t.Fatalf("ichiro in %s: doses %v, want %v", muni, got, doses)
		}
	}
	tc.checkNoPersonalData(t)
}

func mustECDSA(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func loadCA(t *testing.T, tc *testCenter) *kioskpki.CA {
	cert, err := kioskpki.LoadCert(tc.cfg.Path(tc.cfg.KioskCAFile))
	if err != nil {
		t.Fatal(err)
	}
	// A demo center's kiosk CA (the root) lives beside it.
	root, err := centerauthority.Open(filepath.Join(tc.dir, admin.AuthoritiesDir, string(centerauthority.KioskCA)), centerauthority.KioskCA)
	if err != nil {
		t.Fatal(err)
	}
	if !root.Cert.Equal(cert) {
		t.Fatal("the demo kiosk CA is not the CA the center trusts")
	}
	return &kioskpki.CA{Cert: cert, Signer: root.Signer}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMalformedFramesKeepConnection(t *testing.T) {
	tc := startCenter(t)
	k, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		frame string
		want  protocol.Code
	}{
		{`not json`, protocol.CodeBadMessage},
		{`{"v":9,"type":"ping","body":{"nonce":"a"}}`, protocol.CodeUnsupportedVersion},
		{`{"v":1,"type":"hello","body":{"protocolVersion":1,"kioskId":"x","time":"t","municipalities":[],"feePerCopyYen":0,"kinds":[],"maxCopies":1,"heartbeatSeconds":1}}`, protocol.CodeUnexpectedMessage},
		{`{"v":1,"type":"outcome","body":{"requestId":"0123456789abcdef0123456789abcdef","outcome":"printed","copies":1}}`, protocol.CodeUnknownRequest},
		{`{"v":1,"type":"ping","body":{"nonce":"` + strings.Repeat("x", 40000) + `"}}`, protocol.CodeMessageTooLarge},
	} {
		k.sendRaw([]byte(tt.frame))
		e, ok := k.read().(*protocol.Error)
		if !ok || e.Code != tt.want {
			t.Fatalf("%.40s: got %#v, want %s", tt.frame, e, tt.want)
		}
	}
	k.send(protocol.Ping{Nonce: "still-there"})
	if p, ok := k.read().(protocol.Pong); !ok || p.Nonce != "still-there" {
		t.Fatal("connection did not survive bad frames")
	}
}

func TestReplayAndReuse(t *testing.T) {
	tc := startCenter(t)
	k, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	card := tc.card(t, "taro", "")
	req, m := k.issue("012041", certificate.Domestic, card)
	first, ok := m.(protocol.CertificateResponse)
	if !ok {
		t.Fatalf("%#v", m)
	}
	// The kiosk lost the connection and retries on a new one.
	k.ws.Close()
	k2, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	k2.send(req)
	again, ok := k2.read().(protocol.CertificateResponse)
	if !ok || !again.Replayed || again.Certificates[0].ID != first.Certificates[0].ID || again.Certificates[0].SHC != first.Certificates[0].SHC {
		t.Fatal("retry did not replay the same certificate")
	}
	// The same ID with another card is refused.
	other := req
	other.Card = tc.card(t, "hanako", "")
	k2.send(other)
	if e, ok := k2.read().(*protocol.Error); !ok || e.Code != protocol.CodeRequestIDReused {
		t.Fatalf("reused ID: %#v", e)
	}
	// The outcome settles the request and drops its replay; the ID is spent.
	k2.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1})
	if _, ok := k2.read().(protocol.Ack); !ok {
		t.Fatal("no ack")
	}
	r, err := tc.center.Store.Request(context.Background(), req.RequestID)
	if err != nil || r.State != store.RequestSettled || len(r.Replay) != 0 {
		t.Fatalf("register after the outcome: %+v, %v", r, err)
	}
	k2.send(req)
	if e, ok := k2.read().(*protocol.Error); !ok || e.Code != protocol.CodeRequestIDReused {
		t.Fatalf("retry after the outcome: %#v", e)
	}
}

func TestKioskAuthentication(t *testing.T) {
	tc := startCenter(t)
	// No client certificate.
	pool, _ := kioskpki.LoadCertPool(filepath.Join(tc.dir, "kiosks", "K-GOOD", admin.CenterCAFile))
	if _, err := tc.dial(t, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}); err == nil {
		t.Fatal("connected without a client certificate")
	}
	// Suspended kiosk.
	if _, err := tc.dial(t, tc.tlsFor(t, "K-SUSP")); err == nil {
		t.Fatal("suspended kiosk connected")
	}
	// A certificate from the right CA for a kiosk that was never enrolled.
	ca := loadCA(t, tc)
	key := mustECDSA(t)
	cert, err := ca.IssueKiosk("K-ROGUE", &key.PublicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rogue := tc.tlsFor(t, "K-GOOD")
	rogue.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}
	if _, err := tc.dial(t, rogue); err == nil {
		t.Fatal("unenrolled kiosk connected")
	}
	// The refusals name the reason in the center's log.
	log := tc.log.String()
	for _, want := range []string{"kiosk is suspended: maintenance", "certificate not enrolled"} {
		if !strings.Contains(log, want) {
			t.Errorf("center log lacks %q", want)
		}
	}
	// The active kiosk still gets in.
	if _, err := tc.dial(t, tc.tlsFor(t, "K-GOOD")); err != nil {
		t.Fatal(err)
	}
}

// checkNoPersonalData scans every file the center wrote and its log for the
// demo residents' identifying values: the center keeps no application or
// certificate data outside the encrypted records.
func (tc *testCenter) checkNoPersonalData(t *testing.T) {
	t.Helper()
	var needles [][]byte
	for _, r := range tc.residents.Residents {
		needles = append(needles, []byte(r.MyNumber), []byte(r.Name), []byte(r.PassportNumber), []byte(r.Address))
		if r.BirthDate != "" {
			needles = append(needles, []byte(r.BirthDate), []byte(r.CardBirthDate()))
		}
		if r.RomanGiven != "" {
			needles = append(needles, []byte(r.RomanFamily+" "+r.RomanGiven))
		}
	}
	scan := func(name string, b []byte) {
		for _, n := range needles {
			if len(n) > 0 && bytes.Contains(b, n) {
				sum := sha256.Sum256(n)
				t.Errorf("%s contains personal data (needle %x)", name, sum[:4])
			}
		}
	}
	scan("center log", []byte(tc.log.String()))
	err := filepath.WalkDir(tc.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scan(path, b)
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}

// A restart loses nothing of a request: the register in the store answers
// the retry with the same certificate (never a second one) and settles the
// outcome once.
func TestRestartReplaysAndSettlesOnce(t *testing.T) {
	tc := startCenter(t)
	k, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	req, m := k.issue("012041", certificate.Domestic, tc.card(t, "hanako", ""))
	first, ok := m.(protocol.CertificateResponse)
	if !ok {
		t.Fatalf("issue: %#v", m)
	}
	k.ws.Close()
	tc.stop()
	tc.start(t)
	k2, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	k2.send(req)
	if again, ok := k2.read().(protocol.CertificateResponse); !ok || !again.Replayed || again.Certificates[0].ID != first.Certificates[0].ID {
		t.Fatalf("retry after restart: %#v", again)
	}
	for i := 0; i < 2; i++ { // the second report is a duplicate: acknowledged, not recorded again
		k2.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1})
		if ack, ok := k2.read().(protocol.Ack); !ok || ack.RequestID != req.RequestID {
			t.Fatalf("outcome %d after restart not acknowledged", i)
		}
	}
	evs, err := tc.center.Store.Events(context.Background(), store.EventQuery{RequestID: req.RequestID})
	if err != nil {
		t.Fatal(err)
	}
	count := map[store.EventType]int{}
	for _, e := range evs {
		count[e.Type]++
	}
	if count[store.EventIssued] != 1 || count[store.EventPrinted] != 1 {
		t.Fatalf("audit for the request: %v", count)
	}
	// A request the center never issued stays unknown.
	k2.send(protocol.Outcome{RequestID: protocol.NewRequestID(), Outcome: protocol.OutcomePrinted, Copies: 1})
	if e, ok := k2.read().(*protocol.Error); !ok || e.Code != protocol.CodeUnknownRequest {
		t.Fatalf("unknown request: %#v", e)
	}
}
