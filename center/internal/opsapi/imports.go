package opsapi

import (
	"io"
	"net/http"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
)

// importRoutes serves import jobs (admin.ImportJob):
//
//	POST   /ops/imports            start a job: {"municipality", "mode", "encoding", "size"} → 201 the job;
//	                               409 import_running when the municipality has one waiting or running
//	PUT    /ops/imports/{id}/file  the CSV file, streamed; answers when the import has ended: 200 the job
//	                               (done), or the error (422 invalid_file with problems by row and column)
//	GET    /ops/imports            every job this instance knows, newest first
//	GET    /ops/imports/{id}       one job: state, phase, rows, rate, time left, result or error
//	DELETE /ops/imports/{id}       cancel: answers once the import has stopped; the records stay as they were
//
// A job lives on the instance that started it, and its ID ends with that
// instance's ID: another instance answers 421 import_elsewhere naming it.
//
// The file's PUT is a request of its own so that the job (and its ID, to
// watch or cancel) exists before the first byte is sent.
func (h *handler) importRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /ops/imports", h.auth(opauth.ImportRecords, h.startImport))
	mux.HandleFunc("PUT /ops/imports/{id}/file", h.auth(opauth.ImportRecords, h.uploadImport))
	mux.HandleFunc("GET /ops/imports", h.auth(opauth.ViewAll, h.importJobs))
	mux.HandleFunc("GET /ops/imports/{id}", h.auth(opauth.ViewAll, h.importJob))
	mux.HandleFunc("DELETE /ops/imports/{id}", h.auth(opauth.ImportRecords, h.cancelImport))
}

func (h *handler) startImport(w http.ResponseWriter, r *http.Request) {
	var in admin.ImportStart
	if !decodeBody(w, r, &in) {
		return
	}
	j, err := h.cfg.Admin.StartImport(r.Context(), actor(r), in)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/ops/imports/"+j.ID)
	writeJSON(w, http.StatusCreated, j)
}

func (h *handler) uploadImport(w http.ResponseWriter, r *http.Request) {
	j, err := h.cfg.Admin.UploadImport(r.Context(), actor(r), r.PathValue("id"), r.Body)
	if err != nil {
		if !drainUpload(w, r.Body) {
			// The rest of the file did not come in time (a cancelled job
			// whose sender has gone silent): net/http would otherwise wait
			// for up to 256 KiB more of it before it sends the answer.
			w.Header().Set("Connection", "close")
		}
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// uploadDrainTime bounds how long a refused upload's sender may go on
// sending before the answer goes out regardless.
const uploadDrainTime = 2 * time.Second

// drainUpload reads and discards what is left of a refused upload, so the
// answer reaches a sender that is still writing: closing a connection with
// unread data resets it, and an HTTP client that meets the reset while
// writing reports that instead of the answer (Go's does). It reports
// whether the body ended, so the connection can be kept.
func drainUpload(w http.ResponseWriter, body io.Reader) bool {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(uploadDrainTime)) != nil {
		return false
	}
	_, err := io.Copy(io.Discard, body)
	_ = rc.SetReadDeadline(time.Time{})
	return err == nil
}

func (h *handler) importJobs(w http.ResponseWriter, r *http.Request) {
	js, err := h.cfg.Admin.ImportJobs(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, js)
}

func (h *handler) importJob(w http.ResponseWriter, r *http.Request) {
	j, err := h.cfg.Admin.ImportJobStatus(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (h *handler) cancelImport(w http.ResponseWriter, r *http.Request) {
	j, err := h.cfg.Admin.CancelImport(r.Context(), actor(r), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}
