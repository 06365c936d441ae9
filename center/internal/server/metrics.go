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
	limited            *prometheus.CounterVec
	closedForAbuse     prometheus.Counter
	flagged            prometheus.Counter
	warnings           *prometheus.CounterVec
	handshakeFailures  prometheus.Counter
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
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskcert_center_limited_total", Help: "Frames, requests and connections refused by a limit, by limit (frames, kiosk_issues, in_flight, busy, connections, connections_per_kiosk)."}, []string{"limit"}),
		closedForAbuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskcert_center_connections_closed_for_abuse_total", Help: "Kiosk connections closed for sending frames beyond the rate limit."}),
		flagged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskcert_center_kiosks_flagged_total", Help: "Kiosks flagged for asking for many different residents within an hour."}),
		warnings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskcert_center_warnings_total", Help: "Warnings about kiosks, by message; the log shows at most one per message every 10 s."}, []string{"message"}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskcert_center_tls_handshake_failures_total", Help: "TLS handshakes on the kiosk listener that failed (no or unknown client certificate, timeouts, scanners)."}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.refusedConnections, m.frames, m.badFrames, m.issued, m.outcomes, m.latency,
			m.limited, m.closedForAbuse, m.flagged, m.warnings, m.handshakeFailures)
	}
	return m
}
