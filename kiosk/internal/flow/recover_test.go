package flow_test

import (
	"slices"
	"testing"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestRecoverableRefusals: no record in the municipality chosen takes the
// resident back to the municipality screen, and no passport data offers the
// domestic kind; the card is read once (one PIN entry) either way. With a
// center that answers checks both are known before kind and copies; with an
// older one they come back from the issue request.
func TestRecoverableRefusals(t *testing.T) {
	for _, check := range []bool{true, false} {
		name := "check"
		if !check {
			name = "issue"
		}
		t.Run(name+"/wrong municipality", func(t *testing.T) {
			r := newRig(t, flow.Timeouts{})
			if !check {
				r.center.WithoutCheck()
			}
			res, _ := r.play(t, "hanako", headless.Resident{Municipality: "011002", Municipalities: []string{"012041"}})
			if err := res.Must(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Notices, []string{string(protocol.CodeNoRecord)}) || len(res.TriesShown) != 1 {
				t.Errorf("notices %v, PIN screens %d; want one no_record notice and one PIN entry", res.Notices, len(res.TriesShown))
			}
			wantChecks := []string{"011002", "012041"}
			if !check {
				wantChecks = nil
			}
			if got := r.center.Checks(); !slices.Equal(got, wantChecks) {
				t.Errorf("checks %v, want %v", got, wantChecks)
			}
			lastCheck := -1
			for i, st := range res.States {
				if st == flow.StateChecking {
					lastCheck = i
				}
			}
			if check && slices.Index(res.States, flow.StateKind) < lastCheck {
				t.Errorf("states %v: kind chosen before the municipality was checked", res.States)
			}
		})
		t.Run(name+"/no passport", func(t *testing.T) {
			r := newRig(t, flow.Timeouts{})
			if !check {
				r.center.WithoutCheck()
			}
			res, _ := r.play(t, "takasaki", headless.Resident{Kind: certificate.Overseas, Copies: 2, TakeDomestic: true})
			if err := res.Must(); err != nil {
				t.Fatal(err)
			}
			jobs := r.printer.Jobs()
			if len(jobs) != 1 || jobs[0].Copies != 2 {
				t.Fatalf("jobs %+v, want one of 2 copies", jobs)
			}
			copiesScreens := 0
			for _, s := range res.States {
				if s == flow.StateCopies {
					copiesScreens++
				}
			}
			if copiesScreens != 1 {
				t.Errorf("states %v: the copies screen came %d times, want once (kept after the refusal)", res.States, copiesScreens)
			}
			if !check && !slices.Equal(res.Notices, []string{"domestic_offer"}) {
				t.Errorf("notices %v, want the domestic offer", res.Notices)
			}
		})
	}
	t.Run("too many wrong municipalities", func(t *testing.T) {
		r := newRig(t, flow.Timeouts{})
		res, _ := r.play(t, "hanako", headless.Resident{Municipality: "011002"})
		if res.Printed || res.Error == nil || res.Error.Code != string(protocol.CodeNoRecord) {
			t.Fatalf("printed %v, error %+v; want the session to end with no_record", res.Printed, res.Error)
		}
		if n := len(r.center.Checks()); n != 5 {
			t.Errorf("%d checks, want 5", n)
		}
	})
	t.Run("refused kind declined", func(t *testing.T) {
		r := newRig(t, flow.Timeouts{})
		res, _ := r.play(t, "takasaki", headless.Resident{Kind: certificate.Overseas})
		if res.Printed || res.Error == nil || res.Error.Code != string(protocol.CodePassportRequired) {
			t.Fatalf("printed %v, error %+v; want passport_required shown on the kind screen", res.Printed, res.Error)
		}
	})
}
