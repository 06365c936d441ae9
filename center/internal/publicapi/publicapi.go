// Package publicapi serves what the world must reach to verify a SMART
// Health Card the center signed: the issuer's keys at
// <iss>/.well-known/jwks.json and the revocation list of each key at
// <iss>/.well-known/crl/<kid>.json, both with CORS so that web verifiers
// can fetch them. Nothing here reveals anything about residents: a CRL
// lists revocation identifiers derived with a secret, not certificate IDs.
//
// # Revocation counters
//
// Verifiers consult a key's revocation list only when the key's JWK carries
// crlVersion, and may keep a cached list for as long as crlVersion has not
// changed. So every key under which at least one certificate is revoked is
// published with crlVersion equal to its list's ctr, and both are computed
// here, in one function, from the same store read: ctr starts at 1 for the
// empty list and grows by one with each revocation. The store only ever adds
// revocations (revoking twice is refused, nothing is un-revoked), so ctr
// rises whenever the list changes and never repeats. A key with nothing
// revoked is published without crlVersion; its list is still served (empty,
// ctr 1) for verifiers that fetch it anyway.
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
	// One read of every revocation, so that the versions announced here
	// match the lists served below for the same store state.
	revs, err := h.revs.Revocations(ctx, "")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.log.Error("list revocations for the JWKS", "err", err)
		http.Error(w, "keys unavailable", http.StatusServiceUnavailable)
		return
	}
	byKID := map[string][]store.Revocation{}
	for _, rv := range revs {
		byKID[rv.KID] = append(byKID[rv.KID], rv)
	}
	out := &shc.JWKS{Keys: make([]shc.JWK, len(set.Keys))}
	for i, k := range set.Keys {
		k.CRLVersion = 0
		if list := byKID[k.Kid]; len(list) > 0 {
			crl, err := buildCRL(h.secret, k.Kid, list)
			if err != nil {
				h.log.Error("build CRL for the JWKS", "kid", k.Kid, "err", err)
				http.Error(w, "keys unavailable", http.StatusServiceUnavailable)
				return
			}
			k.CRLVersion = crl.Ctr
		}
		out.Keys[i] = k
	}
	writeJSON(w, out)
}

// buildCRL is the one place a key's revocation list and its counter are
// made (see the package comment). revs must all belong to kid, in the
// store's order.
func buildCRL(secret []byte, kid string, revs []store.Revocation) (*shc.CRL, error) {
	crl := shc.NewCRL(kid)
	for _, rv := range revs {
		// Revoke every card of this certificate issued up to the revocation.
		if err := crl.Revoke(shc.RID(secret, kid, rv.CertificateID), rv.RevokedAt); err != nil {
			return nil, err
		}
	}
	return crl, nil
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
	crl, err := buildCRL(h.secret, kid, revs)
	if err != nil {
		h.log.Error("build CRL", "kid", kid, "err", err)
		http.Error(w, "revocations unavailable", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, crl)
}
