package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestFaultRun is the reduced national run of `make test` (docs/
// BENCHMARKS.md has the full one): a few hundred kiosks connected to the
// real center process, residents arriving at random, and every fault at
// once — connections dropped mid-request (the same request then repeated
// on a new connection, before and after its answer), requests cancelled,
// record lookups slowed past the issue deadline, and the center killed
// with SIGKILL and restarted in the middle. It fails on any answer not
// bound to its request, any request issued twice, and any acknowledged
// request whose audit events did not survive the kill.
func TestFaultRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a center process and hundreds of connections")
	}
	ctx := context.Background()
	dir := t.TempDir()
	bin, err := BuildCenter(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	const kiosks = 200
	if err := SetupNational(ctx, dir, kiosks, nil); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "center", admin.ConfigFile)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Every 40th lookup takes longer than the issue deadline; a claim goes
	// stale after twice the deadline, so requests in flight at the kill are
	// taken over after 3 s.
	cfg.IssueTimeout.Duration = 1500 * time.Millisecond
	cfg.Faults = config.Faults{SlowLookupEvery: 40, SlowLookupDelay: config.Duration{Duration: 2 * time.Second}}
	if err := cfg.Write(cfgPath); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "center.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cp, err := StartCenter(bin, cfgPath, logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cp.Kill(syscall.SIGTERM) }()
	port := cp.Kiosk[strings.LastIndexByte(cp.Kiosk, ':')+1:]

	ks, err := LoadKioskRange(filepath.Join(dir, "kiosks"), "localhost", 0, kiosks)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := carddata.LoadAuthority(filepath.Join(dir, "authority"))
	if err != nil {
		t.Fatal(err)
	}
	ap := testAPKey(t)
	cards := make([][]Card, len(ks))
	for i := range ks {
		if cards[i], err = DemoCards(auth, ap, i, 2, []certificate.Kind{certificate.Domestic, certificate.Overseas}); err != nil {
			t.Fatal(err)
		}
	}
	// The kill comes a third of the way in.
	killed := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		<-started
		time.Sleep(5 * time.Second)
		if err := cp.Kill(syscall.SIGKILL); err != nil {
			killed <- err
			return
		}
		killed <- cp.Restart()
	}()
	rep, err := RunFleet(ctx, FleetConfig{
		Addr: "127.0.0.1:" + port, Kiosks: ks, Cards: cards, Rate: 60, Duration: 15 * time.Second,
		DisconnectRate: 0.05, CancelRate: 0.05, Timeout: 30 * time.Second, Seed: uint64(time.Now().UnixNano()),
		KeepResults: true, OnConnected: func(int, float64) { close(started) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-killed; err != nil {
		t.Fatalf("kill and restart: %v", err)
	}
	t.Logf("offered %d (%d found no idle kiosk), completed %d (%d cancelled, %d replays), reconnects %d, errors %v, retried %v, p99 %s",
		rep.Offered, rep.NoKiosk, rep.Completed, rep.Cancelled, rep.Replays, rep.Reconnects, rep.Errors, rep.Retried, rep.Issue.Quantile(0.99))
	if rep.Mismatches != 0 || rep.ReplayMismatches != 0 {
		t.Fatalf("%d answers not bound to their request, %d replays with other certificates", rep.Mismatches, rep.ReplayMismatches)
	}
	if sent := rep.Offered - rep.NoKiosk; rep.Completed < sent*9/10 {
		t.Fatalf("only %d of %d requests sent completed", rep.Completed, sent)
	}
	if rep.Reconnects < kiosks {
		t.Errorf("%d reconnections; the kill should have made every kiosk reconnect", rep.Reconnects)
	}
	if rep.Retried["unavailable"] == 0 {
		t.Error("no request met the slowed lookups or the restart (unavailable): the faults did not bite")
	}

	// The audit log after the kill: every acknowledged request has its
	// events, each request's certificates were issued once, and the
	// certificates the kiosks accepted are those the log shows issued.
	tok, err := os.ReadFile(cfg.Path(cfg.OpsTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range ks {
		ids = append(ids, k.ID)
	}
	evs, err := FetchAudit(ctx, "http://"+cp.Ops, strings.TrimSpace(string(tok)), ids, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	byReq := map[string][]store.Event{}
	for _, e := range evs {
		byReq[e.RequestID] = append(byReq[e.RequestID], e)
	}
	for _, r := range rep.Results {
		issued := map[string]bool{}
		settled := 0
		for _, e := range byReq[r.RequestID] {
			switch {
			case e.Type == store.EventIssued:
				if issued[e.CertificateID] {
					t.Errorf("request %s: certificate %s issued twice", r.RequestID, e.CertificateID)
				}
				issued[e.CertificateID] = true
			case e.Type.Settles():
				settled++
			}
		}
		if r.Err != "" {
			continue
		}
		if len(issued) != len(r.CertificateIDs) {
			t.Errorf("request %s: %d certificates issued, the kiosk accepted %d", r.RequestID, len(issued), len(r.CertificateIDs))
		}
		for _, id := range r.CertificateIDs {
			if !issued[id] {
				t.Errorf("request %s: certificate %s accepted but not in the audit log after the kill", r.RequestID, id)
			}
		}
		if r.Acked && settled != 1 {
			t.Errorf("request %s: acknowledged, %d settlement events after the kill (want 1)", r.RequestID, settled)
		}
	}
}

// TestKillReplaysOrRefuses: the center is killed right after answering;
// restarted, it replays each answered request to the kiosk that asks again
// (the same certificate), settles it once, and refuses it afterwards.
func TestKillReplaysOrRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bin, err := BuildCenter(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetupNational(ctx, dir, 4, nil); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "center", admin.ConfigFile)
	cp, err := StartCenter(bin, cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cp.Kill(syscall.SIGTERM) }()
	ks, err := LoadKioskRange(filepath.Join(dir, "kiosks"), "localhost", 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := carddata.LoadAuthority(filepath.Join(dir, "authority"))
	if err != nil {
		t.Fatal(err)
	}
	ap := testAPKey(t)
	type answered struct {
		req  protocol.Issue
		card Card
		resp *protocol.CertificateResponse
	}
	var got []answered
	for i, k := range ks {
		cs, err := DemoCards(auth, ap, i, 1, []certificate.Kind{certificate.Domestic})
		if err != nil {
			t.Fatal(err)
		}
		c, err := dial(cp.Kiosk, k, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: cs[0].Municipality, Kind: cs[0].Kind, Copies: 1, Card: cs[0].Raw}
		if err := c.send(req); err != nil {
			t.Fatal(err)
		}
		resp, perr, err := c.answer(req.RequestID)
		if err != nil || perr != nil {
			t.Fatalf("issue: %v %v", perr, err)
		}
		c.close()
		got = append(got, answered{req, cs[0], resp})
	}
	if err := cp.Kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cp.Restart(); err != nil {
		t.Fatal(err)
	}
	for i, a := range got {
		c, err := dial(cp.Kiosk, ks[i], 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		if err := c.send(a.req); err != nil {
			t.Fatal(err)
		}
		again, perr, err := c.answer(a.req.RequestID)
		if err != nil || perr != nil {
			t.Fatalf("retry after the kill: %v %v", perr, err)
		}
		if err := checkBinding(a.req, a.card, again); err != nil {
			t.Fatal(err)
		}
		if err := sameCertificates(a.resp, again); err != nil {
			t.Fatalf("retry after the kill: %v", err)
		}
		if err := c.send(protocol.Outcome{RequestID: a.req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1}); err != nil {
			t.Fatal(err)
		}
		if perr, err := c.ack(a.req.RequestID); err != nil || perr != nil {
			t.Fatalf("outcome after the kill: %v %v", perr, err)
		}
		if err := c.send(a.req); err != nil {
			t.Fatal(err)
		}
		if _, perr, err := c.answer(a.req.RequestID); err != nil || perr == nil || perr.Code != protocol.CodeRequestIDReused {
			t.Fatalf("request repeated after its outcome: %v, %v", perr, err)
		}
	}
}

// testAPKey is one card AP key for a test's cards (RSA-2048 generation
// is slow under the race detector, so once).
func testAPKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
