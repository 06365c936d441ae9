package opsapi

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// EnrollmentCodeRequest is the body of POST /ops/kiosks/codes.
type EnrollmentCodeRequest struct {
	admin.KioskEnrollment
	// TTLSeconds is how long the code works (0: the default, 72 hours).
	TTLSeconds int64 `json:"ttlSeconds,omitempty"`
}

// CertificateRequestBody is the body of POST /ops/keys/requests.
type CertificateRequestBody struct {
	Purpose store.KeyPurpose `json:"purpose"`
}

// CertificateInstallBody is the body of POST /ops/keys/certificates.
type CertificateInstallBody struct {
	CertificatePEM string `json:"certificatePem"`
}

// keyRoutes registers the key ceremony and kiosk enrollment code actions.
func (h *handler) keyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /ops/kiosks/codes", h.auth(opauth.ManageKiosks, h.enrollmentCode))
	mux.HandleFunc("POST /ops/keys/requests", h.auth(opauth.RotateKeys, h.certificateRequest))
	mux.HandleFunc("POST /ops/keys/certificates", h.auth(opauth.RotateKeys, h.installCertificate))
}

func (h *handler) failKeys(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, keyring.ErrNoRequest), errors.Is(err, keyring.ErrNoKioskCA), errors.Is(err, admin.ErrNoKeyBundles):
		writeError(w, http.StatusConflict, "precondition", err.Error())
	default:
		h.fail(w, r, err)
	}
}

func (h *handler) enrollmentCode(w http.ResponseWriter, r *http.Request) {
	var req EnrollmentCodeRequest
	if !decodeBody(w, r, &req) {
		return
	}
	out, err := h.cfg.Admin.CreateEnrollmentCode(r.Context(), actor(r), req.KioskEnrollment, time.Duration(req.TTLSeconds)*time.Second)
	if err != nil {
		h.failKeys(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (h *handler) certificateRequest(w http.ResponseWriter, r *http.Request) {
	var req CertificateRequestBody
	if !decodeBody(w, r, &req) {
		return
	}
	out, err := h.cfg.Admin.RequestCertificate(r.Context(), actor(r), req.Purpose)
	if err != nil {
		h.failKeys(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (h *handler) installCertificate(w http.ResponseWriter, r *http.Request) {
	var req CertificateInstallBody
	if !decodeBody(w, r, &req) {
		return
	}
	io.Copy(io.Discard, r.Body)
	out, err := h.cfg.Admin.InstallCertificate(r.Context(), actor(r), []byte(req.CertificatePEM))
	if err != nil {
		h.failKeys(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
