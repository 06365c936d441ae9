package issuance

import (
	"context"
	"slices"
	"testing"

	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestCheck: a check finds the record and says which kinds the resident
// can get, refuses as Issue would, signs nothing, and leaves one audit
// event without personal data.
func TestCheck(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		resident string
		muni     string
		edit     func(*carddata.FourItems)
		kinds    []string
		code     protocol.Code
	}{
		{"passport on record", "hanako", asahikawa, nil, []string{"domestic", "overseas"}, ""},
		{"no passport", "takasaki", asahikawa, nil, []string{"domestic"}, ""},
		{"wrong municipality", "hanako", sapporo, nil, nil, protocol.CodeNoRecord},
		{"no record anywhere", "norecord", asahikawa, nil, nil, protocol.CodeNoRecord},
		{"not participating", "hanako", fujimino, nil, nil, protocol.CodeNotParticipating},
		{"unknown municipality", "hanako", "131016", nil, nil, protocol.CodeUnknownMunicipality},
		{"another holder", "hanako", asahikawa, func(fi *carddata.FourItems) { fi.BirthDate = "19990101" }, nil, protocol.CodeHolderMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rid := protocol.NewRequestID()
			card := f.card(t, tc.resident, tc.edit)
			before := len(f.audit.all())
			res, perr := f.svc.Check(context.Background(), CheckRequest{KioskID: goodKiosk, Check: protocol.Check{RequestID: rid, Municipality: tc.muni, Card: card}})
			evs := f.audit.all()[before:]
			if len(evs) != 1 || evs[0].Type != EventChecked || evs[0].RequestID != rid || evs[0].Municipality != tc.muni {
				t.Fatalf("audit events %+v, want one checked event", evs)
			}
			if tc.code != "" {
				if perr == nil || perr.Code != tc.code || perr.RequestID != rid {
					t.Fatalf("Check = %+v, %v; want %s for this request", res, perr, tc.code)
				}
				if evs[0].Result != string(tc.code) {
					t.Errorf("audit result %q, want %s", evs[0].Result, tc.code)
				}
				return
			}
			if perr != nil {
				t.Fatalf("Check: %v", perr)
			}
			if res.RequestID != rid || res.CardDigest != protocol.CardDigest(card) || !slices.Equal(res.Kinds, tc.kinds) {
				t.Errorf("Check = %+v, want kinds %v bound to the request and card", res, tc.kinds)
			}
			if _, err := protocol.Encode(*res); err != nil {
				t.Errorf("the answer does not encode: %v", err)
			}
		})
	}
	if n := f.shc.count(); n != 0 {
		t.Errorf("a check signed %d SMART Health Cards", n)
	}
	for _, ev := range f.audit.all() {
		if err := ev.Validate(); err != nil {
			t.Errorf("audit event %+v: %v", ev, err)
		}
	}

	// Without a VDS-NC signer nobody can have the overseas kind.
	f2 := newFixture(t, withoutVDS)
	res, perr := f2.svc.Check(context.Background(), CheckRequest{KioskID: goodKiosk, Check: protocol.Check{RequestID: protocol.NewRequestID(), Municipality: asahikawa, Card: f2.card(t, "hanako", nil)}})
	if perr != nil || !slices.Equal(res.Kinds, []string{"domestic"}) {
		t.Errorf("without VDS: %+v, %v; want domestic only", res, perr)
	}
}
