package opsapi

import (
	"net/http"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
)

// accountRoutes serves operator accounts (administrators) and API tokens
// (one's own, or anyone's for administrators).
func (h *handler) accountRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /ops/operators", h.auth(opauth.ManageOperators, h.listOperators))
	mux.HandleFunc("POST /ops/operators", h.auth(opauth.ManageOperators, h.addOperator))
	mux.HandleFunc("POST /ops/operators/{id}", h.auth(opauth.ManageOperators, h.changeOperator))
	mux.HandleFunc("POST /ops/operators/{id}/reset", h.auth(opauth.ManageOperators, h.resetOperator))
	mux.HandleFunc("GET /ops/tokens", h.auth(opauth.OwnTokens, h.listTokens))
	mux.HandleFunc("POST /ops/tokens", h.auth(opauth.OwnTokens, h.issueToken))
	mux.HandleFunc("DELETE /ops/tokens/{id}", h.auth(opauth.OwnTokens, h.revokeToken))
}

func (h *handler) listOperators(w http.ResponseWriter, r *http.Request) {
	ops, err := h.cfg.Accounts.ListOperators(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ops)
}

func (h *handler) addOperator(w http.ResponseWriter, r *http.Request) {
	var n admin.NewOperator
	if !decodeBody(w, r, &n) {
		return
	}
	out, err := h.cfg.Accounts.AddOperator(r.Context(), actor(r), n)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (h *handler) changeOperator(w http.ResponseWriter, r *http.Request) {
	var c admin.OperatorChange
	if !decodeBody(w, r, &c) {
		return
	}
	out, err := h.cfg.Accounts.ChangeOperator(r.Context(), actor(r), r.PathValue("id"), c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// PasswordReset is the body of POST /ops/operators/{id}/reset.
type PasswordReset struct {
	Password string `json:"password,omitempty"`
}

func (h *handler) resetOperator(w http.ResponseWriter, r *http.Request) {
	var p PasswordReset
	if !decodeBody(w, r, &p) {
		return
	}
	out, err := h.cfg.Accounts.ResetCredentials(r.Context(), actor(r), r.PathValue("id"), p.Password)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// TokenRequest is the body of POST /ops/tokens.
type TokenRequest struct {
	// Operator defaults to the caller; another operator's needs the
	// administrator role.
	Operator string `json:"operator,omitempty"`
	Label    string `json:"label"`
	// TTL is a Go duration ("720h"); empty means admin.MaxTokenTTL.
	TTL string `json:"ttl,omitempty"`
}

// mayActFor reports whether the caller may handle operator id's tokens.
func mayActFor(r *http.Request, id string) bool {
	o := operator(r)
	return id == "" || id == o.ID || opauth.Allowed(o.Role, opauth.ManageOperators)
}

func (h *handler) issueToken(w http.ResponseWriter, r *http.Request) {
	var t TokenRequest
	if !decodeBody(w, r, &t) {
		return
	}
	if !mayActFor(r, t.Operator) {
		writeError(w, http.StatusForbidden, "forbidden", "only an administrator issues tokens for another operator")
		return
	}
	if t.Operator == "" {
		t.Operator = operator(r).ID
	}
	var ttl time.Duration
	if t.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(t.TTL); err != nil || ttl <= 0 {
			writeError(w, http.StatusBadRequest, "invalid", "ttl must be a positive duration such as 720h")
			return
		}
	}
	out, err := h.cfg.Accounts.IssueAPIToken(r.Context(), actor(r), t.Operator, t.Label, ttl)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (h *handler) listTokens(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("operator")
	if id == "" && !opauth.Allowed(operator(r).Role, opauth.ManageOperators) {
		id = operator(r).ID
	}
	if !mayActFor(r, id) {
		writeError(w, http.StatusForbidden, "forbidden", "only an administrator lists another operator's tokens")
		return
	}
	ts, err := h.cfg.Accounts.ListAPITokens(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}

func (h *handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !opauth.Allowed(operator(r).Role, opauth.ManageOperators) {
		// Only one's own tokens.
		own, err := h.cfg.Accounts.ListAPITokens(r.Context(), operator(r).ID)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		found := false
		for _, t := range own {
			found = found || t.ID == id
		}
		if !found {
			writeError(w, http.StatusForbidden, "forbidden", "only an administrator revokes another operator's tokens")
			return
		}
	}
	if err := h.cfg.Accounts.RevokeAPIToken(r.Context(), actor(r), id); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"revoked": id})
}
