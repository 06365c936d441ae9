// Package opsapi is the operations team's HTTP API: live kiosk status,
// settlement statistics, the audit log, Prometheus metrics, and every
// operator action of center/internal/admin, so that the issuance-center
// commands and the operations console work on a running center. It listens
// on a separate, non-public address and requires a bearer token read from
// a file; an action names its operator in the X-Operator header and is
// audited with it and the caller's address. What it returns is
// operational: kiosk and municipality identifiers, counts, result codes
// and times — never resident data, which the center does not keep.
//
// Errors are JSON {"error": code, "message": text}. The message names what
// was wrong (a field, a row and column of an import) but never carries an
// internal error's text: an unexpected failure is "internal" with a pointer
// to the center's log.
package opsapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Live reports connected kiosks (server.Server).
type Live interface {
	Live() []server.KioskLive
	InFlight() int
}

// Config wires the handler.
type Config struct {
	Token    string // bearer token; empty disables every endpoint but /metrics
	Store    store.Store
	Admin    admin.Operations
	Live     Live
	Gatherer prometheus.Gatherer
	Now      func() time.Time
	Log      *slog.Logger
}

// OperatorHeader names the operator behind an action.
const OperatorHeader = "X-Operator"

// Limits on request bodies: a JSON action is small; a ledger import streams.
const maxJSONBody = 64 << 10

// Error is the JSON body of every error answer.
type Error struct {
	Code    string `json:"error"`
	Message string `json:"message"`
}

// Handler returns the operations API.
func Handler(cfg Config) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	h := &handler{cfg: cfg}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /ops/kiosks", h.auth(h.kiosks))
	mux.HandleFunc("GET /ops/municipalities", h.auth(h.municipalities))
	mux.HandleFunc("GET /ops/stats", h.auth(h.stats))
	mux.HandleFunc("GET /ops/audit", h.auth(h.audit))
	// Profiles for performance work (docs/BENCHMARKS.md): stacks and
	// counters only, no request data; behind the operator token.
	mux.HandleFunc("GET /debug/pprof/", h.auth(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/profile", h.auth(pprof.Profile))
	if cfg.Admin != nil {
		mux.HandleFunc("POST /ops/kiosks", h.auth(h.enroll))
		mux.HandleFunc("POST /ops/kiosks/{id}/status", h.auth(h.kioskStatus))
		mux.HandleFunc("PUT /ops/municipalities/{code}", h.auth(h.putMunicipality))
		mux.HandleFunc("POST /ops/municipalities/{code}/participation", h.auth(h.participation))
		mux.HandleFunc("GET /ops/records", h.auth(h.recordCounts))
		mux.HandleFunc("POST /ops/records/{code}", h.auth(h.importRecords))
		mux.HandleFunc("DELETE /ops/records/{code}", h.auth(h.deleteRecords))
		mux.HandleFunc("POST /ops/keys/shc/rotate", h.auth(h.rotate))
		mux.HandleFunc("POST /ops/revocations", h.auth(h.revoke))
		mux.HandleFunc("GET /ops/audit/verify", h.auth(h.verifyAudit))
		h.keyRoutes(mux)
	}
	return mux
}

type handler struct{ cfg Config }

func (h *handler) auth(f func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if h.cfg.Token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.cfg.Token)) != 1 {
			writeError(w, http.StatusUnauthorized, "unauthorized", "operator token required")
			return
		}
		f(w, r)
	}
}

// actor is the operator and address behind a request.
func actor(r *http.Request) admin.Actor {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = "unknown"
	}
	return admin.Actor{Operator: r.Header.Get(OperatorHeader), Source: host}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, Error{Code: code, Message: msg})
}

// fail answers err: the store's and the admin's sentinel errors map to
// statuses with a message naming what was wrong; anything else is internal
// and its text stays in the center's log.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var fe *ledgercsv.Error
	switch {
	case errors.As(err, &fe):
		// Problems name rows and columns, never values.
		writeJSON(w, http.StatusUnprocessableEntity, ImportRefused{Error{"invalid_file", fe.Error()}, fe.Problems, fe.Omitted})
	case errors.Is(err, records.ErrInvalidRecord), errors.Is(err, ledgercsv.ErrInvalidFile):
		writeError(w, http.StatusUnprocessableEntity, "invalid_file", err.Error())
	case errors.Is(err, admin.ErrNoKeyBundles):
		writeError(w, http.StatusConflict, "precondition", err.Error())
	case errors.Is(err, admin.ErrNoOperator):
		writeError(w, http.StatusBadRequest, "no_operator", "send the operator ID in the "+OperatorHeader+" header (1-64 characters of [A-Za-z0-9._:-])")
	case errors.Is(err, store.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, store.ErrNotFound), errors.Is(err, records.ErrNoRegion):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, store.ErrExists):
		writeError(w, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, store.ErrTransition):
		writeError(w, http.StatusConflict, "transition", "this status change is not allowed (a revoked kiosk stays revoked)")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the center did not finish in time; retry")
	default:
		h.cfg.Log.Error("operations request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error; the center's log has the cause")
	}
}

// ImportRefused is the answer to an import whose file was rejected.
type ImportRefused struct {
	Error
	Problems []ledgercsv.RowError `json:"problems"`
	Omitted  int                  `json:"omitted,omitempty"`
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body is not the JSON this endpoint takes (see docs/OPERATIONS.md)")
		return false
	}
	return true
}

func (h *handler) kiosks(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	enrolled, err := h.cfg.Store.ListKiosks(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"enrolled": enrolled, "live": h.cfg.Live.Live(), "inFlight": h.cfg.Live.InFlight()})
}

func (h *handler) municipalities(w http.ResponseWriter, r *http.Request) {
	ms, err := h.cfg.Store.ListMunicipalities(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ms)
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	day := store.SettlementDay(h.cfg.Now())
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	if from == "" {
		from = day
	}
	if to == "" {
		to = day
	}
	counts, err := h.cfg.Store.DailyCounts(r.Context(), from, to)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, counts)
}

func (h *handler) audit(w http.ResponseWriter, r *http.Request) {
	q := store.EventQuery{KioskID: r.URL.Query().Get("kiosk"), RequestID: r.URL.Query().Get("request")}
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil {
		q.Limit = n
	}
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "since must be an RFC 3339 time")
			return
		}
		q.From = t
	}
	evs, err := h.cfg.Store.Events(r.Context(), q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, evs)
}

func (h *handler) enroll(w http.ResponseWriter, r *http.Request) {
	var e admin.KioskEnrollment
	if !decodeBody(w, r, &e) {
		return
	}
	out, err := h.cfg.Admin.EnrollKiosk(r.Context(), actor(r), e)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

// KioskStatusChange is the body of POST /ops/kiosks/{id}/status.
type KioskStatusChange struct {
	Status store.KioskStatus `json:"status"`
	Reason string            `json:"reason"`
}

func (h *handler) kioskStatus(w http.ResponseWriter, r *http.Request) {
	var c KioskStatusChange
	if !decodeBody(w, r, &c) {
		return
	}
	k, err := h.cfg.Admin.SetKioskStatus(r.Context(), actor(r), r.PathValue("id"), c.Status, c.Reason)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (h *handler) putMunicipality(w http.ResponseWriter, r *http.Request) {
	var m store.Municipality
	if !decodeBody(w, r, &m) {
		return
	}
	if m.Code != r.PathValue("code") {
		writeError(w, http.StatusBadRequest, "invalid", "the body's code differs from the path's")
		return
	}
	if err := h.cfg.Admin.PutMunicipality(r.Context(), actor(r), m); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// Participation is the body of POST /ops/municipalities/{code}/participation.
type Participation struct {
	Participating bool `json:"participating"`
}

func (h *handler) participation(w http.ResponseWriter, r *http.Request) {
	var p Participation
	if !decodeBody(w, r, &p) {
		return
	}
	if err := h.cfg.Admin.SetParticipation(r.Context(), actor(r), r.PathValue("code"), p.Participating); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (h *handler) recordCounts(w http.ResponseWriter, r *http.Request) {
	counts, err := h.cfg.Admin.RecordCounts(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, counts)
}

func (h *handler) importRecords(w http.ResponseWriter, r *http.Request) {
	res, err := h.cfg.Admin.ImportRecords(r.Context(), actor(r), r.PathValue("code"), r.Body)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// Deleted is the answer to DELETE /ops/records/{code}.
type Deleted struct {
	Records int `json:"records"`
}

func (h *handler) deleteRecords(w http.ResponseWriter, r *http.Request) {
	n, err := h.cfg.Admin.DeleteRecords(r.Context(), actor(r), r.PathValue("code"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Deleted{Records: n})
}

// Rotated is the answer to POST /ops/keys/shc/rotate.
type Rotated struct {
	KID string `json:"kid"`
}

func (h *handler) rotate(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, io.LimitReader(r.Body, maxJSONBody))
	kid, err := h.cfg.Admin.RotateSHCKey(r.Context(), actor(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Rotated{KID: kid})
}

// RevocationRequest is the body of POST /ops/revocations.
type RevocationRequest struct {
	CertificateID string `json:"certificateId"`
	KID           string `json:"kid"`
	Reason        string `json:"reason"`
}

func (h *handler) revoke(w http.ResponseWriter, r *http.Request) {
	var rv RevocationRequest
	if !decodeBody(w, r, &rv) {
		return
	}
	if err := h.cfg.Admin.RevokeCertificate(r.Context(), actor(r), rv.CertificateID, rv.KID, rv.Reason); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, rv)
}

func (h *handler) verifyAudit(w http.ResponseWriter, r *http.Request) {
	rep, err := h.cfg.Admin.VerifyAudit(r.Context(), r.URL.Query().Get("from"), r.URL.Query().Get("to"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
