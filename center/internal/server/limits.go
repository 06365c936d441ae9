package server

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// bucket is a token bucket: rate tokens a second up to burst. It is used
// by one goroutine at a time (its owner locks around it where needed).
type bucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
	// emptySince is when the bucket first ran dry in the current stretch
	// of abuse; the stretch ends once the bucket has refilled to half its
	// burst (a flood takes each token as it trickles back, so it never
	// gets there).
	emptySince time.Time
}

func newBucket(rate float64, burst int) bucket {
	return bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take spends a token if there is one.
func (b *bucket) take(now time.Time) bool {
	if b.rate <= 0 {
		return true // unlimited
	}
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens >= b.burst/2 {
		b.emptySince = time.Time{}
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	if b.emptySince.IsZero() {
		b.emptySince = now
	}
	return false
}

// refillMs is how long until the bucket holds a token again, in
// milliseconds (at least 1, at most the protocol's retry bound).
func (b *bucket) refillMs() int {
	if b.rate <= 0 || b.tokens >= 1 {
		return 1
	}
	ms := int(math.Ceil((1 - b.tokens) / b.rate * 1000))
	return max(1, min(ms, protocol.MaxRetryAfterMs))
}

// overLimitFor is how long the bucket has been refusing without a break.
func (b *bucket) overLimitFor(now time.Time) time.Duration {
	if b.emptySince.IsZero() {
		return 0
	}
	return now.Sub(b.emptySince)
}

// kioskState is what the server keeps about one kiosk across its
// connections: the connections (at most MaxConnsPerKiosk), the issue rate,
// and the distinct residents it asked for in the last hour — a kiosk
// issuing for many different residents in minutes is the signature of
// copied card files. Only digests of digests are kept, never card data.
type kioskState struct {
	id string

	mu        sync.Mutex
	conns     []*conn // oldest first
	issues    bucket
	lastIssue string // request ID admitted last: its retries are free
	residents map[uint64]time.Time
	flagged   bool
	lastUsed  time.Time
}

// admitIssue applies the kiosk's issue rate. Retries of the request
// admitted last are not counted (a kiosk resends after reconnecting).
func (k *kioskState) admitIssue(req protocol.Issue, now time.Time) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastUsed = now
	if req.RequestID == k.lastIssue {
		return nil
	}
	if !k.issues.take(now) {
		return refusal.WithDetail(protocol.CodeRateLimited, "too many requests from this kiosk", nil)
	}
	k.lastIssue = req.RequestID
	return nil
}

// noteResident records the card behind a request and reports whether the
// kiosk just crossed the distinct-residents limit.
func (k *kioskState) noteResident(cardDigest string, limit int, now time.Time) (crossed bool, distinct int) {
	sum := sha256.Sum256([]byte("kioskcert resident " + cardDigest))
	key := binary.BigEndian.Uint64(sum[:8])
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.residents == nil {
		k.residents = map[uint64]time.Time{}
	}
	for r, at := range k.residents {
		if now.Sub(at) > time.Hour {
			delete(k.residents, r)
		}
	}
	// Bounded: a kiosk over the limit is flagged; more entries add nothing.
	if len(k.residents) <= limit {
		k.residents[key] = now
	}
	distinct = len(k.residents)
	if distinct > limit && !k.flagged {
		k.flagged = true
		return true, distinct
	}
	if distinct <= limit/2 {
		k.flagged = false
	}
	return false, distinct
}

// kiosks tracks kioskState by kiosk ID.
type kiosks struct {
	mu     sync.Mutex
	byID   map[string]*kioskState
	rate   float64
	burst  int
	maxPer int
}

func newKiosks(rate float64, burst, maxPer int) *kiosks {
	return &kiosks{byID: map[string]*kioskState{}, rate: rate, burst: burst, maxPer: maxPer}
}

// attach registers a new connection of a kiosk and returns the kiosk's
// state and the connections to close: the oldest beyond the per-kiosk
// limit (a kiosk that reconnects before its old connection timed out keeps
// working; one certificate cannot hold many connections).
func (ks *kiosks) attach(c *conn, now time.Time) (*kioskState, []*conn) {
	ks.mu.Lock()
	k := ks.byID[c.kiosk.ID]
	if k == nil {
		k = &kioskState{id: c.kiosk.ID, issues: newBucket(ks.rate, ks.burst)}
		ks.byID[c.kiosk.ID] = k
	}
	ks.mu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastUsed = now
	k.conns = append(k.conns, c)
	var evict []*conn
	for len(k.conns) > ks.maxPer {
		evict = append(evict, k.conns[0])
		k.conns = k.conns[1:]
	}
	return k, evict
}

// get returns a kiosk's state, or nil.
func (ks *kiosks) get(id string) *kioskState {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.byID[id]
}

// detach forgets a closed connection.
func (ks *kiosks) detach(c *conn) {
	k := c.kstate
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, o := range k.conns {
		if o == c {
			k.conns = append(k.conns[:i], k.conns[i+1:]...)
			break
		}
	}
}

// sweep drops the state of kiosks without connections that were not used
// for an hour (their rate buckets are full and their resident lists empty
// by then), so the map does not grow with every kiosk ever seen.
func (ks *kiosks) sweep(now time.Time) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for id, k := range ks.byID {
		k.mu.Lock()
		idle := len(k.conns) == 0 && now.Sub(k.lastUsed) > time.Hour
		k.mu.Unlock()
		if idle {
			delete(ks.byID, id)
		}
	}
}
