package console

import (
	"archive/zip"
	"bytes"
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// kioskRow is one kiosk as the kiosks page shows it.
type kioskRow struct {
	store.Kiosk
	Live        server.KioskLive
	IssuedToday int
	ErrorRate   float64
	Visit       []string // reasons it needs a visit (message keys)
}

// printersNeedingVisit are printer states staff must attend to.
var printersNeedingVisit = []string{"paper-low", "paper-out", "jammed", "cover-open", "supply-empty", "stopped", "offline"}

// offlineTooLong: an active kiosk not seen for this long needs a visit.
const offlineTooLong = 24 * time.Hour

// needsVisit lists why a kiosk needs someone to go there.
func needsVisit(k store.Kiosk, l server.KioskLive, seen bool, errorRate float64, now time.Time) []string {
	if k.Status != store.KioskActive {
		return nil
	}
	var why []string
	if seen && l.Reader == "no-reader" {
		why = append(why, "visit_reader")
	}
	if seen && slices.Contains(printersNeedingVisit, l.Printer) {
		why = append(why, "visit_printer")
	}
	last := k.LastSeen
	if l.LastSeen.After(last) {
		last = l.LastSeen
	}
	if !l.Connected && (last.IsZero() && now.Sub(k.EnrolledAt) > offlineTooLong || !last.IsZero() && now.Sub(last) > offlineTooLong) {
		why = append(why, "visit_offline")
	}
	if errorRate >= 0.5 {
		why = append(why, "visit_errors")
	}
	return why
}

// startOfDay is the start of the settlement day (Japan time) holding t.
func startOfDay(t time.Time) time.Time {
	d, _ := store.ParseDay(store.SettlementDay(t))
	return d
}

// todayCounts returns a kiosk's issued events and its error rate
// (refused and failed over requested) since the start of today.
func (c *Console) todayCounts(ctx context.Context, id string) (int, float64, error) {
	evs, err := c.cfg.Store.Events(ctx, store.EventQuery{KioskID: id, From: startOfDay(c.now()), Limit: store.MaxEventLimit})
	if err != nil {
		return 0, 0, err
	}
	var issued, requested, failed int
	for _, e := range evs {
		switch e.Type {
		case store.EventIssued:
			issued++
		case store.EventRequested:
			requested++
		case store.EventRefused, store.EventFailed:
			failed++
		}
	}
	rate := 0.0
	if requested > 0 {
		rate = float64(failed) / float64(requested)
	}
	return issued, rate, nil
}

func (c *Console) row(ctx context.Context, k store.Kiosk) (kioskRow, error) {
	l, seen := c.cfg.Live.KioskLive(k.ID)
	n, rate, err := c.todayCounts(ctx, k.ID)
	if err != nil {
		return kioskRow{}, err
	}
	return kioskRow{Kiosk: k, Live: l, IssuedToday: n, ErrorRate: rate, Visit: needsVisit(k, l, seen, rate, c.now())}, nil
}

func (c *Console) kiosks(w http.ResponseWriter, r *http.Request, q *request) {
	v := r.URL.Query()
	kq := store.KioskQuery{IDPrefix: v.Get("id"), Chain: v.Get("chain"), Prefecture: v.Get("prefecture"),
		Region: v.Get("region"), Status: store.KioskStatus(v.Get("status")), After: v.Get("after"), Limit: 50}
	visit := v.Get("visit") == "1"
	if visit {
		// Candidates: kiosks whose live health says so (the center's view
		// since it started); offline ones are found on their own pages.
		for _, l := range c.cfg.Live.Live() {
			if l.Reader == "no-reader" || slices.Contains(printersNeedingVisit, l.Printer) || !l.Connected {
				kq.IDs = append(kq.IDs, l.KioskID)
			}
		}
		if len(kq.IDs) == 0 {
			kq.IDs = []string{"\x00none"}
		}
	}
	page, err := c.cfg.Store.QueryKiosks(r.Context(), kq)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	rows := make([]kioskRow, 0, len(page.Kiosks))
	for _, k := range page.Kiosks {
		row, err := c.row(r.Context(), k)
		if err != nil {
			c.fail(w, r, q, err)
			return
		}
		if visit && len(row.Visit) == 0 {
			continue
		}
		rows = append(rows, row)
	}
	next := ""
	if page.More && len(page.Kiosks) > 0 {
		next = page.Kiosks[len(page.Kiosks)-1].ID
	}
	filter := map[string]string{"id": kq.IDPrefix, "chain": kq.Chain, "prefecture": kq.Prefecture, "region": kq.Region, "status": string(kq.Status)}
	if visit {
		filter["visit"] = "1"
	}
	next2 := map[string]string{"after": next}
	for k, s := range filter {
		next2[k] = s
	}
	c.render(w, r, q, "kiosks", map[string]any{"Rows": rows, "Total": page.Total, "Next": next, "NextQuery": next2,
		"Filter": filter, "Visit": visit, "Connected": countConnected(c.cfg.Live.Live())})
}

func countConnected(ls []server.KioskLive) int {
	n := 0
	for _, l := range ls {
		if l.Connected {
			n++
		}
	}
	return n
}

func (c *Console) kiosk(w http.ResponseWriter, r *http.Request, q *request) {
	k, err := c.cfg.Store.Kiosk(r.Context(), r.PathValue("id"))
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	row, err := c.row(r.Context(), k)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	evs, err := c.cfg.Store.Events(r.Context(), store.EventQuery{KioskID: k.ID, From: startOfDay(c.now()), Descending: true, Limit: 100})
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	c.render(w, r, q, "kiosk", map[string]any{"Row": row, "Events": evs})
}

// enroll enrolls a kiosk and answers with its bundle (a ZIP of the files
// the kiosk agent's configuration names) as a download.
func (c *Console) enroll(w http.ResponseWriter, r *http.Request, q *request) {
	e := admin.KioskEnrollment{ID: r.PostFormValue("id"), StoreName: r.PostFormValue("store_name"), StoreCode: r.PostFormValue("store_code"),
		Chain: r.PostFormValue("chain"), Prefecture: r.PostFormValue("prefecture"), Region: r.PostFormValue("region")}
	en, err := c.cfg.Admin.EnrollKiosk(r.Context(), q.actor(r), e)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{admin.KioskKeyFile, en.KeyPEM}, {admin.KioskCertFile, en.CertPEM}, {admin.CenterCAFile, en.CenterCA}} {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: en.Kiosk.ID + "/" + f.name, Method: zip.Deflate, Modified: c.now()})
		if err == nil {
			_, err = fw.Write(f.data)
		}
		if err != nil {
			c.fail(w, r, q, err)
			return
		}
	}
	if err := zw.Close(); err != nil {
		c.fail(w, r, q, err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="kiosk-`+en.Kiosk.ID+`.zip"`)
	w.Write(buf.Bytes())
}

func (c *Console) kioskStatus(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	status := store.KioskStatus(r.PostFormValue("status"))
	reason := r.PostFormValue("reason")
	if status == store.KioskRevoked && !opauth.Allowed(q.op.Role, opauth.RevokeKiosks) {
		c.forbidden(w, r, q)
		return
	}
	if !confirmed(r) {
		question := map[store.KioskStatus]string{store.KioskSuspended: "suspend_question", store.KioskActive: "resume_question", store.KioskRevoked: "revoke_kiosk_q"}[status]
		if question == "" {
			c.fail(w, r, q, fmtErr("%w: status must be active, suspended or revoked", store.ErrInvalid))
			return
		}
		c.confirm(w, r, q, tr(q.lang, question)+" ("+id+")", map[string]string{"status": string(status), "reason": reason})
		return
	}
	if _, err := c.cfg.Admin.SetKioskStatus(r.Context(), q.actor(r), id, status, reason); err != nil {
		c.fail(w, r, q, err)
		return
	}
	http.Redirect(w, r, "/kiosks/"+id, http.StatusSeeOther)
}
