package server

import (
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// fakeClock is an injected clock the tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2024, 4, 1, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func issueReq(id string, card byte) protocol.Issue {
	return protocol.Issue{
		RequestID: id, Municipality: "012041", Kind: certificate.Domestic, Copies: 1,
		Card: carddata.Raw{MyNumber: []byte{card}, FourItems: []byte{2}, Signature: []byte{3}, Certificate: []byte{4}},
	}
}

const (
	idA = "0123456789abcdef0123456789abcdef"
	idB = "fedcba9876543210fedcba9876543210"
)

func okResponse(id string) *protocol.CertificateResponse {
	return &protocol.CertificateResponse{RequestID: id, Copies: 1}
}

func TestPendingClaimFinishTake(t *testing.T) {
	clock := newFakeClock()
	p := newPending(time.Minute, clock.Now)
	req := issueReq(idA, 1)

	e, first, ok := p.claim("K1", req)
	if !ok || !first || e == nil {
		t.Fatalf("first claim: first=%v ok=%v", first, ok)
	}
	select {
	case <-e.done:
		t.Fatal("entry done before finish")
	default:
	}
	// A retry while the first run is in flight waits on the same entry.
	again, first, ok := p.claim("K1", req)
	if !ok || first || again != e {
		t.Fatalf("retry in flight: first=%v ok=%v same=%v", first, ok, again == e)
	}
	resp := okResponse(idA)
	p.finish(idA, e, resp, nil)
	<-e.done
	if e.resp != resp || e.err != nil {
		t.Fatal("finish did not record the result")
	}
	// A retry after the answer replays it.
	replay, first, ok := p.claim("K1", req)
	if !ok || first || replay != e || replay.resp != resp {
		t.Fatalf("replay: first=%v ok=%v", first, ok)
	}
	if p.size() != 1 {
		t.Fatalf("size %d, want 1", p.size())
	}
	// Another kiosk cannot settle it; its own kiosk can.
	if _, st := p.beginOutcome("K2", idA); st != outcomeUnknown {
		t.Fatalf("another kiosk's outcome: state %d", st)
	}
	got, st := p.beginOutcome("K1", idA)
	if st != outcomeReady || got != e {
		t.Fatalf("beginOutcome: state %d", st)
	}
	// A second report while the first is being recorded must wait.
	if _, st := p.beginOutcome("K1", idA); st != outcomeBusy {
		t.Fatalf("concurrent outcome: state %d, want busy", st)
	}
	// Recording failed: the request stays for the report to be sent again.
	p.endOutcome(idA, got, false)
	if p.size() != 1 {
		t.Fatal("request forgotten although its outcome was not recorded")
	}
	got, st = p.beginOutcome("K1", idA)
	if st != outcomeReady {
		t.Fatalf("outcome after a failed record: state %d", st)
	}
	p.endOutcome(idA, got, true)
	if _, st := p.beginOutcome("K1", idA); st != outcomeUnknown {
		t.Fatalf("outcome after settlement: state %d, want unknown", st)
	}
	if p.size() != 0 {
		t.Fatalf("size %d after the outcome", p.size())
	}
	// After the outcome, the same ID is a new request.
	if _, first, ok := p.claim("K1", req); !ok || !first {
		t.Fatalf("claim after the outcome: first=%v ok=%v", first, ok)
	}
}

func TestPendingOutcomeWhileIssuing(t *testing.T) {
	p := newPending(time.Minute, newFakeClock().Now)
	e, _, _ := p.claim("K1", issueReq(idA, 1))
	if _, st := p.beginOutcome("K1", idA); st != outcomeBusy {
		t.Fatalf("outcome while issuing: state %d, want busy", st)
	}
	p.finish(idA, e, okResponse(idA), nil)
	if _, st := p.beginOutcome("K1", idA); st != outcomeReady {
		t.Fatalf("outcome after issuing: state %d, want ready", st)
	}
}

func TestPendingRefusesReuse(t *testing.T) {
	tests := []struct {
		name  string
		kiosk string
		edit  func(*protocol.Issue)
		ok    bool
	}{
		{"same kiosk, same data", "K1", func(*protocol.Issue) {}, true},
		{"other kiosk", "K2", func(*protocol.Issue) {}, false},
		{"other card", "K1", func(r *protocol.Issue) { r.Card.MyNumber = []byte{9} }, false},
		{"other card file boundary", "K1", func(r *protocol.Issue) {
			// Same bytes overall, split differently between two files.
			r.Card.MyNumber, r.Card.FourItems = []byte{1, 2}, []byte{}
		}, false},
		{"other municipality", "K1", func(r *protocol.Issue) { r.Municipality = "011002" }, false},
		{"other kind", "K1", func(r *protocol.Issue) { r.Kind = certificate.Overseas }, false},
		{"other copies", "K1", func(r *protocol.Issue) { r.Copies = 2 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, finished := range []bool{false, true} {
				p := newPending(time.Minute, newFakeClock().Now)
				e, _, _ := p.claim("K1", issueReq(idA, 1))
				if finished {
					p.finish(idA, e, okResponse(idA), nil)
				}
				req := issueReq(idA, 1)
				tt.edit(&req)
				got, first, ok := p.claim(tt.kiosk, req)
				if ok != tt.ok || first {
					t.Fatalf("finished=%v: claim ok=%v first=%v, want ok=%v", finished, ok, first, tt.ok)
				}
				if !ok && got != nil {
					t.Fatal("a refused claim returned the entry")
				}
				// The refusal leaves the original in place for its kiosk.
				if e2, first, ok := p.claim("K1", issueReq(idA, 1)); !ok || first || e2 != e {
					t.Fatal("the original request was disturbed")
				}
			}
		})
	}
}

func TestPendingForgetsRetryableErrors(t *testing.T) {
	tests := []struct {
		code     protocol.Code
		remember bool
	}{
		{protocol.CodeInternal, false},
		{protocol.CodeUnavailable, false},
		{protocol.CodeRateLimited, false},
		{protocol.CodeNoRecord, true},
		{protocol.CodeHolderMismatch, true},
		{protocol.CodeCardInvalid, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			p := newPending(time.Minute, newFakeClock().Now)
			req := issueReq(idA, 1)
			e, _, _ := p.claim("K1", req)
			// A waiter that joined before the failure still gets its answer.
			w, first, _ := p.claim("K1", req)
			if first {
				t.Fatal("waiter claimed first")
			}
			perr := protocol.NewError(idA, tt.code, "")
			p.finish(idA, e, nil, perr)
			<-w.done
			if w.err != perr {
				t.Fatal("waiter did not get the error")
			}
			_, first, ok := p.claim("K1", req)
			if !ok || first == tt.remember {
				t.Fatalf("claim after %s: first=%v, want first=%v", tt.code, first, !tt.remember)
			}
		})
	}
}

func TestPendingExpiry(t *testing.T) {
	clock := newFakeClock()
	p := newPending(15*time.Minute, clock.Now)
	done, _, _ := p.claim("K1", issueReq(idA, 1))
	p.finish(idA, done, okResponse(idA), nil)
	running, _, _ := p.claim("K1", issueReq(idB, 2))

	clock.Add(15 * time.Minute) // exactly the TTL: still held
	if _, first, _ := p.claim("K1", issueReq(idA, 1)); first {
		t.Fatal("entry expired at, not after, its TTL")
	}
	clock.Add(time.Second)
	// Expiry runs on the next claim; the finished entry goes, the one still
	// running stays (its kiosk is waiting for it).
	if _, first, ok := p.claim("K9", issueReq("00000000000000000000000000000001", 3)); !ok || !first {
		t.Fatal("unrelated claim failed")
	}
	if _, st := p.beginOutcome("K1", idA); st != outcomeUnknown {
		t.Fatal("expired entry still held")
	}
	if e, first, ok := p.claim("K1", issueReq(idB, 2)); !ok || first || e != running {
		t.Fatal("a running entry expired")
	}
	// After expiry the ID starts afresh, even with other data: the old
	// request is gone.
	if _, first, ok := p.claim("K2", issueReq(idA, 7)); !ok || !first {
		t.Fatal("expired ID not reusable")
	}
}

func TestPendingClear(t *testing.T) {
	p := newPending(time.Minute, newFakeClock().Now)
	p.claim("K1", issueReq(idA, 1))
	p.claim("K1", issueReq(idB, 1))
	if p.size() != 2 {
		t.Fatalf("size %d", p.size())
	}
	p.clear()
	if p.size() != 0 {
		t.Fatalf("size %d after clear", p.size())
	}
}

// TestPendingConcurrentClaims: many goroutines claiming one ID get exactly
// one first run.
func TestPendingConcurrentClaims(t *testing.T) {
	p := newPending(time.Minute, time.Now)
	req := issueReq(idA, 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, first, ok := p.claim("K1", req)
			if !ok {
				t.Error("claim refused")
				return
			}
			if first {
				mu.Lock()
				firsts++
				mu.Unlock()
				p.finish(req.RequestID, e, okResponse(idA), nil)
			}
			<-e.done
		}()
	}
	wg.Wait()
	if firsts != 1 {
		t.Fatalf("%d first runs, want 1", firsts)
	}
}
