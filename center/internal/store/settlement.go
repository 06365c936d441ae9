package store

import (
	"fmt"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// SettlementQuery selects settlement counts: the printed issuances (events
// of type EventPrinted, the kiosk's report that paper came out and was
// paid for) of the settlement days FirstDay to LastDay inclusive
// (YYYY-MM-DD, Japan time, as SettlementDay gives them).
type SettlementQuery struct {
	FirstDay, LastDay string
	// Monthly sums the days of each month into one period "YYYY-MM"
	// instead of one period per day.
	Monthly bool
	// Municipality and Chain, when set, select only that municipality or
	// store chain.
	Municipality string
	Chain        string
}

// SettlementCount is the number of printed issuances of one period,
// municipality, store chain, kind and number of copies. The fee owed is
// Issuances × Copies × the fee per copy.
type SettlementCount struct {
	// Period is the settlement day (YYYY-MM-DD) or, for a monthly query,
	// the month (YYYY-MM).
	Period       string `json:"period"`
	Municipality string `json:"municipality"`
	// Chain is the store chain the printing kiosk was enrolled with; ""
	// when the event names no kiosk or one the store does not know.
	Chain  string           `json:"chain"`
	Kind   certificate.Kind `json:"kind"`
	Copies int              `json:"copies"`
	// Issuances is how many printed events had these values.
	Issuances int64 `json:"issuances"`
}

// Validate checks the query.
func (q *SettlementQuery) Validate() error {
	first, err := ParseDay(q.FirstDay)
	if err != nil {
		return err
	}
	last, err := ParseDay(q.LastDay)
	if err != nil {
		return err
	}
	if last.Before(first) {
		return invalid("settlement.lastDay", "is before firstDay")
	}
	if q.Municipality != "" {
		if err := lgcode.Validate(q.Municipality); err != nil {
			return fmt.Errorf("%w: settlement.municipality: %w", ErrInvalid, err)
		}
	}
	if q.Chain != "" && !isIdent(q.Chain, 64) {
		return invalid("settlement.chain", "must be 1-64 characters of [A-Za-z0-9._:-]")
	}
	return nil
}

// SettlementPeriod returns the period of a settlement day for q: the day,
// or its month for a monthly query.
func (q *SettlementQuery) SettlementPeriod(day string) string {
	if q.Monthly && len(day) >= 7 {
		return day[:7]
	}
	return day
}

// CompareSettlement orders settlement counts as every store returns them:
// by period, municipality, chain, kind, then copies.
func CompareSettlement(a, b SettlementCount) int {
	switch {
	case a.Period != b.Period:
		return cmpString(a.Period, b.Period)
	case a.Municipality != b.Municipality:
		return cmpString(a.Municipality, b.Municipality)
	case a.Chain != b.Chain:
		return cmpString(a.Chain, b.Chain)
	case a.Kind != b.Kind:
		return cmpString(string(a.Kind), string(b.Kind))
	}
	return a.Copies - b.Copies
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
