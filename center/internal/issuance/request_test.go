package issuance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

func eventTypes(evs []store.Event) string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Type))
	}
	return fmt.Sprint(out)
}

// TestRetryIsReplayed: a repeated request gets the same certificates back
// from the register, signed once; the same ID with other data, or from
// another kiosk, is refused; after the outcome the ID is spent.
func TestRetryIsReplayed(t *testing.T) {
	f := newFixture(t)
	card := f.card(t, "hanako", nil)
	req := request(protocol.NewRequestID(), asahikawa, certificate.Overseas, card)
	first, perr := f.issue(context.Background(), req)
	if perr != nil {
		t.Fatal(perr)
	}
	again, perr := f.issue(context.Background(), req)
	if perr != nil {
		t.Fatal(perr)
	}
	if !again.Replayed || again.Certificates[0].ID != first.Certificates[0].ID || again.Certificates[1].SHC != first.Certificates[1].SHC {
		t.Fatal("the retry did not get the same certificates")
	}
	if n := f.shc.count(); n != 2 {
		t.Errorf("%d SMART Health Cards signed for one overseas request, want 2", n)
	}
	other := req
	other.Card = f.card(t, "taro", nil)
	if _, perr := f.issue(context.Background(), other); perr == nil || perr.Code != protocol.CodeRequestIDReused {
		t.Fatalf("same ID with another card: %v", perr)
	}
	otherKiosk := req
	otherKiosk.KioskID = "K-OTHER"
	if _, perr := f.issue(context.Background(), otherKiosk); perr == nil || perr.Code != protocol.CodeRequestIDReused {
		t.Fatalf("same ID from another kiosk: %v", perr)
	}
	if err := f.svc.Settle(context.Background(), goodKiosk, "S-K-GOOD", protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1}); err != nil {
		t.Fatal(err)
	}
	if _, perr := f.issue(context.Background(), req); perr == nil || perr.Code != protocol.CodeRequestIDReused {
		t.Fatalf("retry after the outcome: %v", perr)
	}
	if got := eventTypes(f.audit.all(t)); got != "[requested issued issued printed]" {
		t.Errorf("events %s", got)
	}
}

// TestReplaySurvivesRestart: a center restarted between the answer and the
// retry (a new Service on the same store) replays from the register.
func TestReplaySurvivesRestart(t *testing.T) {
	f := newFixture(t)
	req := request(protocol.NewRequestID(), asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
	first, perr := f.issue(context.Background(), req)
	if perr != nil {
		t.Fatal(perr)
	}
	restarted, err := New(f.svc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := restarted.Issue(context.Background(), req)
	if err != nil || !again.Replayed || again.Certificates[0].ID != first.Certificates[0].ID {
		t.Fatalf("retry after a restart: %+v, %v", again, err)
	}
}

// TestRefusalIsRepeated: a refused request retried gets the same refusal
// and runs no check again.
func TestRefusalIsRepeated(t *testing.T) {
	f := newFixture(t)
	req := request(protocol.NewRequestID(), sapporo, certificate.Domestic, f.card(t, "hanako", nil))
	for range 2 {
		if _, perr := f.issue(context.Background(), req); perr == nil || perr.Code != protocol.CodeNoRecord {
			t.Fatalf("got %v, want no_record", perr)
		}
	}
	if n := f.records.lookupCount(); n != 1 {
		t.Errorf("%d record lookups, want 1", n)
	}
}

// TestConcurrentRetries: many copies of one request at once (a kiosk
// retrying on several connections) sign once; every caller gets the same
// certificate.
func TestConcurrentRetries(t *testing.T) {
	f := newFixture(t)
	req := request(protocol.NewRequestID(), asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
	const n = 8
	var wg sync.WaitGroup
	ids := make(chan string, n)
	replays := make(chan bool, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, perr := f.issue(ctx, req)
			if perr != nil {
				t.Error(perr)
				return
			}
			ids <- resp.Certificates[0].ID
			replays <- resp.Replayed
		}()
	}
	wg.Wait()
	close(ids)
	close(replays)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	fresh := 0
	for r := range replays {
		if !r {
			fresh++
		}
	}
	if len(seen) != 1 || fresh != 1 || f.shc.count() != 1 {
		t.Fatalf("%d certificate IDs, %d fresh answers, %d signatures; want 1, 1, 1", len(seen), fresh, f.shc.count())
	}
}

// TestClaimHeldElsewhere: while another attempt (another instance) holds a
// fresh claim, a retry waits and, at its deadline, is told to retry; once
// the claim is stale (its process died), the retry takes it over.
func TestClaimHeldElsewhere(t *testing.T) {
	f := newFixture(t)
	req := request(protocol.NewRequestID(), asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
	held := store.Request{ID: req.RequestID, KioskID: goodKiosk, Fingerprint: Fingerprint(req.Issue),
		Municipality: asahikawa, Kind: certificate.Domestic, Copies: 1, ClaimedAt: testNow.Add(-time.Second)}
	if _, err := f.audit.ClaimRequest(context.Background(), held, time.Time{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, perr := f.issue(ctx, req); perr == nil || perr.Code != protocol.CodeUnavailable || !perr.Retryable {
		t.Fatalf("retry while the claim is held: %v, want unavailable", perr)
	}
	if f.shc.count() != 0 {
		t.Fatal("signed while another attempt held the claim")
	}

	f2 := newFixture(t)
	stale := held
	stale.ClaimedAt = testNow.Add(-2 * DefaultClaimLease)
	if _, err := f2.audit.ClaimRequest(context.Background(), stale, time.Time{}); err != nil {
		t.Fatal(err)
	}
	resp, perr := f2.issue(context.Background(), req)
	if perr != nil || resp.Replayed {
		t.Fatalf("retry of a stale claim: %+v, %v; want a fresh issuance", resp, perr)
	}
	r, err := f2.audit.Request(context.Background(), req.RequestID)
	if err != nil || r.Attempt != 2 || r.State != store.RequestIssued {
		t.Fatalf("register %+v, %v; want issued by attempt 2", r, err)
	}
}

func TestSettle(t *testing.T) {
	issued := func(t *testing.T, f *fixture, kind certificate.Kind, copies int) string {
		req := request(protocol.NewRequestID(), asahikawa, kind, f.card(t, "hanako", nil))
		req.Copies = copies
		if _, perr := f.issue(context.Background(), req); perr != nil {
			t.Fatal(perr)
		}
		return req.RequestID
	}
	tests := []struct {
		name      string
		outcome   protocol.Outcome
		kind      certificate.Kind
		wantEvent store.EventType
		wantCode  protocol.Code
	}{
		{"printed", protocol.Outcome{Outcome: protocol.OutcomePrinted, Copies: 2}, certificate.Domestic, store.EventPrinted, ""},
		{"printed overseas", protocol.Outcome{Outcome: protocol.OutcomePrinted, Copies: 2}, certificate.Overseas, store.EventPrinted, ""},
		{"paper out", protocol.Outcome{Outcome: protocol.OutcomeFailed, Reason: protocol.CodePrinterPaperOut}, certificate.Domestic, store.EventPrintFailed, ""},
		{"refused by the kiosk", protocol.Outcome{Outcome: protocol.OutcomeRefused, Reason: protocol.CodeHolderMismatch}, certificate.Domestic, store.EventPrintRefused, ""},
		{"cancelled", protocol.Outcome{Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled}, certificate.Domestic, store.EventCancelled, ""},
		{"printed copies differ", protocol.Outcome{Outcome: protocol.OutcomePrinted, Copies: 1}, certificate.Domestic, "", protocol.CodeBadMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			id := issued(t, f, tt.kind, 2)
			o := tt.outcome
			o.RequestID = id
			err := f.svc.Settle(context.Background(), goodKiosk, "S-K-GOOD", o)
			evs := f.audit.all(t)
			last := evs[len(evs)-1]
			if tt.wantCode != "" {
				if code := refusalCode(err); code != tt.wantCode {
					t.Fatalf("Settle: %v, want %s", err, tt.wantCode)
				}
				if last.Type.Settles() {
					t.Fatal("a refused outcome was recorded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if last.Type != tt.wantEvent || last.RequestID != id || last.Municipality != asahikawa || last.CertificateID == "" || last.Kind != tt.kind {
				t.Fatalf("settlement event %+v", last)
			}
			if o.Reason != "" && last.Result != string(o.Reason) {
				t.Errorf("result %q, want the reason", last.Result)
			}
			if tt.wantEvent == store.EventPrinted && last.Copies != 2 {
				t.Errorf("printed copies %d", last.Copies)
			}
			// A repeated report is acknowledged without a second event.
			if err := f.svc.Settle(context.Background(), goodKiosk, "S-K-GOOD", o); err != nil {
				t.Fatalf("repeated report: %v", err)
			}
			if n := len(f.audit.all(t)); n != len(evs) {
				t.Fatalf("a repeated report wrote %d more events", n-len(evs))
			}
		})
	}
	t.Run("unknown and foreign requests", func(t *testing.T) {
		f := newFixture(t)
		id := issued(t, f, certificate.Domestic, 1)
		for name, call := range map[string]func() error{
			"unknown ID": func() error {
				return f.svc.Settle(context.Background(), goodKiosk, "S", protocol.Outcome{RequestID: protocol.NewRequestID(), Outcome: protocol.OutcomeCancelled})
			},
			"another kiosk": func() error {
				f.kiosks.kiosks["K-OTHER"] = store.Kiosk{ID: "K-OTHER", Status: store.KioskActive}
				return f.svc.Settle(context.Background(), "K-OTHER", "S", protocol.Outcome{RequestID: id, Outcome: protocol.OutcomeCancelled})
			},
		} {
			if code := refusalCode(call()); code != protocol.CodeUnknownRequest {
				t.Errorf("%s: %s, want unknown_request", name, code)
			}
		}
	})
	t.Run("suspended kiosk", func(t *testing.T) {
		f := newFixture(t)
		id := issued(t, f, certificate.Domestic, 1)
		k := f.kiosks.kiosks[goodKiosk]
		k.Status = store.KioskSuspended
		f.kiosks.kiosks[goodKiosk] = k
		err := f.svc.Settle(context.Background(), goodKiosk, "S", protocol.Outcome{RequestID: id, Outcome: protocol.OutcomePrinted, Copies: 1})
		if code := refusalCode(err); code != protocol.CodeKioskNotAllowed {
			t.Fatalf("outcome from a suspended kiosk: %v", err)
		}
	})
}

// TestConcurrentSettlements: the same outcome reported on several
// connections at once is recorded once.
func TestConcurrentSettlements(t *testing.T) {
	f := newFixture(t)
	req := request(protocol.NewRequestID(), asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
	if _, perr := f.issue(context.Background(), req); perr != nil {
		t.Fatal(perr)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.svc.Settle(context.Background(), goodKiosk, "S", protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := eventTypes(f.audit.all(t)); got != "[requested issued printed]" {
		t.Fatalf("events %s, want one printed", got)
	}
}

// TestExpire: after the replay TTL a retry is refused (the answer is no
// longer held); after the retention the ID is forgotten.
func TestExpire(t *testing.T) {
	f := newFixture(t)
	now := testNow
	f.svc.cfg.Now = func() time.Time { return now }
	req := request(protocol.NewRequestID(), asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
	if _, perr := f.issue(context.Background(), req); perr != nil {
		t.Fatal(perr)
	}
	now = testNow.Add(DefaultReplayTTL + time.Minute)
	if _, err := f.svc.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, perr := f.issue(context.Background(), req); perr == nil || perr.Code != protocol.CodeRequestIDReused {
		t.Fatalf("retry after the replay expired: %v", perr)
	}
	// A late outcome still settles.
	if err := f.svc.Settle(context.Background(), goodKiosk, "S", protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1}); err != nil {
		t.Fatalf("late outcome: %v", err)
	}
	now = testNow.Add(DefaultRetention + time.Hour)
	if n, err := f.svc.Expire(context.Background()); err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v; want 1", n, err)
	}
	if _, err := f.audit.Request(context.Background(), req.RequestID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("request still registered after the retention: %v", err)
	}
}

// TestReplayIsSealedToTheCard: the stored replay carries no certificate
// content in clear and opens only with the card data that asked for it.
func TestReplayIsSealedToTheCard(t *testing.T) {
	f := newFixture(t)
	card := f.card(t, "an", nil)
	req := request(protocol.NewRequestID(), sapporo, certificate.Overseas, card)
	if _, perr := f.issue(context.Background(), req); perr != nil {
		t.Fatal(perr)
	}
	r, err := f.audit.Request(context.Background(), req.RequestID)
	if err != nil || len(r.Replay) == 0 {
		t.Fatalf("no replay registered: %v", err)
	}
	for _, needle := range personalData(f.resident(t, "an")) {
		if bytes.Contains(r.Replay, []byte(needle)) {
			t.Fatal("the replay carries personal data in clear")
		}
	}
	if _, err := openReplay(r.Replay, req.RequestID, f.card(t, "hanako", nil)); !errors.Is(err, errReplayOpen) {
		t.Fatalf("opened with another card: %v", err)
	}
	if _, err := openReplay(r.Replay, protocol.NewRequestID(), card); !errors.Is(err, errReplayOpen) {
		t.Fatalf("opened under another request ID: %v", err)
	}
	tampered := bytes.Clone(r.Replay)
	tampered[len(tampered)-1] ^= 1
	if _, err := openReplay(tampered, req.RequestID, card); !errors.Is(err, errReplayOpen) {
		t.Fatalf("opened a tampered replay: %v", err)
	}
	resp, err := openReplay(r.Replay, req.RequestID, card)
	if err != nil || resp.CardDigest != protocol.CardDigest(card) {
		t.Fatalf("openReplay with the right card: %v", err)
	}
}

func refusalCode(err error) protocol.Code {
	if err == nil {
		return ""
	}
	return refusalPublic(err).Code
}
