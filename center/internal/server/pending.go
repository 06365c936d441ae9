package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// pending remembers each request from the moment it is received until the
// kiosk reports its outcome (or the TTL passes), so that an Issue repeated
// after a dropped connection gets the same certificate instead of a second
// one, and a request ID reused with other data is refused.
//
// This is the only place a certificate lives at the center after it is
// sent, and only in memory: the entry is dropped on the outcome, on expiry
// and at shutdown. With several center instances, kiosks stick to one
// instance per connection and retry on the same request ID; an instance
// that never saw the ID issues afresh (documented in docs/PROTOCOL.md).
type pending struct {
	mu      sync.Mutex
	entries map[string]*entry
	ttl     time.Duration
	now     func() time.Time
}

type entry struct {
	kioskID     string
	fingerprint [32]byte // of the request: municipality, kind, copies, card digest
	done        chan struct{}
	resp        *protocol.CertificateResponse
	err         *protocol.Error
	expires     time.Time
	settling    bool // an outcome is being recorded
}

func newPending(ttl time.Duration, now func() time.Time) *pending {
	return &pending{entries: map[string]*entry{}, ttl: ttl, now: now}
}

func requestFingerprint(req protocol.Issue) [32]byte {
	b, _ := json.Marshal(struct {
		M, K string
		C    int
		D    string
	}{req.Municipality, string(req.Kind), req.Copies, protocol.CardDigest(req.Card)})
	return sha256.Sum256(b)
}

// claim returns the entry for req and whether the caller must run the
// issuance (first sight) or wait for another run's result. It returns
// ok=false when the ID is already used by another kiosk or other data.
func (p *pending) claim(kioskID string, req protocol.Issue) (e *entry, first, ok bool) {
	fp := requestFingerprint(req)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	if e, exists := p.entries[req.RequestID]; exists {
		if e.kioskID != kioskID || !bytes.Equal(e.fingerprint[:], fp[:]) {
			return nil, false, false
		}
		return e, false, true
	}
	e = &entry{kioskID: kioskID, fingerprint: fp, done: make(chan struct{}), expires: p.now().Add(p.ttl)}
	p.entries[req.RequestID] = e
	return e, true, true
}

// finish records the result of the run that claimed e. Results that a retry
// could change (internal errors, unavailability) are forgotten so the retry
// runs again; everything else is remembered for replay.
func (p *pending) finish(id string, e *entry, resp *protocol.CertificateResponse, err *protocol.Error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.resp, e.err = resp, err
	if err != nil && err.Retryable {
		delete(p.entries, id)
	}
	close(e.done)
}

// outcomeState says whether an outcome report can be recorded now.
type outcomeState int

const (
	outcomeReady   outcomeState = iota
	outcomeUnknown              // no such request for this kiosk (never seen, or already settled)
	outcomeBusy                 // the issuance is still running, or another report is being recorded
)

// beginOutcome reserves the entry for recording an outcome. The entry stays
// in the cache until endOutcome says the outcome was recorded, so a report
// that fails to record can be sent again.
func (p *pending) beginOutcome(kioskID, id string) (*entry, outcomeState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[id]
	if !ok || e.kioskID != kioskID {
		return nil, outcomeUnknown
	}
	select {
	case <-e.done:
	default:
		return nil, outcomeBusy
	}
	if e.settling {
		return nil, outcomeBusy
	}
	e.settling = true
	return e, outcomeReady
}

// endOutcome releases the entry, dropping it when the outcome was recorded.
func (p *pending) endOutcome(id string, e *entry, recorded bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.settling = false
	if recorded && p.entries[id] == e {
		delete(p.entries, id)
	}
}

func (p *pending) expireLocked() {
	now := p.now()
	for id, e := range p.entries {
		select {
		case <-e.done:
			if now.After(e.expires) {
				delete(p.entries, id)
			}
		default:
		}
	}
}

// size returns the number of requests held, for metrics and tests.
func (p *pending) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

// clear drops every entry (shutdown).
func (p *pending) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.entries)
}
