package console

import (
	"encoding/csv"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// settlementRange reads the period: a month (YYYY-MM, default this month)
// or a day (YYYY-MM-DD), and the municipality and chain filters (a
// municipality's staff are held to their own).
func (c *Console) settlementRange(r *http.Request, op *store.Operator) (store.SettlementQuery, string, error) {
	v := r.URL.Query()
	q := store.SettlementQuery{Municipality: v.Get("municipality"), Chain: v.Get("chain")}
	if !opauth.Allowed(op.Role, opauth.ViewAll) {
		q.Municipality = op.Municipality
	}
	if day := v.Get("day"); day != "" {
		q.FirstDay, q.LastDay = day, day
		return q, "day", nil
	}
	month := v.Get("month")
	if month == "" {
		month = store.SettlementDay(c.now())[:7]
	}
	first, err := time.ParseInLocation("2006-01", month, jst)
	if err != nil {
		return q, "", fmt.Errorf("%w: month must be YYYY-MM", store.ErrInvalid)
	}
	q.FirstDay, q.LastDay, q.Monthly = first.Format(time.DateOnly), first.AddDate(0, 1, -1).Format(time.DateOnly), true
	return q, "month", nil
}

// settlementSum is a total of issuances, copies and fees.
type settlementSum struct {
	Key, Name string
	Issuances int64
	Copies    int64
	Fee       int64
}

func (s *settlementSum) add(c store.SettlementCount, feePerCopy int) {
	s.Issuances += c.Issuances
	s.Copies += c.Issuances * int64(c.Copies)
	s.Fee += c.Issuances * int64(c.Copies) * int64(feePerCopy)
}

type settlementView struct {
	Kind           string // day or month
	Query          store.SettlementQuery
	Total          settlementSum
	ByMunicipality []*settlementSum
	ByChain        []*settlementSum
	Rows           []store.SettlementCount
	FeePerCopy     int
	Month, Day     string
	// CounterOnly counts the residents sent to the counter in the period,
	// by reason: only in one municipality's view (Query.Municipality set),
	// never across municipalities.
	CounterOnly []counterReason
}

// counterReason is how many residents were sent to the counter for one
// reason (store.CounterOnlyReason).
type counterReason struct {
	Reason string
	Count  int64
}

func (c *Console) settlementData(r *http.Request, q *request) (*settlementView, error) {
	sq, kind, err := c.settlementRange(r, &q.op)
	if err != nil {
		return nil, err
	}
	rows, err := c.cfg.Store.SettlementCounts(r.Context(), sq)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	ms, err := c.cfg.Store.ListMunicipalities(r.Context())
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		names[m.Code] = m.NameJa
		if q.lang == "en" {
			names[m.Code] = m.NameEn
		}
	}
	v := &settlementView{Kind: kind, Query: sq, Rows: rows, FeePerCopy: c.cfg.FeePerCopyYen, Month: sq.FirstDay[:7], Day: sq.FirstDay}
	byM, byC := map[string]*settlementSum{}, map[string]*settlementSum{}
	for _, row := range rows {
		v.Total.add(row, c.cfg.FeePerCopyYen)
		if byM[row.Municipality] == nil {
			byM[row.Municipality] = &settlementSum{Key: row.Municipality, Name: names[row.Municipality]}
		}
		byM[row.Municipality].add(row, c.cfg.FeePerCopyYen)
		if byC[row.Chain] == nil {
			byC[row.Chain] = &settlementSum{Key: row.Chain}
		}
		byC[row.Chain].add(row, c.cfg.FeePerCopyYen)
	}
	for _, s := range byM {
		v.ByMunicipality = append(v.ByMunicipality, s)
	}
	for _, s := range byC {
		v.ByChain = append(v.ByChain, s)
	}
	byKey := func(a, b *settlementSum) int { return strings.Compare(a.Key, b.Key) }
	slices.SortFunc(v.ByMunicipality, byKey)
	slices.SortFunc(v.ByChain, byKey)
	if sq.Municipality != "" {
		if v.CounterOnly, err = c.counterOnly(r, sq); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// counterOnly counts one municipality's counter_only refusals of the
// period by reason, from the audit log's daily counts.
func (c *Console) counterOnly(r *http.Request, sq store.SettlementQuery) ([]counterReason, error) {
	counts, err := c.cfg.Store.DailyCounts(r.Context(), sq.FirstDay, sq.LastDay)
	if err != nil {
		return nil, err
	}
	by := map[string]int64{}
	for _, d := range counts {
		if reason, ok := store.CounterOnlyReason(d.Type); ok && d.Municipality == sq.Municipality {
			by[reason] += d.Events
		}
	}
	out := []counterReason{}
	for _, reason := range slices.Sorted(maps.Keys(by)) {
		out = append(out, counterReason{Reason: reason, Count: by[reason]})
	}
	return out, nil
}

func (c *Console) settlement(w http.ResponseWriter, r *http.Request, q *request) {
	v, err := c.settlementData(r, q)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	c.render(w, r, q, "settlement", v)
}

// settlementReport is the monthly report for one municipality or one
// chain, to print or send.
func (c *Console) settlementReport(w http.ResponseWriter, r *http.Request, q *request) {
	v, err := c.settlementData(r, q)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	c.render(w, r, q, "report", v)
}

// SettlementCSVHeader is the first row of the settlement CSV.
var SettlementCSVHeader = []string{"period", "municipality", "municipality_name", "chain", "kind", "copies_per_issuance", "issuances", "copies", "fee_yen"}

func (c *Console) settlementCSV(w http.ResponseWriter, r *http.Request, q *request) {
	v, err := c.settlementData(r, q)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	if err := c.cfg.Admin.Audit(r.Context(), q.actor(r), store.Event{Type: store.EventSettlementExport, Municipality: v.Query.Municipality, Result: "ok"}); err != nil {
		c.fail(w, r, q, err)
		return
	}
	names := map[string]string{}
	for _, m := range v.ByMunicipality {
		names[m.Key] = m.Name
	}
	name := "settlement-" + v.Month
	if v.Kind == "day" {
		name = "settlement-" + v.Day
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
	cw := csv.NewWriter(w)
	cw.Write(SettlementCSVHeader)
	for _, row := range v.Rows {
		copies := row.Issuances * int64(row.Copies)
		cw.Write([]string{row.Period, row.Municipality, names[row.Municipality], row.Chain, string(row.Kind), strconv.Itoa(row.Copies),
			strconv.FormatInt(row.Issuances, 10), strconv.FormatInt(copies, 10), strconv.FormatInt(copies*int64(c.cfg.FeePerCopyYen), 10)})
	}
	cw.Flush()
}
