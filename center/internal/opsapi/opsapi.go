// Package opsapi is the operations team's HTTP API: live kiosk status,
// settlement statistics, the audit log, Prometheus metrics, and every
// operator action of center/internal/admin, so that the issuance-center
// commands and scripts work on a running center. It listens on a
// separate, non-public address. Every endpoint but /metrics requires a
// bearer token bound to one operator (center/internal/opauth): the API acts
// as that operator, with that operator's role, and audits every action with
// the operator's ID and the caller's address. An X-Operator header is
// never trusted to name the operator; one that names another operator than
// the token's is refused, so a script cannot be misled about whose name
// its actions carry. What it returns is
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
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Live reports connected kiosks (server.Server).
type Live interface {
	Live() []server.KioskLive
	InFlight() int
}

// Config wires the handler.
type Config struct {
	// Auth checks bearer tokens; nil disables every endpoint but /metrics.
	Auth  *opauth.Authenticator
	Store store.Store
	Admin admin.Operations
	// Accounts, when set, serves the operator and token endpoints.
	Accounts admin.Accounts
	// Instance is this center instance's ID, shown with its live view.
	Instance string
	Live     Live
	Gatherer prometheus.Gatherer
	Now      func() time.Time
	Log      *slog.Logger
}

// OperatorHeader may repeat the operator a client believes its token
// belongs to; a different name is refused (the token decides).
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
	mux.HandleFunc("GET /ops/whoami", h.auth("", h.whoami))
	mux.HandleFunc("GET /ops/kiosks", h.auth(opauth.ViewAll, h.kiosks))
	mux.HandleFunc("GET /ops/municipalities", h.auth(opauth.ViewAll, h.municipalities))
	mux.HandleFunc("GET /ops/stats", h.auth(opauth.ViewAll, h.stats))
	mux.HandleFunc("GET /ops/audit", h.auth(opauth.ViewAll, h.audit))
	// Profiles for performance work (docs/BENCHMARKS.md): stacks and
	// counters only, no request data; staff only.
	mux.HandleFunc("GET /debug/pprof/", h.auth(opauth.ViewAll, pprof.Index))
	mux.HandleFunc("GET /debug/pprof/profile", h.auth(opauth.ViewAll, pprof.Profile))
	if cfg.Admin != nil {
		mux.HandleFunc("POST /ops/kiosks", h.auth(opauth.ManageKiosks, h.enroll))
		mux.HandleFunc("POST /ops/kiosks/{id}/status", h.auth(opauth.ManageKiosks, h.kioskStatus))
		mux.HandleFunc("PUT /ops/municipalities/{code}", h.auth(opauth.EditMunicipalities, h.putMunicipality))
		mux.HandleFunc("POST /ops/municipalities/{code}/participation", h.auth(opauth.SetParticipation, h.participation))
		mux.HandleFunc("GET /ops/records", h.auth(opauth.ViewAll, h.recordCounts))
		mux.HandleFunc("POST /ops/records/{code}", h.auth(opauth.ImportRecords, h.importRecords))
		mux.HandleFunc("DELETE /ops/records/{code}", h.auth(opauth.DeleteRecords, h.deleteRecords))
		mux.HandleFunc("POST /ops/keys/shc/rotate", h.auth(opauth.RotateKeys, h.rotate))
		mux.HandleFunc("POST /ops/revocations", h.auth(opauth.RevokeCertificates, h.revoke))
		mux.HandleFunc("GET /ops/audit/verify", h.auth(opauth.ViewAll, h.verifyAudit))
		mux.HandleFunc("POST /ops/records/{code}/flags", h.auth(opauth.ImportRecords, h.recordFlag))
		h.keyRoutes(mux)
		h.importRoutes(mux)
	}
	if cfg.Accounts != nil {
		h.accountRoutes(mux)
	}
	return mux
}

type handler struct{ cfg Config }

type ctxKey struct{}

// auth authenticates the bearer token and checks that its operator's role
// allows need ("" for any operator who may use the API at all).
func (h *handler) auth(need opauth.Action, f func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if h.cfg.Auth == nil || !ok {
			writeError(w, http.StatusUnauthorized, "unauthorized", "operator token required")
			return
		}
		o, _, err := h.cfg.Auth.AuthenticateToken(r.Context(), got)
		if errors.Is(err, opauth.ErrBadToken) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "operator token unknown, revoked or expired")
			return
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if claimed := r.Header.Get(OperatorHeader); claimed != "" && claimed != o.ID {
			writeError(w, http.StatusForbidden, "operator_mismatch", "this token belongs to operator "+o.ID+", not "+claimed+"; use your own token")
			return
		}
		// The municipality role reads its own municipality in the console;
		// the API's views span every municipality.
		if !opauth.Allowed(o.Role, opauth.ViewAll) || need != "" && !opauth.Allowed(o.Role, need) {
			writeError(w, http.StatusForbidden, "forbidden", "the role "+string(o.Role)+" of operator "+o.ID+" does not allow this")
			return
		}
		f(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, o)))
	}
}

// operator is the authenticated operator of a request.
func operator(r *http.Request) store.Operator {
	o, _ := r.Context().Value(ctxKey{}).(store.Operator)
	return o
}

// actor is the operator (from the token) and address behind a request.
func actor(r *http.Request) admin.Actor {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = "unknown"
	}
	return admin.Actor{Operator: operator(r).ID, Source: host}
}

func (h *handler) whoami(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, admin.Info(operator(r)))
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
	case errors.Is(err, records.ErrImportRunning):
		writeError(w, http.StatusConflict, "import_running", err.Error())
	case errors.Is(err, admin.ErrImportCancelled):
		writeError(w, http.StatusConflict, "import_cancelled", "the import was cancelled; the records are as they were")
	case errors.Is(err, admin.ErrImportState):
		writeError(w, http.StatusConflict, "import_state", err.Error())
	case errors.Is(err, admin.ErrImportElsewhere):
		writeError(w, http.StatusMisdirectedRequest, "import_elsewhere", err.Error())
	case errors.Is(err, admin.ErrNoKeyBundles):
		writeError(w, http.StatusConflict, "precondition", err.Error())
	case errors.Is(err, admin.ErrNoOperator):
		writeError(w, http.StatusBadRequest, "no_operator", "the token's operator has no valid ID")
	case errors.Is(err, opauth.ErrNoPermission):
		writeError(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, admin.ErrOwnAccount):
		writeError(w, http.StatusConflict, "own_account", err.Error())
	case errors.Is(err, opauth.ErrWeakPassword):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
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
	writeJSON(w, http.StatusOK, map[string]any{"instance": h.cfg.Instance, "enrolled": enrolled, "live": h.cfg.Live.Live(), "inFlight": h.cfg.Live.InFlight()})
}

func (h *handler) municipalities(w http.ResponseWriter, r *http.Request) {
	ms, err := h.cfg.Store.ListMunicipalities(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ms)
}

// stats answers GET /ops/stats?from=&to=&municipality=: the daily counts
// of events by municipality, type and kind. Residents sent to the counter
// are counted by reason (counter_only.<reason>) only in one
// municipality's statistics (municipality=CODE); across municipalities
// they are one type, counter_only.
func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	day := store.SettlementDay(h.cfg.Now())
	muni := r.URL.Query().Get("municipality")
	if muni != "" && lgcode.Validate(muni) != nil {
		writeError(w, http.StatusBadRequest, "invalid", "municipality must be a 6-digit local government code")
		return
	}
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
	writeJSON(w, http.StatusOK, statsView(counts, muni))
}

// statsView keeps one municipality's counts (muni set) or folds the
// counter_only reasons of every municipality into one type (muni "").
func statsView(counts []store.DailyCount, muni string) []store.DailyCount {
	out := []store.DailyCount{}
	folded := map[store.DailyCount]int{} // key (counts zeroed) → index in out
	for _, c := range counts {
		if muni != "" {
			if c.Municipality == muni {
				out = append(out, c)
			}
			continue
		}
		if _, ok := store.CounterOnlyReason(c.Type); ok {
			c.Type = store.EventType(protocol.CodeCounterOnly)
			key := c
			key.Events, key.Copies = 0, 0
			if i, ok := folded[key]; ok {
				out[i].Events += c.Events
				out[i].Copies += c.Copies
				continue
			}
			folded[key] = len(out)
		}
		out = append(out, c)
	}
	return out
}

// audit answers GET /ops/audit?kiosk=&request=&municipality=&certificate=
// &operator=&result=&type=&since=&until=&limit=&order=desc.
func (h *handler) audit(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := store.EventQuery{KioskID: v.Get("kiosk"), RequestID: v.Get("request"), Municipality: v.Get("municipality"),
		CertificateID: v.Get("certificate"), Operator: v.Get("operator"), Result: v.Get("result"),
		Type: store.EventType(v.Get("type")), Descending: v.Get("order") == "desc"}
	if n, err := strconv.Atoi(v.Get("limit")); err == nil {
		q.Limit = n
	}
	for _, b := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.From}, {"until", &q.To}} {
		if s := v.Get(b.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid", b.name+" must be an RFC 3339 time")
				return
			}
			*b.dst = t
		}
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
	if c.Status == store.KioskRevoked && !opauth.Allowed(operator(r).Role, opauth.RevokeKiosks) {
		writeError(w, http.StatusForbidden, "forbidden", "revoking a kiosk needs the administrator role")
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
	opts := admin.ImportOptions{Mode: records.ImportMode(r.URL.Query().Get("mode")), Encoding: r.URL.Query().Get("encoding")}
	res, err := h.cfg.Admin.ImportRecords(r.Context(), actor(r), r.PathValue("code"), opts, r.Body)
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

// RecordFlag is the body of POST /ops/records/{code}/flags: set (or, with
// Clear, clear) one flag of the person with MyNumber. The My Number goes
// to the records only; keep the operations listener private (loopback or
// behind TLS).
type RecordFlag struct {
	MyNumber string `json:"myNumber"`
	Kind     string `json:"kind"`             // counter_only, deceased, moved_out
	Reason   string `json:"reason,omitempty"` // for counter_only
	Date     string `json:"date,omitempty"`   // for deceased and moved_out
	Clear    bool   `json:"clear,omitempty"`
}

func (h *handler) recordFlag(w http.ResponseWriter, r *http.Request) {
	var f RecordFlag
	if !decodeBody(w, r, &f) {
		return
	}
	kind, err := records.ParseFlagKind(f.Kind)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "kind must be counter_only, deceased or moved_out")
		return
	}
	if f.Clear {
		err = h.cfg.Admin.ClearRecordFlag(r.Context(), actor(r), r.PathValue("code"), f.MyNumber, kind)
	} else {
		reason, rerr := records.ParseCounterReason(f.Reason)
		if rerr != nil {
			writeError(w, http.StatusBadRequest, "invalid", "reason must be support_measure, alias_on_record, travel_document or staff_review")
			return
		}
		err = h.cfg.Admin.SetRecordFlag(r.Context(), actor(r), r.PathValue("code"), f.MyNumber, records.FlagChange{Kind: kind, Reason: reason, Date: f.Date})
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		OK bool `json:"ok"`
	}{true})
}
