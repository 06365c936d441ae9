package console

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metric names the live page reads (center/internal/server's metrics).
const (
	metricIssued  = "kioskcert_center_issue_requests_total"
	metricLatency = "kioskcert_center_issue_seconds"
)

// Live page timing: a sample every sampleEvery, rates over window.
const (
	sampleEvery = 2 * time.Second
	window      = time.Minute
)

// LiveSnapshot is what the live page shows, pushed as a server-sent event.
type LiveSnapshot struct {
	Time              time.Time      `json:"time"`
	KiosksConnected   int            `json:"kiosksConnected"`
	InFlight          int            `json:"inFlight"`
	IssuancesPerMin   float64        `json:"issuancesPerMinute"`
	ErrorsByCode      map[string]int `json:"errorsByCode"`
	P50Ms             float64        `json:"p50Ms"`
	P99Ms             float64        `json:"p99Ms"`
	AnswersLastMinute int            `json:"answersLastMinute"`
}

type sample struct {
	at      time.Time
	results map[string]float64 // issue requests by result code
	buckets []bucket           // latency histogram, cumulative
}

type bucket struct {
	le    float64
	count float64
}

type liveSampler struct {
	gatherer prometheus.Gatherer
	live     Live
	now      func() time.Time

	mu      sync.Mutex
	samples []sample
	latest  LiveSnapshot
	done    chan struct{}
}

func newLiveSampler(g prometheus.Gatherer, l Live, now func() time.Time) *liveSampler {
	return &liveSampler{gatherer: g, live: l, now: now, done: make(chan struct{})}
}

func (s *liveSampler) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	s.sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample()
		}
	}
}

func (s *liveSampler) read() sample {
	sm := sample{at: time.Now(), results: map[string]float64{}}
	if s.gatherer == nil {
		return sm
	}
	mfs, err := s.gatherer.Gather()
	if err != nil {
		return sm
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case metricIssued:
			for _, m := range mf.GetMetric() {
				sm.results[label(m, "result")] += m.GetCounter().GetValue()
			}
		case metricLatency:
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					sm.buckets = append(sm.buckets, bucket{b.GetUpperBound(), float64(b.GetCumulativeCount())})
				}
				sm.buckets = append(sm.buckets, bucket{math.Inf(1), float64(h.GetSampleCount())})
			}
		}
	}
	return sm
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func (s *liveSampler) sample() {
	now := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, now)
	for len(s.samples) > 1 && now.at.Sub(s.samples[0].at) > window {
		s.samples = s.samples[1:]
	}
	old := s.samples[0]
	snap := LiveSnapshot{Time: s.now(), ErrorsByCode: map[string]int{}}
	ls := s.live.Live()
	for _, l := range ls {
		if l.Connected {
			snap.KiosksConnected++
		}
	}
	snap.InFlight = s.live.InFlight()
	span := now.at.Sub(old.at)
	for code, v := range now.results {
		d := v - old.results[code]
		switch code {
		case "ok", "replayed":
			if span > 0 && code == "ok" {
				snap.IssuancesPerMin += d * float64(time.Minute) / float64(span)
			}
		default:
			if d > 0 {
				snap.ErrorsByCode[code] = int(d)
			}
		}
		snap.AnswersLastMinute += int(d)
	}
	if len(old.buckets) == len(now.buckets) && len(now.buckets) > 0 {
		delta := make([]bucket, len(now.buckets))
		for i := range now.buckets {
			delta[i] = bucket{now.buckets[i].le, now.buckets[i].count - old.buckets[i].count}
		}
		snap.P50Ms = quantile(0.5, delta) * 1000
		snap.P99Ms = quantile(0.99, delta) * 1000
	}
	snap.IssuancesPerMin = math.Round(snap.IssuancesPerMin*10) / 10
	s.latest = snap
}

// quantile estimates a quantile from cumulative histogram buckets by
// linear interpolation within the bucket, as Prometheus's
// histogram_quantile does.
func quantile(q float64, bs []bucket) float64 {
	bs = slices.Clone(bs)
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	if len(bs) == 0 || bs[len(bs)-1].count <= 0 {
		return 0
	}
	rank := q * bs[len(bs)-1].count
	lowerLe, lowerCount := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return lowerLe
			}
			if b.count == lowerCount {
				return b.le
			}
			return lowerLe + (b.le-lowerLe)*(rank-lowerCount)/(b.count-lowerCount)
		}
		lowerLe, lowerCount = b.le, b.count
	}
	return lowerLe
}

func (s *liveSampler) snapshot() LiveSnapshot {
	s.mu.Lock()
	empty := s.latest.Time.IsZero()
	s.mu.Unlock()
	if empty {
		s.sample()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest
}

func (c *Console) livePage(w http.ResponseWriter, r *http.Request, q *request) {
	c.render(w, r, q, "live", c.live.snapshot())
}

// liveEvents streams a snapshot every sampleEvery as server-sent events
// until the client leaves or the console stops.
func (c *Console) liveEvents(w http.ResponseWriter, r *http.Request, q *request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		b, _ := json.Marshal(c.live.snapshot())
		if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b); err != nil {
			return
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-c.live.done:
			return
		case <-t.C:
		}
	}
}
