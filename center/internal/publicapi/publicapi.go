// Package publicapi serves what the world must reach to verify a SMART
// Health Card the center signed: the issuer's keys at
// <iss>/.well-known/jwks.json and the revocation list of each key at
// <iss>/.well-known/crl/<kid>.json, both with CORS so that web verifiers
// can fetch them. Nothing here reveals anything about residents: a CRL
// lists revocation identifiers derived with a secret, not certificate IDs.
package publicapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/shc"
)

// Keys provides the published keys (keyring.Keyring).
type Keys interface {
	JWKS(ctx context.Context) (*shc.JWKS, error)
}

// Handler serves the issuer endpoints under prefix (the path part of the
// issuer URL, "" when the issuer is the host root).
func Handler(prefix string, keys Keys, revocations store.RevocationStore, ridSecret []byte, log *slog.Logger) http.Handler {
	h := &handler{keys: keys, revs: revocations, secret: ridSecret, log: log}
	mux := http.NewServeMux()
	prefix = strings.TrimSuffix(prefix, "/")
	mux.HandleFunc("GET "+prefix+"/.well-known/jwks.json", h.jwks)
	mux.HandleFunc("GET "+prefix+"/.well-known/crl/{file}", h.crl)
	mux.HandleFunc("OPTIONS "+prefix+"/.well-known/", preflight)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	return mux
}

type handler struct {
	keys   Keys
	revs   store.RevocationStore
	secret []byte
	log    *slog.Logger
}

func cors(w http.ResponseWriter) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Access-Control-Allow-Methods", "GET, OPTIONS")
}

func preflight(w http.ResponseWriter, r *http.Request) {
	cors(w)
	w.Header().Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, v any) {
	cors(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	json.NewEncoder(w).Encode(v)
}

func (h *handler) jwks(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	set, err := h.keys.JWKS(ctx)
	if err != nil {
		h.log.Error("build JWKS", "err", err)
		http.Error(w, "keys unavailable", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, set)
}

func (h *handler) crl(w http.ResponseWriter, r *http.Request) {
	kid, ok := strings.CutSuffix(r.PathValue("file"), ".json")
	if !ok || kid == "" {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	set, err := h.keys.JWKS(ctx)
	if err != nil {
		h.log.Error("build JWKS for CRL", "err", err)
		http.Error(w, "keys unavailable", http.StatusServiceUnavailable)
		return
	}
	if _, _, err := set.Key(kid); err != nil {
		http.NotFound(w, r)
		return
	}
	revs, err := h.revs.Revocations(ctx, kid)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.log.Error("list revocations", "kid", kid, "err", err)
		http.Error(w, "revocations unavailable", http.StatusServiceUnavailable)
		return
	}
	crl := shc.NewCRL(kid)
	for _, rv := range revs {
		// Revoke every card of this certificate issued up to the revocation.
		if err := crl.Revoke(shc.RID(h.secret, kid, rv.CertificateID), rv.RevokedAt); err != nil {
			h.log.Error("build CRL", "kid", kid, "err", err)
			http.Error(w, "revocations unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	writeJSON(w, crl)
}
