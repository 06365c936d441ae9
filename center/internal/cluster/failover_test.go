package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/loadtest"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv/demoledger"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgtest"
	"github.com/kioskcert/kioskcert/pkg/protocol"
	"github.com/kioskcert/kioskcert/pkg/shc"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestFailover runs two issuance-center processes on one PostgreSQL behind
// haproxy and breaks things under load: a kiosk suspended through one
// instance loses its connection to the other; one instance is killed with
// SIGKILL; PostgreSQL is stopped and started again. Through all of it no
// request is issued twice or to the wrong person, every certificate a kiosk
// accepted and every outcome the center acknowledged is in the audit log,
// and every kiosk ends on a working instance.
func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// A server of its own: this test restarts it.
	srv, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	url, err := srv.CreateDatabase(ctx, "center")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, err := BuildCenter(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	const kiosks = 12
	c, err := Setup(ctx, Options{Dir: dir, Bin: bin, Store: url, Instances: 2, Kiosks: kiosks,
		// A claim left by a killed instance is taken over after 3 s.
		IssueTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range c.Instances {
		if err := in.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(in.Kill)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The instances' logs (no personal data by design) say why.
		for _, in := range c.Instances {
			b, _ := os.ReadFile(filepath.Join(in.Dir, "center.log"))
			var lines []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
					lines = append(lines, l)
				}
			}
			t.Logf("last warnings and errors of %s:\n%s", in.ID, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
		b, _ := os.ReadFile(filepath.Join(dir, "haproxy.log"))
		t.Logf("haproxy's log:\n%s", b)
	})
	lb, err := StartHAProxy(ctx, dir, []string{c.Instances[0].KioskAddr, c.Instances[1].KioskAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Stop()
	audit, err := pgstore.Open(ctx, url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()

	t.Run("InstancesNamed", func(t *testing.T) {
		for _, in := range c.Instances {
			v, err := c.Live(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if v.Instance != in.ID {
				t.Errorf("/ops/kiosks of %s names instance %q", in.ID, v.Instance)
			}
			metrics := get(t, ctx, "http://"+in.OpsAddr+"/metrics")
			if want := fmt.Sprintf(`kioskcert_center_instance_info{center_instance=%q,store="postgres"} 1`, in.ID); !strings.Contains(metrics, want) {
				t.Errorf("metrics of %s lack %s", in.ID, want)
			}
		}
	})

	t.Run("SuspensionReachesEveryInstance", func(t *testing.T) {
		k := c.Kiosks[0]
		d := websocket.Dialer{TLSClientConfig: k.TLS.Clone(), HandshakeTimeout: 5 * time.Second}
		ws, _, err := d.DialContext(ctx, "wss://"+c.Instances[0].KioskAddr+server.Path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if _, _, err := ws.ReadMessage(); err != nil { // the hello
			t.Fatal(err)
		}
		// Suspended through the other instance's operations API.
		start := time.Now()
		actor := admin.Actor{Operator: "admin"}
		if _, err := c.Ops(c.Instances[1], "admin").SetKioskStatus(ctx, actor, k.ID, store.KioskSuspended, "investigation"); err != nil {
			t.Fatal(err)
		}
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err = ws.ReadMessage(); err != nil {
				break
			}
		}
		elapsed := time.Since(start)
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the kiosk suspended on %s was still connected to %s after 5 s", c.Instances[1].ID, c.Instances[0].ID)
		}
		if elapsed > 2*time.Second {
			t.Errorf("the connection closed %v after the suspension, want within 2 s", elapsed)
		}
		t.Logf("suspended through %s; connection to %s closed after %v", c.Instances[1].ID, c.Instances[0].ID, elapsed)
		if _, err := c.Ops(c.Instances[0], "admin").SetKioskStatus(ctx, actor, k.ID, store.KioskActive, ""); err != nil {
			t.Fatal(err)
		}
	})

	// The records are on PostgreSQL too: a ledger imported through one
	// instance is what another looks up, at once (no copy, no restart).
	t.Run("RecordsSharedAcrossInstances", func(t *testing.T) {
		k, card := c.Kiosks[1], c.Cards[1][0]
		d, err := demo.Load()
		if err != nil {
			t.Fatal(err)
		}
		all, err := demoledger.FromDemo(d, card.Municipality)
		if err != nil {
			t.Fatal(err)
		}
		without := slices.DeleteFunc(slices.Clone(all), func(e records.Entry) bool {
			return e.Record.Name == card.HolderName && e.Record.BirthDate == card.BirthDate
		})
		if len(without) != len(all)-1 {
			t.Fatalf("the card's holder is %d entries of the ledger of %s, want 1", len(all)-len(without), card.Municipality)
		}
		importThrough := func(in *Instance, entries []records.Entry) {
			t.Helper()
			var csv bytes.Buffer
			if err := ledgercsv.Write(&csv, entries); err != nil {
				t.Fatal(err)
			}
			res, err := c.Ops(in, "admin").ImportRecords(ctx, admin.Actor{Operator: "admin"}, card.Municipality, admin.ImportOptions{Mode: records.ModeFull}, &csv)
			if err != nil || res.Persons != len(entries) {
				t.Fatalf("import through %s: %+v, %v", in.ID, res, err)
			}
		}
		// Imported without the holder through instance 0: instance 1 finds
		// no record.
		importThrough(c.Instances[0], without)
		req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: card.Municipality, Kind: card.Kind, Copies: 1, Card: card.Raw}
		_, err = send(ctx, c.Instances[1].KioskAddr, k, req)
		var perr *protocol.Error
		if !errors.As(err, &perr) || perr.Code != protocol.CodeNoRecord {
			t.Fatalf("issuance on %s after the holder was removed through %s: %v, want %s", c.Instances[1].ID, c.Instances[0].ID, err, protocol.CodeNoRecord)
		}
		// Imported back through instance 1: instance 0 issues.
		importThrough(c.Instances[1], all)
		issueDirect(t, ctx, c.Instances[0].KioskAddr, k, card)
		for _, in := range c.Instances {
			counts, err := c.Ops(in, "admin").RecordCounts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(counts, func(rc records.RegionCount) bool { return rc.Municipality == card.Municipality })
			if i < 0 || counts[i].Records != len(all) {
				t.Errorf("%s counts %+v for %s, want %d records", in.ID, counts, card.Municipality, len(all))
			}
		}
	})

	// run drives the kiosks through haproxy (requests each, or for a
	// duration when requests is 0) while during breaks something.
	t.Run("OneRequestOneCertificateAcrossInstances", func(t *testing.T) {
		k, card := c.Kiosks[2], c.Cards[2][0]
		// The same request sent to both instances at once: one issues,
		// the other answers with the same certificate.
		req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: card.Municipality, Kind: card.Kind, Copies: 1, Card: card.Raw}
		type answer struct {
			resp *protocol.CertificateResponse
			err  error
		}
		answers := make(chan answer, 2)
		for _, in := range c.Instances {
			go func() {
				resp, err := send(ctx, in.KioskAddr, k, req)
				answers <- answer{resp, err}
			}()
		}
		var got []*protocol.CertificateResponse
		for range 2 {
			a := <-answers
			if a.err != nil {
				t.Fatal(a.err)
			}
			got = append(got, a.resp)
		}
		if got[0].Certificates[0].ID != got[1].Certificates[0].ID || got[0].Certificates[0].SHC != got[1].Certificates[0].SHC {
			t.Errorf("the two instances answered one request with certificates %s and %s", got[0].Certificates[0].ID, got[1].Certificates[0].ID)
		}
		if got[0].Replayed == got[1].Replayed {
			t.Errorf("replayed flags %v and %v, want one issue and one replay", got[0].Replayed, got[1].Replayed)
		}
		// A kiosk that lost its instance repeats the request elsewhere:
		// the replay, whichever instance it reaches.
		for _, in := range c.Instances {
			again, err := send(ctx, in.KioskAddr, k, req)
			if err != nil {
				t.Fatal(err)
			}
			if !again.Replayed || again.Certificates[0].ID != got[0].Certificates[0].ID {
				t.Errorf("repeat through %s: replayed %v, certificate %s; want the replay of %s", in.ID, again.Replayed, again.Certificates[0].ID, got[0].Certificates[0].ID)
			}
		}
		evs, err := audit.Events(ctx, store.EventQuery{RequestID: req.RequestID})
		if err != nil {
			t.Fatal(err)
		}
		issued := 0
		for _, e := range evs {
			if e.Type == store.EventIssued {
				issued++
			}
		}
		if issued != 1 {
			t.Errorf("%d issued events for one request sent to two instances, want 1", issued)
		}
	})

	t.Run("KeyRotationReachesEveryInstance", func(t *testing.T) {
		k, card := c.Kiosks[1], c.Cards[1][0]
		before := issueDirect(t, ctx, c.Instances[0].KioskAddr, k, card)
		kid, err := c.Ops(c.Instances[1], "admin").RotateSHCKey(ctx, admin.Actor{Operator: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		if kid == before {
			t.Fatalf("rotation kept key %s", kid)
		}
		start := time.Now()
		for {
			got := issueDirect(t, ctx, c.Instances[0].KioskAddr, k, card)
			if got == kid {
				t.Logf("key rotated through %s signs on %s after %v", c.Instances[1].ID, c.Instances[0].ID, time.Since(start))
				break
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("%s still signs with %s 3 s after the rotation to %s on %s", c.Instances[0].ID, got, kid, c.Instances[1].ID)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	run := func(t *testing.T, requests int, duration time.Duration, retries int, during func()) (*loadtest.Report, time.Time) {
		t.Helper()
		since := time.Now()
		done := make(chan *loadtest.Report, 1)
		errc := make(chan error, 1)
		go func() {
			rep, err := loadtest.Run(ctx, loadtest.Config{
				Addr: lb.Addr, Kiosks: c.Kiosks, Cards: c.Cards, Requests: requests, Duration: duration,
				Retries: retries, Reconnects: 25, Timeout: 20 * time.Second, Seed: 7,
			})
			errc <- err
			done <- rep
		}()
		during()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		return <-done, since
	}
	// check is what holds whatever broke: answers bound to their requests,
	// the audit log agreeing with what kiosks received and acknowledged
	// (no double issue, no lost acknowledged event), refusals only with
	// the codes allowed, every kiosk's last request completed.
	check := func(t *testing.T, rep *loadtest.Report, since time.Time, allowed ...string) {
		t.Helper()
		last := map[string]loadtest.Result{}
		for _, r := range rep.Results {
			last[r.KioskID] = r
			if r.Err != "" && !slices.Contains(allowed, r.Err) {
				t.Errorf("kiosk %s request %s: %s (%s)", r.KioskID, r.RequestID, r.Err, r.Detail)
			}
		}
		for id, r := range last {
			if !r.Acked {
				t.Errorf("kiosk %s: last request not completed (%s %s)", id, r.Err, r.Detail)
			}
		}
		var evs []store.Event
		for _, k := range c.Kiosks {
			e, err := audit.Events(ctx, store.EventQuery{KioskID: k.ID, From: since, Limit: store.MaxEventLimit})
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, e...)
		}
		if a := loadtest.CheckAudit(evs, rep); !a.OK() {
			t.Error(a)
		} else {
			t.Log(a)
		}
		var b strings.Builder
		rep.WriteText(&b)
		t.Log(b.String())
	}

	t.Run("InstanceKilled", func(t *testing.T) {
		victim := c.Instances[0]
		var killedAt time.Time
		var onVictim []string
		rep, since := run(t, 10, 0, 12, func() {
			// Kill the instance once kiosks are being served by it.
			deadline := time.Now().Add(30 * time.Second)
			for len(onVictim) == 0 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
				onVictim, _ = c.Connected(ctx, victim)
			}
			time.Sleep(300 * time.Millisecond)
			killedAt = time.Now()
			victim.Kill()
		})
		if len(onVictim) == 0 {
			t.Fatal("no kiosk connected to the instance before it was killed")
		}
		if !killedAt.Before(since.Add(rep.Elapsed)) {
			// The run ended before the kill: nothing was tested.
			t.Fatalf("the load ended before %s was killed", victim.ID)
		}
		t.Logf("%s killed with %d kiosks connected to it", victim.ID, len(onVictim))
		// Each kiosk's last request completed after the kill, so through
		// haproxy on the survivor.
		check(t, rep, since)
	})

	t.Run("DatabaseRestarted", func(t *testing.T) {
		victim := c.Instances[0]
		if err := victim.Start(ctx); err != nil {
			t.Fatal(err)
		}
		pids := []int{c.Instances[0].PID(), c.Instances[1].PID()}
		time.Sleep(time.Second) // haproxy's health check sees it back
		var down time.Duration
		rep, since := run(t, 0, 10*time.Second, 2, func() {
			time.Sleep(1500 * time.Millisecond)
			start := time.Now()
			if err := srv.StopServer(); err != nil {
				t.Error(err)
			}
			time.Sleep(3 * time.Second)
			if err := srv.Restart(); err != nil {
				t.Error(err)
			}
			down = time.Since(start)
		})
		t.Logf("PostgreSQL was down for %v", down)
		// While it was down requests were refused as unavailable (retried
		// by the kiosks, or reported), never issued without their audit
		// events.
		refused := 0
		for _, r := range rep.Results {
			if r.Err == string(protocol.CodeUnavailable) || slices.Contains(r.Retries, string(protocol.CodeUnavailable)) {
				refused++
			}
		}
		if refused == 0 {
			t.Error("no request was refused as unavailable while PostgreSQL was down")
		}
		check(t, rep, since, string(protocol.CodeUnavailable))
		for i, in := range c.Instances {
			if in.PID() != pids[i] {
				t.Errorf("%s was restarted (pid %d, was %d); it must recover by itself", in.ID, in.PID(), pids[i])
			}
		}
	})
}

// issueDirect is one kiosk request straight to an instance (no load
// balancer); it returns the key ID of the SMART Health Card it got.
func issueDirect(t *testing.T, ctx context.Context, addr string, k loadtest.Kiosk, card loadtest.Card) string {
	t.Helper()
	req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: card.Municipality, Kind: card.Kind, Copies: 1, Card: card.Raw}
	resp, err := send(ctx, addr, k, req)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := shc.DecodeQR(resp.Certificates[0].SHC)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := shc.ParseJWS(jws)
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Kid
}

// send sends one Issue straight to an instance as kiosk k and returns the
// certificate response.
func send(ctx context.Context, addr string, k loadtest.Kiosk, req protocol.Issue) (*protocol.CertificateResponse, error) {
	d := websocket.Dialer{TLSClientConfig: k.TLS.Clone(), HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.DialContext(ctx, "wss://"+addr+server.Path, nil)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	b, err := protocol.Encode(req)
	if err != nil {
		return nil, err
	}
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return nil, err
	}
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return nil, err
		}
		m, err := protocol.Decode(b, protocol.MaxCenterFrame)
		if err != nil {
			return nil, err
		}
		switch m := m.(type) {
		case protocol.CertificateResponse:
			if m.RequestID != req.RequestID || m.CardDigest != protocol.CardDigest(req.Card) {
				return nil, fmt.Errorf("answer for request %s, sent %s", m.RequestID, req.RequestID)
			}
			return &m, nil
		case *protocol.Error:
			if m.RequestID == req.RequestID {
				return nil, m
			}
		}
	}
}

func get(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
