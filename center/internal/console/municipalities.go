package console

import (
	"net/http"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

type municipalityRow struct {
	store.Municipality
	Records    int
	HasRegion  bool
	LastImport time.Time
}

// municipalities lists municipalities (a municipality's staff see their
// own only), with record counts per region and the last ledger import.
func (c *Console) municipalities(w http.ResponseWriter, r *http.Request, q *request) {
	ms, err := c.cfg.Store.ListMunicipalities(r.Context())
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	counts, err := c.cfg.Admin.RecordCounts(r.Context())
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	records := map[string]int{}
	for _, rc := range counts {
		records[rc.Municipality] = rc.Records
	}
	// The last import of each municipality: one indexed read of the
	// import events, newest first.
	imports, err := c.cfg.Store.Events(r.Context(), store.EventQuery{Type: store.EventRecordsImported, Descending: true, Limit: store.MaxEventLimit})
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	last := map[string]time.Time{}
	for _, e := range imports {
		if _, ok := last[e.Municipality]; !ok {
			last[e.Municipality] = e.Time
		}
	}
	filter := strings.TrimSpace(r.URL.Query().Get("q"))
	var rows []municipalityRow
	for _, m := range ms {
		if !opauth.CanView(&q.op, m.Code) {
			continue
		}
		if filter != "" && !strings.HasPrefix(m.Code, filter) && !strings.Contains(m.NameJa, filter) && !strings.Contains(strings.ToLower(m.NameEn), strings.ToLower(filter)) {
			continue
		}
		n, has := records[m.Code]
		rows = append(rows, municipalityRow{Municipality: m, Records: n, HasRegion: has, LastImport: last[m.Code]})
	}
	jobs, err := c.importRows(r, q)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	c.render(w, r, q, "municipalities", map[string]any{"Rows": rows, "Query": filter, "Kinds": c.cfg.Kinds, "MaxCopies": c.cfg.MaxCopies, "Imports": jobs})
}

// importRow is an import job as the municipalities page shows it.
type importRow struct {
	admin.ImportJob
	Phase         string
	Rows, Persons int64
	Percent       int // of the current phase's work; -1 unknown
	Left          string
}

// importRows lists this instance's import jobs the operator may see
// (running ones and the last that ended), newest first.
func (c *Console) importRows(r *http.Request, q *request) ([]importRow, error) {
	jobs, err := c.cfg.Admin.ImportJobs(r.Context())
	if err != nil {
		return nil, err
	}
	var out []importRow
	for _, j := range jobs {
		if !opauth.CanView(&q.op, j.Municipality) {
			continue
		}
		row := importRow{ImportJob: j, Phase: string(j.State), Percent: -1}
		if p := j.Progress; p != nil {
			if p.Phase != "" {
				row.Phase = string(p.Phase)
			}
			row.Rows, row.Persons = p.Rows, p.Persons
			if st := p.Status(); st.Total > 0 {
				row.Percent = int(st.Done * 100 / st.Total)
			}
		}
		if j.SecondsLeft >= 0 && !j.State.Finished() {
			row.Left = (time.Duration(j.SecondsLeft) * time.Second).String()
		}
		out = append(out, row)
	}
	return out, nil
}

// cancelImport cancels an import job after confirmation; the records stay
// as they were.
func (c *Console) cancelImport(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	j, err := c.cfg.Admin.ImportJobStatus(r.Context(), id)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	if !opauth.CanView(&q.op, j.Municipality) {
		c.fail(w, r, q, opauth.ErrNoPermission)
		return
	}
	if !confirmed(r) {
		c.confirm(w, r, q, tr(q.lang, "import_cancel_q")+" ("+j.Municipality+", "+id+")", nil)
		return
	}
	if _, err := c.cfg.Admin.CancelImport(r.Context(), q.actor(r), id); err != nil {
		c.fail(w, r, q, err)
		return
	}
	http.Redirect(w, r, "/municipalities?q="+j.Municipality, http.StatusSeeOther)
}

func (c *Console) participation(w http.ResponseWriter, r *http.Request, q *request) {
	code := r.PathValue("code")
	on := r.PostFormValue("participating") == "true"
	if !confirmed(r) {
		question := "participation_off_q"
		if on {
			question = "participation_on_q"
		}
		c.confirm(w, r, q, tr(q.lang, question)+" ("+code+")", map[string]string{"participating": r.PostFormValue("participating")})
		return
	}
	if err := c.cfg.Admin.SetParticipation(r.Context(), q.actor(r), code, on); err != nil {
		c.fail(w, r, q, err)
		return
	}
	http.Redirect(w, r, "/municipalities?q="+code, http.StatusSeeOther)
}
