package browsertest

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/app"
	"github.com/kioskcert/kioskcert/center/internal/demodata"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/loadtest"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// clock is the center's clock in these tests: real time plus an offset
// the test moves forward (a session expiring, a fresh TOTP step).
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// account is a console login made for the test.
type account struct {
	id, password, totp string
}

// center is a running center with its console.
type center struct {
	c      *app.Center
	clock  *clock
	dir    string
	url    string // https://127.0.0.1:port
	admin  account
	viewer account
	auth   carddata.Authority
	ap     *rsa.PrivateKey
	cancel context.CancelFunc
	done   chan error
}

// cheap Argon2id parameters keep the race-instrumented test fast; the
// accounts' hashes carry them, so logins verify with them.
var cheap = opauth.Params{Time: 1, Memory: 8 << 10, Threads: 1, SaltLen: 16, KeyLen: 32}

func startCenter(t *testing.T) *center {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	authKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ap, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	auth := carddata.Authority{Signer: authKey}
	copy(auth.KeyID[:], "CONSOLE-TEST-JLS")
	ik, err := auth.IssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	trust, err := carddata.MarshalIssuerKey(ik)
	if err != nil {
		t.Fatal(err)
	}
	trustFile := filepath.Join(dir, "trust.pem")
	if err := os.WriteFile(trustFile, trust, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := admin.Init(ctx, admin.InitOptions{Dir: filepath.Join(dir, "center"), CardTrustFile: trustFile,
		IssuerURL: "https://issuer.console-test.invalid/kc", KioskListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
		OpsListen: "127.0.0.1:0", EnrollListen: "127.0.0.1:0", ConsoleListen: "127.0.0.1:0", Operator: "op-setup"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Accounts and demo data on the stopped center's files, as an operator
	// sets up a new center.
	svc, closeLocal, err := admin.OpenLocal(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc.SetPasswordParams(cheap)
	setup := admin.Actor{Operator: "op-setup", Source: "local"}
	mk := func(id string, role store.OperatorRole) account {
		created, err := svc.AddOperator(ctx, setup, admin.NewOperator{ID: id, Role: role, Password: "a long test passphrase"})
		if err != nil {
			t.Fatal(err)
		}
		return account{id: id, password: "a long test passphrase", totp: created.TOTPSecret}
	}
	ce := &center{dir: dir, auth: auth, ap: ap, clock: &clock{}}
	ce.admin, ce.viewer = mk("op-suzuki", store.RoleAdministrator), mk("op-viewer", store.RoleViewer)
	if _, err := demodata.Load(ctx, svc, setup); err != nil {
		t.Fatal(err)
	}
	closeLocal()

	log := slog.New(slog.DiscardHandler)
	if os.Getenv("KIOSKCERT_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ce.c, err = app.Open(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ce.c.Now = ce.clock.Now
	if err := ce.c.Listen(); err != nil {
		t.Fatal(err)
	}
	ce.url = "https://" + ce.c.Addr("console")
	sctx, cancel := context.WithCancel(context.Background())
	ce.cancel, ce.done = cancel, make(chan error, 1)
	go func() { ce.done <- ce.c.Serve(sctx); ce.c.Close() }()
	t.Cleanup(func() {
		cancel()
		if err := <-ce.done; err != nil {
			t.Errorf("center: %v", err)
		}
	})
	return ce
}

// code returns the account's TOTP code after moving the clock to a fresh
// 30-second step (a code is accepted once).
func (ce *center) code(t *testing.T, a account) string {
	t.Helper()
	ce.clock.Advance(31 * time.Second)
	c, err := opauth.Code(a.totp, ce.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kiosk is a kiosk connected with the credentials of a bundle.
type kiosk struct {
	id string
	ws *websocket.Conn
}

// connectKiosk unpacks an enrollment bundle and connects as that kiosk.
func (ce *center) connectKiosk(t *testing.T, bundle []byte) *kiosk {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(bundle), int64(len(bundle)))
	if err != nil {
		t.Fatalf("bundle is not a ZIP: %v", err)
	}
	files := map[string][]byte{}
	var id string
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		dir, name := filepath.Split(f.Name)
		id = strings.TrimSuffix(dir, "/")
		files[name] = b
	}
	for _, n := range []string{admin.KioskKeyFile, admin.KioskCertFile, admin.CenterCAFile} {
		if len(files[n]) == 0 {
			t.Fatalf("bundle lacks %s", n)
		}
	}
	cert, err := tls.X509KeyPair(files[admin.KioskCertFile], files[admin.KioskKeyFile])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	blk, _ := pem.Decode(files[admin.CenterCAFile])
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(ca)
	d := websocket.Dialer{TLSClientConfig: kioskpki.ClientTLS(cert, pool, "localhost"), HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("wss://"+ce.c.Addr("kiosk")+server.Path, nil)
	if err != nil {
		t.Fatalf("kiosk %s: connect with the bundle's credentials: %v", id, err)
	}
	t.Cleanup(func() { ws.Close() })
	k := &kiosk{id: id, ws: ws}
	if _, ok := k.read(t).(protocol.Hello); !ok {
		t.Fatal("first frame is not the hello")
	}
	k.send(t, protocol.Status{Reader: "ok", Printer: "paper-low", State: "idle", AgentVersion: "1.2.3-test"})
	return k
}

func (k *kiosk) send(t *testing.T, m protocol.Message) {
	t.Helper()
	b, err := protocol.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	k.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := k.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
}

func (k *kiosk) read(t *testing.T) protocol.Message {
	t.Helper()
	for {
		k.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, b, err := k.ws.ReadMessage()
		if err != nil {
			t.Fatalf("kiosk %s: read: %v", k.id, err)
		}
		m, err := protocol.Decode(b, protocol.MaxCenterFrame)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case protocol.Ping:
			k.send(t, protocol.Pong(m))
		case protocol.Pong:
		default:
			return m
		}
	}
}

// issue asks for a certificate with card and reports it printed; it
// returns the certificate IDs, or the refusal.
func (k *kiosk) issue(t *testing.T, card loadtest.Card, copies int) ([]string, *protocol.Error) {
	t.Helper()
	req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: card.Municipality, Kind: card.Kind, Copies: copies, Card: card.Raw}
	k.send(t, req)
	switch m := k.read(t).(type) {
	case protocol.CertificateResponse:
		var ids []string
		for _, c := range m.Certificates {
			ids = append(ids, c.ID)
		}
		k.send(t, protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: copies})
		if _, ok := k.read(t).(protocol.Ack); !ok {
			t.Fatal("no ack for the printed outcome")
		}
		return ids, nil
	case *protocol.Error:
		return nil, m
	default:
		t.Fatalf("answer to an issue: %T", m)
	}
	return nil, nil
}

func (ce *center) cards(t *testing.T, n int) []loadtest.Card {
	t.Helper()
	cards, err := loadtest.DemoCards(ce.auth, ce.ap, 0, n, []certificate.Kind{certificate.Domestic})
	if err != nil {
		t.Fatal(err)
	}
	return cards
}

// Chromium.

var (
	browserCtx context.Context
	shotDir    string
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	exe, err := findChromium()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	profile, err := os.MkdirTemp("", "kioskcert-console-chromium-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
		return 1
	}
	defer os.RemoveAll(profile)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The console's certificate is issued by the test center's own CA.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 1000),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	b, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(b); err != nil {
		fmt.Fprintf(os.Stderr, "browsertest: starting %s failed: %v\n", exe, err)
		return 1
	}
	browserCtx = b
	if shotDir, err = screenshotDir(); err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		fmt.Fprintf(os.Stderr, "browsertest: screenshots in %s\n", shotDir)
	}
	return code
}

func findChromium() (string, error) {
	if p := os.Getenv("KIOSKCERT_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("browsertest: Chromium not found (/usr/bin/chromium): run `make deps`, which installs " +
		"the Debian chromium package, or set KIOSKCERT_CHROMIUM")
}

func screenshotDir() (string, error) {
	dir := os.Getenv("KIOSKCERT_ARTIFACTS")
	if dir == "" {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		mod := strings.TrimSpace(string(out))
		if err != nil || mod == "" || mod == os.DevNull {
			return "", fmt.Errorf("cannot find the module root for out/screenshots (set KIOSKCERT_ARTIFACTS): %v", err)
		}
		dir = filepath.Join(filepath.Dir(mod), "out")
	}
	dir = filepath.Join(dir, "screenshots", "console")
	return dir, os.MkdirAll(dir, 0o755)
}
