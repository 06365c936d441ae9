package records_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/records"
)

// Each flag travels through an import and a lookup, and through SetFlag,
// ClearFlag and lookup, with one operations-log entry per change that
// holds no personal data.
func TestFlagsSetClearLookup(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	entries := demoEntries(t, asahikawa)
	taro := entries[1] // 7 doses, the last on 2023-10-20
	entries[1].Record.Flags = records.Flags{CounterOnly: records.CounterAliasOnRecord}
	entries[2].Record.Flags = records.Flags{DeceasedOn: "2024-02-10"}
	entries[3].Record.Flags = records.Flags{MovedOutOn: "2023-12-31"}
	if _, err := v.Import(ctx, asahikawa, entries, full()); err != nil {
		t.Fatal(err)
	}
	for i, want := range []records.Flags{{}, {CounterOnly: records.CounterAliasOnRecord}, {DeceasedOn: "2024-02-10"}, {MovedOutOn: "2023-12-31"}} {
		got, err := v.Lookup(ctx, asahikawa, entries[i].MyNumber)
		if err != nil || got.Flags != want {
			t.Errorf("entry %d: flags %+v, %v; want %+v", i, got.Flags, err, want)
		}
	}

	hanako := entries[0].MyNumber
	tests := []struct {
		name   string
		change records.FlagChange
		want   records.Flags
		reason string
	}{
		{"counter only, support measure", records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterSupportMeasure},
			records.Flags{CounterOnly: records.CounterSupportMeasure, ByOperator: 1}, "support_measure"},
		{"counter only, travel document", records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterTravelDocument},
			records.Flags{CounterOnly: records.CounterTravelDocument, ByOperator: 1}, "travel_document"},
		{"counter only, staff review", records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterStaffReview},
			records.Flags{CounterOnly: records.CounterStaffReview, ByOperator: 1}, "staff_review"},
		{"deceased", records.FlagChange{Kind: records.FlagDeceased, Date: "2024-04-01"},
			records.Flags{DeceasedOn: "2024-04-01", ByOperator: 2}, "deceased"},
		{"moved out", records.FlagChange{Kind: records.FlagMovedOut, Date: "2024-04-01"},
			records.Flags{MovedOutOn: "2024-04-01", ByOperator: 4}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			op, err := v.SetFlag(ctx, asahikawa, hanako, operator, tc.change)
			if err != nil {
				t.Fatal(err)
			}
			if op.Kind != records.OpFlagSet || op.Flag != tc.change.Kind || op.Operator != operator || op.Municipality != asahikawa || len(op.RecordRef) != 16 || op.Records != 1 {
				t.Errorf("log entry %+v", op)
			}
			got, err := v.Lookup(ctx, asahikawa, hanako)
			if err != nil || got.Flags != tc.want {
				t.Errorf("flags %+v, %v; want %+v", got.Flags, err, tc.want)
			}
			reason, counter := got.Flags.CounterOnlyReason()
			if reason != tc.reason || counter != (tc.reason != "") {
				t.Errorf("CounterOnlyReason = %q, %v; want %q", reason, counter, tc.reason)
			}
			op, err = v.ClearFlag(ctx, asahikawa, hanako, operator, tc.change.Kind)
			if err != nil {
				t.Fatal(err)
			}
			if op.Kind != records.OpFlagClear || op.Flag != tc.change.Kind {
				t.Errorf("clear log entry %+v", op)
			}
			got, _ = v.Lookup(ctx, asahikawa, hanako)
			if got.Flags != (records.Flags{}) {
				t.Errorf("flags after ClearFlag %+v", got.Flags)
			}
			if _, err := v.ClearFlag(ctx, asahikawa, hanako, operator, tc.change.Kind); !errors.Is(err, records.ErrFlagNotSet) {
				t.Errorf("second ClearFlag: %v, want ErrFlagNotSet", err)
			}
		})
	}
	// Clearing a flag the ledger set works too.
	if _, err := v.ClearFlag(ctx, asahikawa, entries[2].MyNumber, operator, records.FlagDeceased); err != nil {
		t.Errorf("ClearFlag of a ledger flag: %v", err)
	}

	refusals := []struct {
		name string
		code string
		mn   string
		op   string
		c    records.FlagChange
		want error
	}{
		{"no operator", asahikawa, hanako, "", records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterStaffReview}, records.ErrInvalidOperator},
		{"bad My Number", asahikawa, hanako[:11] + "x", operator, records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterStaffReview}, records.ErrBadMyNumber},
		{"no record", asahikawa, demoResident(t, "norecord").MyNumber, operator, records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterStaffReview}, records.ErrNoRecord},
		{"no region", fujimino, hanako, operator, records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterStaffReview}, records.ErrNoRegion},
		{"counter only without reason", asahikawa, hanako, operator, records.FlagChange{Kind: records.FlagCounterOnly}, records.ErrInvalidRecord},
		{"deceased without date", asahikawa, hanako, operator, records.FlagChange{Kind: records.FlagDeceased}, records.ErrInvalidRecord},
		{"deceased before the last dose", asahikawa, taro.MyNumber, operator, records.FlagChange{Kind: records.FlagDeceased, Date: "2022-01-01"}, records.ErrInvalidRecord},
		{"unknown flag", asahikawa, hanako, operator, records.FlagChange{Kind: 9}, records.ErrInvalidRecord},
	}
	for _, tc := range refusals {
		if _, err := v.SetFlag(ctx, tc.code, tc.mn, tc.op, tc.c); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// The log holds codes, counts, operators and pseudonymous references:
	// no personal value.
	log, err := v.Log(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(log)
	for _, e := range entries {
		for _, secret := range []string{e.MyNumber, e.Record.Name, e.Record.ResidentNumber, "support_measure", "alias_on_record"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("operations log holds a personal value or a counter reason: %s", raw)
			}
		}
	}
	if len(log) != 1+2*len(tests)+1 {
		t.Errorf("log has %d entries", len(log))
	}
}

// Flags an operator set survive imports of the person (full and changes);
// flags the ledger set follow the ledger.
func TestOperatorFlagsSurviveImports(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	entries := demoEntries(t, asahikawa)
	entries[2].Record.Flags = records.Flags{MovedOutOn: "2024-01-01"} // from the ledger
	if _, err := v.Import(ctx, asahikawa, entries, full()); err != nil {
		t.Fatal(err)
	}
	hanako := entries[0].MyNumber
	if _, err := v.SetFlag(ctx, asahikawa, hanako, operator, records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterSupportMeasure}); err != nil {
		t.Fatal(err)
	}
	plain := demoEntries(t, asahikawa) // no flags at all
	plain[0].Record.Flags = records.Flags{CounterOnly: records.CounterStaffReview, DeceasedOn: "2024-03-01"}
	for _, opts := range []records.ImportOptions{full(), changes()} {
		if _, err := v.Import(ctx, asahikawa, plain, opts); err != nil {
			t.Fatal(err)
		}
		got, _ := v.Lookup(ctx, asahikawa, hanako)
		want := records.Flags{CounterOnly: records.CounterSupportMeasure, DeceasedOn: "2024-03-01", ByOperator: 1}
		if got.Flags != want {
			t.Errorf("%s import: flags %+v, want %+v (the operator's counter-only kept, the ledger's deceased taken)", opts.Mode, got.Flags, want)
		}
		got, _ = v.Lookup(ctx, asahikawa, entries[2].MyNumber)
		if got.Flags != (records.Flags{}) {
			t.Errorf("%s import: a ledger flag the new ledger dropped is still set: %+v", opts.Mode, got.Flags)
		}
	}
	// An operator flag the new ledger contradicts (a dose after the date
	// of death) rejects the import and names the entry.
	if _, err := v.SetFlag(ctx, asahikawa, entries[3].MyNumber, operator, records.FlagChange{Kind: records.FlagDeceased, Date: "2023-01-01"}); err != nil {
		t.Fatal(err)
	}
	later := demoEntries(t, asahikawa)
	ichiro := &later[3].Record
	ichiro.Doses = append(ichiro.Doses, records.Dose{Number: 5, Date: "2023-06-01", Product: "comirnaty", Manufacturer: "テスト製薬", Lot: "LOT5", VaccineType: "mRNAワクチン"})
	_, err := v.Import(ctx, asahikawa, later, full())
	var rej *records.RejectedError
	if !errors.As(err, &rej) || len(rej.Problems) != 1 || rej.Problems[0].Ref != 4 || rej.Problems[0].Problem.Field != "flags.deceasedOn" {
		t.Fatalf("Import against an operator's flag: %v", err)
	}
}

func TestFlagNames(t *testing.T) {
	for k := records.FlagCounterOnly; k <= records.FlagMovedOut; k++ {
		got, err := records.ParseFlagKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseFlagKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := records.ParseFlagKind("dead"); err == nil {
		t.Error("ParseFlagKind accepted an unknown name")
	}
	for r := records.CounterSupportMeasure; r <= records.CounterStaffReview; r++ {
		got, err := records.ParseCounterReason(r.String())
		if err != nil || got != r {
			t.Errorf("ParseCounterReason(%q) = %v, %v", r.String(), got, err)
		}
	}
	if r, err := records.ParseCounterReason(""); err != nil || r != records.NotCounterOnly {
		t.Errorf(`ParseCounterReason("") = %v, %v`, r, err)
	}
	if _, err := records.ParseCounterReason("dv"); err == nil {
		t.Error("ParseCounterReason accepted an unknown reason")
	}
}
