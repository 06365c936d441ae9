package issuance

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestCheck: a check finds the record and says which kinds the resident
// can get, refuses as Issue would, and signs nothing.
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
			res, perr := f.svc.Check(context.Background(), CheckRequest{KioskID: goodKiosk, Check: protocol.Check{RequestID: rid, Municipality: tc.muni, Card: card}})
			if tc.code != "" {
				if code, _ := refusal.CodeOf(perr); perr == nil || code != tc.code {
					t.Fatalf("Check = %+v, %v; want %s", res, perr, tc.code)
				}
				if pe := refusal.Public(rid, perr); pe.RequestID != rid || pe.Code != tc.code {
					t.Errorf("the kiosk would get %+v", pe)
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
	if strings.Contains(f.log.String(), f.resident(t, "hanako").Name) {
		t.Error("the check's log holds the holder's name")
	}

	// Without a VDS-NC signer nobody can have the overseas kind.
	f2 := newFixture(t, withoutVDS)
	res, perr := f2.svc.Check(context.Background(), CheckRequest{KioskID: goodKiosk, Check: protocol.Check{RequestID: protocol.NewRequestID(), Municipality: asahikawa, Card: f2.card(t, "hanako", nil)}})
	if perr != nil || !slices.Equal(res.Kinds, []string{"domestic"}) {
		t.Errorf("without VDS: %+v, %v; want domestic only", res, perr)
	}
}
