package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// TestSettlementCounterOnly: a municipality's settlement page counts the
// residents sent to its counter by reason; the page across municipalities
// shows no reasons.
func TestSettlementCounterOnly(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2024, 4, 10, 3, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for i, e := range []struct{ muni, typ string }{
		{"012041", "counter_only.support_measure"}, {"012041", "counter_only.support_measure"},
		{"012041", "counter_only.alias_on_card"}, {"011002", "counter_only.deceased"}, {"012041", "refused"},
	} {
		if _, err := st.AppendEvent(ctx, store.Event{Time: now.Add(time.Duration(i) * time.Second), Type: store.EventType(e.typ),
			KioskID: "K1", StoreCode: "S1", Municipality: e.muni, Kind: certificate.Domestic, Copies: 1,
			RequestID: fmt.Sprintf("%032x", i+1), Result: "counter_only"}); err != nil {
			t.Fatal(err)
		}
	}
	c := &Console{cfg: Config{Store: st, FeePerCopyYen: 120, Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := c.parseTemplates(); err != nil {
		t.Fatal(err)
	}
	page := func(op store.Operator, lang, query string) string {
		t.Helper()
		w := httptest.NewRecorder()
		c.settlement(w, httptest.NewRequest("GET", "/settlement"+query, nil), &request{op: op, lang: lang})
		if w.Code != 200 {
			t.Fatalf("settlement%s: HTTP %d", query, w.Code)
		}
		return w.Body.String()
	}
	asahikawa := store.Operator{ID: "op-asahikawa", Role: store.RoleMunicipality, Municipality: "012041"}
	got := page(asahikawa, "en", "?month=2024-04")
	for _, want := range []string{
		"Sent to the counter, by reason",
		`<tr data-reason="alias_on_card"><td>Former name or alias on the card</td><td class="num">1</td></tr>`,
		`<tr data-reason="support_measure"><td>Support measure (DV and similar)</td><td class="num">2</td></tr>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Asahikawa's page lacks %q", want)
		}
	}
	if strings.Contains(got, "deceased") {
		t.Error("Asahikawa's page counts another municipality's residents")
	}
	if ja := page(asahikawa, "ja", "?month=2024-04"); !strings.Contains(ja, "窓口へご案内した件数（理由別）") || !strings.Contains(ja, "支援措置（DV等）") {
		t.Error("the Japanese page lacks the counts by reason")
	}
	// Staff looking at one municipality see its counts; across
	// municipalities there are none by reason.
	staff := store.Operator{ID: "op-staff", Role: store.RoleAdministrator}
	if p := page(staff, "en", "?month=2024-04&municipality=011002"); !strings.Contains(p, `<tr data-reason="deceased">`) || strings.Contains(p, "support_measure") {
		t.Error("Sapporo's view shows the wrong reasons")
	}
	if p := page(staff, "en", "?month=2024-04"); strings.Contains(p, "by reason") || strings.Contains(p, "data-reason") {
		t.Error("the page across municipalities shows reasons")
	}
	// The monthly report a municipality receives carries the same counts;
	// a chain's report none.
	report := func(op store.Operator, query string) string {
		t.Helper()
		w := httptest.NewRecorder()
		c.settlementReport(w, httptest.NewRequest("GET", "/settlement/report"+query, nil), &request{op: op, lang: "en"})
		if w.Code != 200 {
			t.Fatalf("report%s: HTTP %d", query, w.Code)
		}
		return w.Body.String()
	}
	if p := report(asahikawa, "?month=2024-04"); !strings.Contains(p, `<tr data-reason="support_measure"><td>Support measure (DV and similar)</td><td class="num">2</td></tr>`) || strings.Contains(p, "deceased") {
		t.Error("Asahikawa's monthly report lacks its counts by reason, or shows another's")
	}
	if p := report(staff, "?month=2024-04&chain=S1"); strings.Contains(p, "data-reason") {
		t.Error("a chain's monthly report shows reasons")
	}
}
