package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

func selfHost(t testing.TB, opts SelfHostOptions) *SelfHosted {
	t.Helper()
	s, err := SelfHost(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close the center: %v", err)
		}
	})
	return s
}

// TestLoadWithDisconnects runs 20 kiosks × 5 requests against a
// self-hosted center, a third of them losing their connection mid-request
// and repeating it on a new one. Every request must complete, every answer
// must be bound to its own request, and the audit log must show exactly one
// issuance per request: no double issue.
func TestLoadWithDisconnects(t *testing.T) {
	const kiosks, requests = 20, 5
	s := selfHost(t, SelfHostOptions{Kiosks: kiosks, CardsPerKiosk: 2})
	start := time.Now().Add(-time.Second)
	rep, err := Run(context.Background(), Config{
		Addr: s.Addr(), Kiosks: s.Kiosks, Cards: s.Cards,
		Requests: requests, DisconnectRate: 0.33, Seed: 20240401, Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	t.Log("\n" + text.String())

	if len(rep.Errors) != 0 {
		for _, r := range rep.Results {
			if r.Err != "" {
				t.Errorf("kiosk %s request %s: %s: %s", r.KioskID, r.RequestID, r.Err, r.Detail)
			}
		}
		t.Fatalf("errors: %v", rep.Errors)
	}
	if rep.Requests != kiosks*requests || rep.Completed != kiosks*requests {
		t.Fatalf("%d requests, %d completed; want %d", rep.Requests, rep.Completed, kiosks*requests)
	}
	// The seed injects both kinds of disconnect; a fault after the answer
	// must have been answered by a replay.
	if rep.Faults[BeforeResponse] == 0 || rep.Faults[AfterResponse] == 0 {
		t.Fatalf("faults %v: the run did not exercise both disconnects", rep.Faults)
	}
	ids := map[string]bool{}
	certs := map[string]bool{}
	for _, r := range rep.Results {
		if ids[r.RequestID] {
			t.Fatalf("request ID %s used twice", r.RequestID)
		}
		ids[r.RequestID] = true
		if !r.Acked || len(r.CertificateIDs) != 1 {
			t.Fatalf("request %s: acked=%v, %d certificates", r.RequestID, r.Acked, len(r.CertificateIDs))
		}
		if r.Fault == AfterResponse && !r.Replayed {
			t.Fatalf("request %s: repeated after its answer but not replayed", r.RequestID)
		}
		for _, c := range r.CertificateIDs {
			if certs[c] {
				t.Fatalf("certificate %s received by two requests", c)
			}
			certs[c] = true
		}
	}

	evs, err := s.AuditEvents(context.Background(), start)
	if err != nil {
		t.Fatal(err)
	}
	check := CheckAudit(evs, rep)
	t.Log(check)
	if !check.OK() {
		t.Fatal(check.Problems)
	}
	// No double issue: one issued event per distinct request ID.
	if check.Issued != len(ids) || check.Requests != len(ids) || check.Printed != len(ids) {
		t.Fatalf("%d issued events over %d requests, %d printed; want %d each", check.Issued, check.Requests, check.Printed, len(ids))
	}
	// Every request is settled in the register, its replay dropped.
	for id := range ids {
		r, err := s.Center.Store.Request(context.Background(), id)
		if err != nil || r.State != store.RequestSettled || len(r.Replay) != 0 {
			t.Fatalf("request %s after its outcome: %+v, %v", id, r, err)
		}
	}
}

// TestLoadOverseas: the overseas kind through the same loop (two
// certificates, a VDS-NC), with disconnects.
func TestLoadOverseas(t *testing.T) {
	s := selfHost(t, SelfHostOptions{Kiosks: 3, CardsPerKiosk: 3, Kinds: []certificate.Kind{certificate.Overseas, certificate.Domestic}})
	start := time.Now().Add(-time.Second)
	rep, err := Run(context.Background(), Config{Addr: s.Addr(), Kiosks: s.Kiosks, Cards: s.Cards, Requests: 4, DisconnectRate: 0.5, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) != 0 || rep.Completed != 12 {
		t.Fatalf("errors %v, %d completed", rep.Errors, rep.Completed)
	}
	overseas := 0
	for _, r := range rep.Results {
		if r.Kind == certificate.Overseas {
			overseas++
			if len(r.CertificateIDs) != 2 {
				t.Fatalf("overseas request with %d certificates", len(r.CertificateIDs))
			}
		}
	}
	if overseas == 0 {
		t.Fatal("no overseas requests in the run")
	}
	evs, err := s.AuditEvents(context.Background(), start)
	if err != nil {
		t.Fatal(err)
	}
	check := CheckAudit(evs, rep)
	if !check.OK() || check.Issued != check.Certificates || check.Requests != 12 {
		t.Fatalf("%v", check)
	}
}

// TestDurationRun: with no request count, the run stops after Duration.
func TestDurationRun(t *testing.T) {
	s := selfHost(t, SelfHostOptions{Kiosks: 2, CardsPerKiosk: 1})
	rep, err := Run(context.Background(), Config{Addr: s.Addr(), Kiosks: s.Kiosks, Cards: s.Cards, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed == 0 || rep.Elapsed > 10*time.Second {
		t.Fatalf("%d completed in %s", rep.Completed, rep.Elapsed)
	}
	// Requests cut short by the deadline are connection errors, nothing else.
	for code := range rep.Errors {
		if code != ErrCodeConnection {
			t.Fatalf("errors %v", rep.Errors)
		}
	}
}

// TestRefusalsReported: requests the center refuses are reported by code.
func TestRefusalsReported(t *testing.T) {
	s := selfHost(t, SelfHostOptions{Kiosks: 1, CardsPerKiosk: 1})
	tampered := s.Cards[0][0]
	tampered.Raw = cloneRaw(tampered.Raw)
	tampered.Raw.FourItems[len(tampered.Raw.FourItems)-3] ^= 1
	wrongMuni := s.Cards[0][0]
	wrongMuni.Municipality = "112453" // not participating
	rep, err := Run(context.Background(), Config{Addr: s.Addr(), Kiosks: s.Kiosks, Cards: [][]Card{{tampered, wrongMuni}}, Requests: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors[string(protocol.CodeCardInvalid)] != 1 || rep.Errors[string(protocol.CodeNotParticipating)] != 1 || rep.Completed != 0 {
		t.Fatalf("errors %v, %d completed", rep.Errors, rep.Completed)
	}
}

func cloneRaw(r carddata.Raw) carddata.Raw {
	return carddata.Raw{
		MyNumber: bytes.Clone(r.MyNumber), FourItems: bytes.Clone(r.FourItems),
		Signature: bytes.Clone(r.Signature), Certificate: bytes.Clone(r.Certificate),
	}
}

func TestCheckBinding(t *testing.T) {
	s := selfHost(t, SelfHostOptions{Kiosks: 1, CardsPerKiosk: 2})
	c, err := dial(s.Addr(), s.Kiosks[0], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	card := s.Cards[0][0]
	req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: card.Municipality, Kind: card.Kind, Copies: 1, Card: card.Raw}
	if err := c.send(req); err != nil {
		t.Fatal(err)
	}
	resp, perr, err := c.answer(req.RequestID)
	if err != nil || perr != nil {
		t.Fatal(err, perr)
	}
	if err := checkBinding(req, card, resp); err != nil {
		t.Fatalf("a correct answer failed the binding check: %v", err)
	}
	other := s.Cards[0][1]
	tests := []struct {
		name string
		edit func(req *protocol.Issue, card *Card, resp *protocol.CertificateResponse)
	}{
		{"other request ID", func(_ *protocol.Issue, _ *Card, r *protocol.CertificateResponse) {
			r.RequestID = protocol.NewRequestID()
		}},
		{"other card digest", func(_ *protocol.Issue, _ *Card, r *protocol.CertificateResponse) {
			r.CardDigest = protocol.CardDigest(other.Raw)
		}},
		{"card read differs", func(q *protocol.Issue, _ *Card, _ *protocol.CertificateResponse) { q.Card = other.Raw }},
		{"other holder", func(_ *protocol.Issue, c *Card, _ *protocol.CertificateResponse) { c.HolderName = "試験　花代" }},
		{"other birth date", func(_ *protocol.Issue, c *Card, _ *protocol.CertificateResponse) { c.BirthDate = "1999-01-01" }},
		{"other copies", func(q *protocol.Issue, _ *Card, _ *protocol.CertificateResponse) { q.Copies = 2 }},
		{"other municipality", func(q *protocol.Issue, _ *Card, _ *protocol.CertificateResponse) { q.Municipality = "011002" }},
		{"overseas asked", func(q *protocol.Issue, _ *Card, _ *protocol.CertificateResponse) { q.Kind = certificate.Overseas }},
		{"certificate invalid", func(_ *protocol.Issue, _ *Card, r *protocol.CertificateResponse) { r.Certificates[0].SHC = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, cd, r := req, card, *resp
			r.Certificates = append([]certificate.Certificate(nil), resp.Certificates...)
			tt.edit(&q, &cd, &r)
			if err := checkBinding(q, cd, &r); err == nil {
				t.Fatal("binding check passed")
			}
		})
	}
}

func TestCheckAudit(t *testing.T) {
	at := time.Date(2024, 4, 1, 10, 0, 0, 0, time.UTC)
	ev := func(typ store.EventType, kiosk, req, cert string) store.Event {
		return store.Event{Time: at, Type: typ, KioskID: kiosk, RequestID: req, CertificateID: cert}
	}
	rep := &Report{Results: []Result{
		{KioskID: "K1", RequestID: "r1", CertificateIDs: []string{"C1"}, Acked: true},
		{KioskID: "K1", RequestID: "r2", CertificateIDs: []string{"C2", "C3"}, Acked: true},
		{KioskID: "K2", RequestID: "r3", Err: ErrCodeConnection},
	}}
	good := []store.Event{
		ev(store.EventRequested, "K1", "r1", ""), ev(store.EventIssued, "K1", "r1", "C1"), ev(store.EventPrinted, "K1", "r1", "C1"),
		ev(store.EventIssued, "K1", "r2", "C3"), ev(store.EventIssued, "K1", "r2", "C2"), ev(store.EventPrinted, "K1", "r2", "C3"),
		ev(store.EventRequested, "K2", "r3", ""),
		ev(store.EventIssued, "K9", "other", "C9"), // another kiosk's business
	}
	if a := CheckAudit(good, rep); !a.OK() || a.Issued != 3 || a.Requests != 2 || a.Certificates != 3 || a.Printed != 2 {
		t.Fatalf("consistent log: %v", a)
	}
	tests := []struct {
		name   string
		events func() []store.Event
		want   string
	}{
		{"double issue", func() []store.Event {
			return append(append([]store.Event(nil), good...), ev(store.EventIssued, "K1", "r1", "C7"))
		}, "r1: 2 issued events"},
		{"issued under another request", func() []store.Event {
			e := append([]store.Event(nil), good...)
			e[1].RequestID = "r3"
			return e
		}, "r3: 1 certificates issued that no kiosk accepted"},
		{"certificate ID differs", func() []store.Event {
			e := append([]store.Event(nil), good...)
			e[1].CertificateID = "C8"
			return e
		}, "r1: issued [C8], received [C1]"},
		{"certificate ID repeated", func() []store.Event {
			e := append([]store.Event(nil), good...)
			e[4].CertificateID = "C1"
			return e
		}, "certificate ID C1 issued for requests r1 and r2"},
		{"issued for a request that failed", func() []store.Event {
			return append(append([]store.Event(nil), good...), ev(store.EventIssued, "K2", "r3", "C4"))
		}, "r3: 1 certificates issued"},
		{"printed missing", func() []store.Event {
			e := append([]store.Event(nil), good...)
			return append(e[:2], e[3:]...)
		}, "r1: acknowledged, 0 printed events"},
		{"printed twice", func() []store.Event {
			return append(append([]store.Event(nil), good...), ev(store.EventPrinted, "K1", "r2", "C3"))
		}, "r2: acknowledged, 2 printed events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := CheckAudit(tt.events(), rep)
			if a.OK() || !strings.Contains(fmt.Sprint(a.Problems), tt.want) {
				t.Fatalf("problems %q, want one containing %q", a.Problems, tt.want)
			}
		})
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(ds)
	want := Percentiles{N: 100, Mean: 50500 * time.Microsecond, P50: 50 * time.Millisecond, P95: 95 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if p != want {
		t.Fatalf("percentiles %+v, want %+v", p, want)
	}
	if p := percentiles([]time.Duration{7}); p.P50 != 7 || p.P99 != 7 || p.Max != 7 {
		t.Fatalf("one value: %+v", p)
	}
	if p := percentiles(nil); p.N != 0 {
		t.Fatalf("no values: %+v", p)
	}
	if ds[0] != 100*time.Millisecond {
		t.Fatal("percentiles sorted its input")
	}
}

func TestRunRejectsConfig(t *testing.T) {
	k := []Kiosk{{ID: "K1"}}
	for _, cfg := range []Config{
		{},
		{Addr: "127.0.0.1:1", Kiosks: k, Requests: 1},
		{Addr: "127.0.0.1:1", Kiosks: k, Cards: [][]Card{{}}, Requests: 1},
		{Addr: "127.0.0.1:1", Kiosks: k, Cards: [][]Card{{{}}}},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run accepted %+v", cfg)
		}
	}
}
