package loadtest

import (
	"math"
	"time"
)

// Histogram counts latencies in log-linear buckets (16 per power of two,
// so any percentile it reports is within about 4 % of the true value)
// from 1 µs to about 70 s. It is small and merges by addition, so fleets in
// separate processes report theirs and the coordinator adds them up.
type Histogram struct {
	Counts []uint64 `json:"counts"`
	N      uint64   `json:"n"`
	Sum    float64  `json:"sumSeconds"`
	MaxS   float64  `json:"maxSeconds"`
}

const (
	histSub     = 16 // buckets per power of two
	histBuckets = 26 * histSub
)

func histIndex(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us < 1 {
		return 0
	}
	i := int(math.Log2(us) * histSub)
	return min(i, histBuckets-1)
}

// histValue is a bucket's upper bound.
func histValue(i int) time.Duration {
	return time.Duration(math.Exp2(float64(i+1)/histSub) * float64(time.Microsecond))
}

// Add counts one latency.
func (h *Histogram) Add(d time.Duration) {
	if h.Counts == nil {
		h.Counts = make([]uint64, histBuckets)
	}
	h.Counts[histIndex(d)]++
	h.N++
	h.Sum += d.Seconds()
	h.MaxS = max(h.MaxS, d.Seconds())
}

// Merge adds o's counts.
func (h *Histogram) Merge(o *Histogram) {
	if o.N == 0 {
		return
	}
	if h.Counts == nil {
		h.Counts = make([]uint64, histBuckets)
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.N += o.N
	h.Sum += o.Sum
	h.MaxS = max(h.MaxS, o.MaxS)
}

// Quantile returns the latency below which a fraction q of the counts lie
// (the bucket's upper bound, capped at the maximum seen).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.N == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.N)))
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank && c > 0 {
			return min(histValue(i), h.Max())
		}
	}
	return h.Max()
}

// Max is the largest latency counted.
func (h *Histogram) Max() time.Duration { return time.Duration(h.MaxS * float64(time.Second)) }

// Mean is the average latency.
func (h *Histogram) Mean() time.Duration {
	if h.N == 0 {
		return 0
	}
	return time.Duration(h.Sum / float64(h.N) * float64(time.Second))
}
