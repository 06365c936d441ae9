package server

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the kiosk endpoint's Prometheus metrics. Labels carry result
// codes only, never identifiers of residents.
type Metrics struct {
	connected          prometheus.Gauge
	refusedConnections prometheus.Counter
	frames             prometheus.Counter
	badFrames          *prometheus.CounterVec
	issued             *prometheus.CounterVec
	outcomes           *prometheus.CounterVec
	latency            prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kioskcert_center_kiosks_connected", Help: "Kiosk websocket connections open now."}),
		refusedConnections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskcert_center_kiosk_connections_refused_total", Help: "Kiosk connections refused (unknown, suspended or revoked)."}),
		frames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskcert_center_frames_received_total", Help: "Frames received from kiosks."}),
		badFrames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskcert_center_bad_frames_total", Help: "Frames that failed to decode, by error code."}, []string{"code"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskcert_center_issue_requests_total", Help: "Issue requests answered, by result code (ok, replayed or an error code)."}, []string{"result"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskcert_center_outcomes_total", Help: "Outcomes reported by kiosks."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kioskcert_center_issue_seconds", Help: "Time to answer an issue request.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.refusedConnections, m.frames, m.badFrames, m.issued, m.outcomes, m.latency)
	}
	return m
}
