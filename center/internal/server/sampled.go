package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sampledLog logs repeated warnings at most once per message per interval,
// with the number suppressed since, and counts every one in a metric: a
// hostile kiosk sending ten thousand bad frames a second writes one line
// every ten seconds, not megabytes.
type sampledLog struct {
	log      *slog.Logger
	every    time.Duration
	counter  *prometheus.CounterVec
	mu       sync.Mutex
	last     map[string]time.Time
	suppress map[string]int
}

func newSampledLog(log *slog.Logger, every time.Duration, counter *prometheus.CounterVec) *sampledLog {
	return &sampledLog{log: log, every: every, counter: counter, last: map[string]time.Time{}, suppress: map[string]int{}}
}

// Warn logs msg at most once per interval for each key (typically the
// kiosk ID: one noisy kiosk does not hide another's warnings).
func (s *sampledLog) Warn(key, msg string, args ...any) { s.emit(slog.LevelWarn, key, msg, args) }

// Info is Warn at level info.
func (s *sampledLog) Info(key, msg string, args ...any) { s.emit(slog.LevelInfo, key, msg, args) }

// maxSampleKeys bounds the keys remembered; beyond, the oldest interval's
// keys are forgotten (they would log again, which is harmless).
const maxSampleKeys = 100000

func (s *sampledLog) emit(level slog.Level, key, msg string, args []any) {
	s.counter.WithLabelValues(msg).Inc()
	key = msg + "\x00" + key
	now := time.Now()
	s.mu.Lock()
	if now.Sub(s.last[key]) < s.every {
		s.suppress[key]++
		s.mu.Unlock()
		return
	}
	if len(s.last) >= maxSampleKeys {
		for k, at := range s.last {
			if now.Sub(at) >= s.every {
				delete(s.last, k)
				delete(s.suppress, k)
			}
		}
	}
	n := s.suppress[key]
	s.last[key], s.suppress[key] = now, 0
	s.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	s.log.Log(context.Background(), level, msg, args...)
}
