// Package opsapi is the operations team's HTTP API: live kiosk status,
// settlement statistics, the audit log and Prometheus metrics. It listens
// on a separate, non-public address and requires a bearer token read from
// a file. What it returns is operational: kiosk and municipality
// identifiers, counts, result codes and times — never resident data, which
// the center does not keep.
package opsapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Live reports connected kiosks (server.Server).
type Live interface {
	Live() []server.KioskLive
	PendingRequests() int
}

// Config wires the handler.
type Config struct {
	Token    string // bearer token; empty disables every endpoint but /metrics
	Store    store.Store
	Live     Live
	Gatherer prometheus.Gatherer
	Now      func() time.Time
	Log      *slog.Logger
}

// Handler returns the operations API.
func Handler(cfg Config) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	auth := func(f func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if cfg.Token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(cfg.Token)) != 1 {
				http.Error(w, "operator token required", http.StatusUnauthorized)
				return
			}
			f(w, r)
		}
	}
	mux.HandleFunc("GET /ops/kiosks", auth(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		enrolled, err := cfg.Store.ListKiosks(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, map[string]any{"enrolled": enrolled, "live": cfg.Live.Live(), "pendingRequests": cfg.Live.PendingRequests()})
	}))
	mux.HandleFunc("GET /ops/municipalities", auth(func(w http.ResponseWriter, r *http.Request) {
		ms, err := cfg.Store.ListMunicipalities(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, ms)
	}))
	mux.HandleFunc("GET /ops/stats", auth(func(w http.ResponseWriter, r *http.Request) {
		day := store.SettlementDay(cfg.Now())
		from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
		if from == "" {
			from = day
		}
		if to == "" {
			to = day
		}
		counts, err := cfg.Store.DailyCounts(r.Context(), from, to)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, counts)
	}))
	mux.HandleFunc("GET /ops/audit", auth(func(w http.ResponseWriter, r *http.Request) {
		q := store.EventQuery{KioskID: r.URL.Query().Get("kiosk")}
		if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil {
			q.Limit = n
		}
		if s := r.URL.Query().Get("since"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				http.Error(w, "since must be RFC 3339", http.StatusBadRequest)
				return
			}
			q.From = t
		}
		evs, err := cfg.Store.Events(r.Context(), q)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, evs)
	}))
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
