package storetest

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
)

// NewRequest returns a valid request claim for tests.
func NewRequest(id, kiosk string, at time.Time) store.Request {
	return store.Request{
		ID: id, KioskID: kiosk, Fingerprint: fingerprint("req " + id),
		Municipality: "012041", Kind: certificate.Domestic, Copies: 2, ClaimedAt: at,
	}
}

func reqEvent(r store.Request, typ store.EventType, at time.Time) store.Event {
	return store.Event{Time: at, Type: typ, KioskID: r.KioskID, StoreCode: "S1", RequestID: r.ID,
		Municipality: r.Municipality, Kind: r.Kind, Copies: r.Copies, Result: "ok"}
}

func requestEvents(t *testing.T, s store.Store, id string) []store.EventType {
	t.Helper()
	evs, err := s.Events(context.Background(), store.EventQuery{RequestID: id})
	mustNil(t, "Events by request", err)
	var out []store.EventType
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func testRequestLifecycle(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRequest("req-1", "kiosk-a", base)
	got, err := s.ClaimRequest(ctx, r, time.Time{}, reqEvent(r, store.EventRequested, base))
	mustNil(t, "ClaimRequest", err)
	if got.State != store.RequestClaimed || got.Attempt != 1 || !got.ClaimedAt.Equal(store.Time(base)) {
		t.Fatalf("claimed = %+v", got)
	}
	again, err := s.ClaimRequest(ctx, r, time.Time{}, reqEvent(r, store.EventRequested, base))
	mustIs(t, "claim twice", err, store.ErrExists)
	if again.State != store.RequestClaimed || again.KioskID != "kiosk-a" || again.Fingerprint != r.Fingerprint {
		t.Errorf("second claim returned %+v, want the registered claim", again)
	}
	_, err = s.SettleRequest(ctx, r.ID, r.KioskID, "printed", base, reqEvent(r, store.EventPrinted, base))
	mustIs(t, "settle before issue", err, store.ErrTransition)

	replay := bytes.Repeat([]byte{0xA5}, 3000)
	fin := store.RequestFinish{State: store.RequestIssued, CertificateIDs: []string{"AB12CD34EF56"}, Replay: replay, At: base.Add(time.Second)}
	_, err = s.FinishRequest(ctx, r.ID, 2, fin, reqEvent(r, store.EventIssued, base.Add(time.Second)))
	mustIs(t, "finish by another attempt", err, store.ErrTransition)
	got, err = s.FinishRequest(ctx, r.ID, 1, fin, reqEvent(r, store.EventIssued, base.Add(time.Second)))
	mustNil(t, "FinishRequest", err)
	if got.State != store.RequestIssued || !bytes.Equal(got.Replay, replay) {
		t.Fatalf("finished = %+v", got)
	}
	_, err = s.FinishRequest(ctx, r.ID, 1, fin)
	mustIs(t, "finish twice", err, store.ErrTransition)
	got, err = s.Request(ctx, r.ID)
	mustNil(t, "Request", err)
	if got.State != store.RequestIssued || !bytes.Equal(got.Replay, replay) || fmt.Sprint(got.CertificateIDs) != "[AB12CD34EF56]" ||
		!got.FinishedAt.Equal(store.Time(base.Add(time.Second))) || got.Copies != 2 || got.Municipality != "012041" {
		t.Errorf("Request = %+v", got)
	}

	_, err = s.SettleRequest(ctx, r.ID, "kiosk-b", "printed", base, reqEvent(r, store.EventPrinted, base))
	mustIs(t, "settle another kiosk's request", err, store.ErrNotFound)
	got, err = s.SettleRequest(ctx, r.ID, r.KioskID, "printed", base.Add(2*time.Second), reqEvent(r, store.EventPrinted, base.Add(2*time.Second)))
	mustNil(t, "SettleRequest", err)
	if got.State != store.RequestSettled || got.Outcome != "printed" || len(got.Replay) != 0 {
		t.Errorf("settled = %+v", got)
	}
	got, err = s.SettleRequest(ctx, r.ID, r.KioskID, "cancelled", base.Add(3*time.Second), reqEvent(r, store.EventCancelled, base.Add(3*time.Second)))
	mustIs(t, "settle twice", err, store.ErrSettled)
	if got.Outcome != "printed" {
		t.Errorf("second settlement changed the outcome: %+v", got)
	}
	got, err = s.Request(ctx, r.ID)
	mustNil(t, "Request after settle", err)
	if len(got.Replay) != 0 {
		t.Error("the replay outlived the settlement")
	}
	if evs := fmt.Sprint(requestEvents(t, s, r.ID)); evs != "[requested issued printed]" {
		t.Errorf("events = %s, want requested, issued, printed once each", evs)
	}
	_, err = s.Request(ctx, "req-unknown")
	mustIs(t, "Request unknown", err, store.ErrNotFound)
	_, err = s.FinishRequest(ctx, "req-unknown", 1, fin)
	mustIs(t, "finish unknown", err, store.ErrNotFound)
}

func testRequestRefusedAndReleased(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRequest("req-refused", "kiosk-a", base)
	_, err := s.ClaimRequest(ctx, r, time.Time{}, reqEvent(r, store.EventRequested, base))
	mustNil(t, "ClaimRequest", err)
	_, err = s.FinishRequest(ctx, r.ID, 1, store.RequestFinish{State: store.RequestRefused, Code: "no_record", At: base}, reqEvent(r, store.EventRefused, base))
	mustNil(t, "FinishRequest refused", err)
	got, err := s.ClaimRequest(ctx, r, base.Add(time.Hour))
	mustIs(t, "claim a refused request", err, store.ErrExists)
	if got.State != store.RequestRefused || got.Code != "no_record" {
		t.Errorf("refused request = %+v", got)
	}
	_, err = s.SettleRequest(ctx, r.ID, r.KioskID, "printed", base, reqEvent(r, store.EventPrinted, base))
	mustIs(t, "settle a refused request", err, store.ErrTransition)

	rel := NewRequest("req-released", "kiosk-a", base)
	_, err = s.ClaimRequest(ctx, rel, time.Time{}, reqEvent(rel, store.EventRequested, base))
	mustNil(t, "ClaimRequest", err)
	got, err = s.FinishRequest(ctx, rel.ID, 1, store.RequestFinish{State: store.RequestReleased, At: base}, reqEvent(rel, store.EventFailed, base))
	mustNil(t, "FinishRequest released", err)
	if got.State != store.RequestReleased {
		t.Errorf("released = %+v", got)
	}
	_, err = s.Request(ctx, rel.ID)
	mustIs(t, "Request after release", err, store.ErrNotFound)
	_, err = s.ClaimRequest(ctx, rel, time.Time{}, reqEvent(rel, store.EventRequested, base.Add(time.Second)))
	mustNil(t, "claim again after release", err)
	if evs := fmt.Sprint(requestEvents(t, s, rel.ID)); evs != "[requested failed requested]" {
		t.Errorf("events = %s", evs)
	}
}

func testRequestTakeOver(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRequest("req-stale", "kiosk-a", base)
	_, err := s.ClaimRequest(ctx, r, time.Time{})
	mustNil(t, "ClaimRequest", err)
	// Not yet stale: the claim stands.
	r2 := r
	r2.ClaimedAt = base.Add(time.Minute)
	_, err = s.ClaimRequest(ctx, r2, base)
	mustIs(t, "claim a fresh claim", err, store.ErrExists)
	got, err := s.ClaimRequest(ctx, r2, base.Add(time.Second), reqEvent(r, store.EventRequested, base.Add(time.Minute)))
	mustNil(t, "take over a stale claim", err)
	if got.Attempt != 2 || !got.ClaimedAt.Equal(store.Time(r2.ClaimedAt)) {
		t.Errorf("taken over = %+v, want attempt 2", got)
	}
	fin := store.RequestFinish{State: store.RequestIssued, CertificateIDs: []string{"X1"}, At: base.Add(2 * time.Minute)}
	_, err = s.FinishRequest(ctx, r.ID, 1, fin)
	mustIs(t, "the first attempt finishing late", err, store.ErrTransition)
	_, err = s.FinishRequest(ctx, r.ID, 2, fin)
	mustNil(t, "the second attempt finishing", err)
	// An issued request is never taken over.
	_, err = s.ClaimRequest(ctx, r2, base.Add(time.Hour))
	mustIs(t, "take over an issued request", err, store.ErrExists)
}

// testRequestConcurrentClaims is the invariant several center instances
// rely on: of many concurrent claims of one request ID exactly one wins,
// and of many concurrent settlements exactly one is recorded.
func testRequestConcurrentClaims(t *testing.T, s store.Store) {
	ctx := context.Background()
	const callers, ids = 8, 10
	var wg sync.WaitGroup
	wins := make([]int, ids)
	var mu sync.Mutex
	errs := make(chan error, callers*ids)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				r := NewRequest(fmt.Sprintf("req-c%d", i), "kiosk-a", base)
				_, err := s.ClaimRequest(ctx, r, time.Time{}, reqEvent(r, store.EventRequested, base.Add(time.Duration(c)*time.Millisecond)))
				switch {
				case err == nil:
					mu.Lock()
					wins[i]++
					mu.Unlock()
				case !errors.Is(err, store.ErrExists):
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("ClaimRequest: %v", err)
	}
	for i, w := range wins {
		if w != 1 {
			t.Errorf("request %d claimed %d times, want exactly once", i, w)
		}
	}

	fin := store.RequestFinish{State: store.RequestIssued, CertificateIDs: []string{"AB12CD34EF56"}, Replay: []byte("sealed"), At: base}
	for i := range ids {
		_, err := s.FinishRequest(ctx, fmt.Sprintf("req-c%d", i), 1, fin)
		mustNil(t, "FinishRequest", err)
	}
	settled := make([]int, ids)
	errs = make(chan error, callers*ids)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				id := fmt.Sprintf("req-c%d", i)
				ev := store.Event{Time: base.Add(time.Minute), Type: store.EventPrinted, KioskID: "kiosk-a", RequestID: id, Municipality: "012041", Kind: certificate.Domestic, Copies: 2, Result: "ok"}
				_, err := s.SettleRequest(ctx, id, "kiosk-a", "printed", base.Add(time.Duration(c)*time.Millisecond), ev)
				switch {
				case err == nil:
					mu.Lock()
					settled[i]++
					mu.Unlock()
				case !errors.Is(err, store.ErrSettled):
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("SettleRequest: %v", err)
	}
	for i, n := range settled {
		if n != 1 {
			t.Errorf("request %d settled %d times, want exactly once", i, n)
		}
		if evs := fmt.Sprint(requestEvents(t, s, fmt.Sprintf("req-c%d", i))); evs != "[requested printed]" {
			t.Errorf("request %d events = %s, want one requested and one printed", i, evs)
		}
	}
	day := store.SettlementDay(base)
	counts, err := s.DailyCounts(ctx, day, day)
	mustNil(t, "DailyCounts", err)
	var printed int64
	for _, c := range counts {
		if c.Type == store.EventPrinted {
			printed += c.Copies
		}
	}
	if printed != 2*ids {
		t.Errorf("settled copies = %d, want %d", printed, 2*ids)
	}
}

func testRequestExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	fin := func(at time.Time) store.RequestFinish {
		return store.RequestFinish{State: store.RequestIssued, CertificateIDs: []string{"AB12CD34EF56"}, Replay: []byte("sealed"), At: at}
	}
	for i := range 5 {
		at := base.Add(time.Duration(i) * time.Hour)
		r := NewRequest(fmt.Sprintf("req-e%d", i), "kiosk-a", at)
		_, err := s.ClaimRequest(ctx, r, time.Time{})
		mustNil(t, "ClaimRequest", err)
		_, err = s.FinishRequest(ctx, r.ID, 1, fin(at.Add(time.Second)))
		mustNil(t, "FinishRequest", err)
	}
	// Replays of the first three go; the first request is forgotten.
	n, err := s.ExpireRequests(ctx, base.Add(2*time.Hour+2*time.Second), base.Add(time.Minute))
	mustNil(t, "ExpireRequests", err)
	if n != 1 {
		t.Errorf("ExpireRequests deleted %d, want 1", n)
	}
	_, err = s.Request(ctx, "req-e0")
	mustIs(t, "forgotten request", err, store.ErrNotFound)
	for i := 1; i < 5; i++ {
		r, err := s.Request(ctx, fmt.Sprintf("req-e%d", i))
		mustNil(t, "Request", err)
		if wantReplay := i > 2; (len(r.Replay) > 0) != wantReplay {
			t.Errorf("req-e%d replay kept = %v, want %v", i, len(r.Replay) > 0, wantReplay)
		}
		if r.State != store.RequestIssued {
			t.Errorf("req-e%d state %s after replay expiry", i, r.State)
		}
	}
	n, err = s.ExpireRequests(ctx, time.Time{}, base.Add(24*time.Hour))
	mustNil(t, "ExpireRequests all", err)
	if n != 4 {
		t.Errorf("ExpireRequests deleted %d, want 4", n)
	}
}

func testRequestValidation(t *testing.T, s store.Store) {
	ctx := context.Background()
	bad := map[string]func(r *store.Request){
		"id":          func(r *store.Request) { r.ID = "請求" },
		"kiosk":       func(r *store.Request) { r.KioskID = "" },
		"fingerprint": func(r *store.Request) { r.Fingerprint = "ABC" },
		"kind":        func(r *store.Request) { r.Kind = "other" },
		"copies":      func(r *store.Request) { r.Copies = -1 },
		"time":        func(r *store.Request) { r.ClaimedAt = time.Time{} },
		"code":        func(r *store.Request) { r.Municipality = "012042" },
	}
	for name, mutate := range bad {
		r := NewRequest("req-bad", "kiosk-a", base)
		mutate(&r)
		_, err := s.ClaimRequest(ctx, r, time.Time{})
		mustIs(t, "ClaimRequest with bad "+name, err, store.ErrInvalid)
	}
	r := NewRequest("req-v", "kiosk-a", base)
	_, err := s.ClaimRequest(ctx, r, time.Time{}, store.Event{Type: store.EventRequested})
	mustIs(t, "ClaimRequest with an invalid event", err, store.ErrInvalid)
	_, err = s.Request(ctx, "req-v")
	mustIs(t, "a claim refused for its event", err, store.ErrNotFound)
	_, err = s.ClaimRequest(ctx, r, time.Time{})
	mustNil(t, "ClaimRequest", err)
	for name, f := range map[string]store.RequestFinish{
		"issued without IDs": {State: store.RequestIssued, At: base},
		"refused no code":    {State: store.RequestRefused, At: base},
		"unknown state":      {State: "lost", At: base},
		"no time":            {State: store.RequestReleased},
		"replay too large":   {State: store.RequestIssued, CertificateIDs: []string{"X"}, Replay: make([]byte, store.MaxReplay+1), At: base},
	} {
		_, err := s.FinishRequest(ctx, r.ID, 1, f)
		mustIs(t, "FinishRequest "+name, err, store.ErrInvalid)
	}
	_, err = s.SettleRequest(ctx, r.ID, r.KioskID, "Printed!", base, reqEvent(r, store.EventPrinted, base))
	mustIs(t, "SettleRequest with a bad outcome", err, store.ErrInvalid)
}
