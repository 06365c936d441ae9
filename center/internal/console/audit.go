package console

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// auditPageSize is how many events one audit page shows.
const auditPageSize = 100

// auditQuery reads the search form. Times are Japan time
// (YYYY-MM-DDTHH:MM, as datetime-local inputs send them). A municipality's
// staff are held to their municipality whatever they ask.
func auditQuery(r *http.Request, op *store.Operator) (store.EventQuery, map[string]string, error) {
	v := r.URL.Query()
	f := map[string]string{}
	for _, k := range []string{"from", "to", "kiosk", "municipality", "certificate", "result", "operator", "type"} {
		f[k] = v.Get(k)
	}
	if !opauth.Allowed(op.Role, opauth.ViewAll) {
		f["municipality"] = op.Municipality
	}
	q := store.EventQuery{KioskID: f["kiosk"], Municipality: f["municipality"], CertificateID: f["certificate"],
		Result: f["result"], Operator: f["operator"], Type: store.EventType(f["type"]), Descending: true}
	for _, b := range []struct {
		key string
		dst *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := f[b.key]; s != "" {
			t, err := time.ParseInLocation("2006-01-02T15:04", s, jst)
			if err != nil {
				if t, err = time.ParseInLocation(time.DateOnly, s, jst); err != nil {
					return q, f, fmt.Errorf("%w: %s must be a date and time (YYYY-MM-DDTHH:MM, Japan time)", store.ErrInvalid, b.key)
				}
			}
			*b.dst = t
		}
	}
	if a := v.Get("after"); a != "" {
		var ns int64
		var seq uint64
		if _, err := fmt.Sscanf(a, "%d.%d", &ns, &seq); err != nil {
			return q, f, fmt.Errorf("%w: after is not a page position", store.ErrInvalid)
		}
		q.After = store.EventPosition{Time: time.Unix(0, ns).UTC(), Seq: seq}
	}
	return q, f, nil
}

func position(e store.Event) string { return fmt.Sprintf("%d.%d", e.Time.UnixNano(), e.Seq) }

func (c *Console) audit(w http.ResponseWriter, r *http.Request, q *request) {
	eq, f, err := auditQuery(r, &q.op)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	eq.Limit = auditPageSize + 1
	evs, err := c.cfg.Store.Events(r.Context(), eq)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	next := map[string]string{}
	if len(evs) > auditPageSize {
		evs = evs[:auditPageSize]
		for k, s := range f {
			next[k] = s
		}
		next["after"] = position(evs[len(evs)-1])
	}
	c.render(w, r, q, "audit", map[string]any{"Events": evs, "Filter": f, "Next": next,
		"Types": eventTypes, "Locked": !opauth.Allowed(q.op.Role, opauth.ViewAll)})
}

var eventTypes = []store.EventType{store.EventRequested, store.EventIssued, store.EventRefused, store.EventFailed,
	store.EventPrinted, store.EventPrintFailed, store.EventPrintRefused, store.EventCancelled, store.EventKioskStatus,
	store.EventKioskEnrolled, store.EventMunicipalitySet, store.EventParticipation, store.EventRecordsImported,
	store.EventRecordsDeleted, store.EventKeyRotated, store.EventCertificateRevoke, store.EventOperatorLogin,
	store.EventOperatorLogout, store.EventOperatorAdded, store.EventOperatorChanged, store.EventAPITokenIssued,
	store.EventAPITokenRevoked, store.EventAuditExported, store.EventSettlementExport}

// auditCSV exports the search's events (up to store.MaxEventLimit),
// oldest first, read in pages.
func (c *Console) auditCSV(w http.ResponseWriter, r *http.Request, q *request) {
	eq, _, err := auditQuery(r, &q.op)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	eq.Descending, eq.After, eq.Limit = false, store.EventPosition{}, 1000
	if err := c.cfg.Admin.Audit(r.Context(), q.actor(r), store.Event{Type: store.EventAuditExported, Municipality: eq.Municipality, KioskID: eq.KioskID, CertificateID: eq.CertificateID, Result: "ok"}); err != nil {
		c.fail(w, r, q, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="audit-`+c.now().In(jst).Format("20060102-150405")+`.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"seq", "time", "type", "kiosk", "store", "municipality", "kind", "copies", "certificate_id", "request_id", "result", "latency_ms", "operator", "source", "object"})
	for total := 0; total < store.MaxEventLimit; {
		evs, err := c.cfg.Store.Events(r.Context(), eq)
		if err != nil {
			c.cfg.Log.Error("console: audit export", "err", err)
			return
		}
		for _, e := range evs {
			cw.Write([]string{strconv.FormatUint(e.Seq, 10), e.Time.In(jst).Format(time.RFC3339), string(e.Type), e.KioskID, e.StoreCode,
				e.Municipality, string(e.Kind), strconv.Itoa(e.Copies), e.CertificateID, e.RequestID, e.Result,
				strconv.FormatInt(e.Latency.Milliseconds(), 10), e.Operator, e.Source, e.Object})
		}
		total += len(evs)
		if len(evs) < eq.Limit {
			break
		}
		eq.After = evs[len(evs)-1].Position()
	}
	cw.Flush()
}
