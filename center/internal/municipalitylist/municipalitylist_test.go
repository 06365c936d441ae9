package municipalitylist

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/municipalities"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
)

func openStore(t *testing.T) *boltstore.Store {
	t.Helper()
	// With fsync, as an operator's import runs: the list is written in one
	// transaction (boltstore.UpsertMunicipalities).
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "center.db"), boltfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestImportShipped imports the shipped list over the demo's municipalities
// (one renamed by the operator) and checks what it keeps and adds.
func TestImportShipped(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for _, m := range []store.Municipality{
		{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa", AuthorityJa: "旭川市長", AuthorityEn: "The Mayor of Asahikawa", Participating: true,
			CounterJa: "市民課", CounterEn: "Citizens Division"},
		{Code: "112453", NameJa: "ふじみ野市", NameEn: "Fujimino City", AuthorityJa: "ふじみ野市長", AuthorityEn: "Mayor of Fujimino City"},
		// Renamed since the operator added it (a made-up old name).
		{Code: "011002", NameJa: "札幌村", NameEn: "Sapporo Village", AuthorityJa: "札幌村長", AuthorityEn: "Mayor of Sapporo Village", Participating: true},
		// Merged away: not in the list.
		{Code: "012017", NameJa: "合併町", NameEn: "Merged Town", AuthorityJa: "合併町長", AuthorityEn: "Mayor of Merged Town", Participating: true},
	} {
		if err := st.UpsertMunicipality(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	res, err := Import(ctx, st, bytes.NewReader(municipalities.ShippedCSV()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("imported %+v in %v", res, time.Since(start))
	if res.Added != 1741-3 || res.Updated != 3 || res.Skipped != 6 || len(res.Missing) != 1 || res.Missing[0] != "012017" {
		t.Errorf("result %+v, want 1738 added, 3 updated (kana and kind, or a new name), 6 skipped, 012017 missing", res)
	}
	all, err := st.ListMunicipalities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1742 {
		t.Errorf("%d municipalities in the store, want 1,741 + the merged one", len(all))
	}
	part, _ := st.ListParticipating(ctx)
	if got := len(part); got != 3 {
		t.Errorf("%d participating, want the 3 that were: an import never opts anyone in", got)
	}
	get := func(code string) store.Municipality {
		m, err := st.Municipality(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := get("012041"); m.NameEn != "Asahikawa" || m.AuthorityEn != "The Mayor of Asahikawa" || !m.Participating || m.Kana != "アサヒカワシ" || m.Kind != "city" ||
		m.CounterJa != "市民課" || m.CounterEn != "Citizens Division" {
		t.Errorf("Asahikawa = %+v: the operator's names, counter and participation must stay, kana and kind be added", m)
	}
	if m := get("011002"); m.NameJa != "札幌市" || m.NameEn != "Sapporo City" || m.AuthorityJa != "札幌市長" || !m.Participating || m.Kind != "designated_city" {
		t.Errorf("Sapporo = %+v: a renamed municipality gets the list's names, keeps participating", m)
	}
	if m := get("131016"); m.NameJa != "千代田区" || m.NameEn != "Chiyoda City" || m.AuthorityJa != "千代田区長" || m.Participating || m.Kind != "special_ward" {
		t.Errorf("Chiyoda = %+v", m)
	}
	if _, err := st.Municipality(ctx, "016951"); err == nil {
		t.Error("a Northern Territories village was imported")
	}

	// Again: nothing changes.
	res, err = Import(ctx, st, bytes.NewReader(municipalities.ShippedCSV()))
	if err != nil || res.Added != 0 || res.Updated != 0 || res.Unchanged != 1741 {
		t.Errorf("second import: %+v, %v; want all 1,741 unchanged", res, err)
	}
}

// oneByOne hides the store's batch write: the import then writes each
// municipality on its own.
type oneByOne struct{ Store }

// TestImportOneByOne: a store without batch writes gets the same result.
func TestImportOneByOne(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := Import(ctx, oneByOne{st}, bytes.NewReader(municipalities.ShippedCSV()))
	if err != nil || res.Added != 1741 {
		t.Fatalf("Import = %+v, %v; want 1,741 added", res, err)
	}
	if all, _ := st.ListMunicipalities(ctx); len(all) != 1741 {
		t.Errorf("%d municipalities stored", len(all))
	}
}

// TestImportRefusesBadList: a list with one bad row writes nothing.
func TestImportRefusesBadList(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	csv := string(municipalities.ShippedCSV())
	bad := strings.Replace(csv, "012041,01,北海道,ホッカイドウ,旭川市,アサヒカワシ,city", "012042,01,北海道,ホッカイドウ,旭川市,アサヒカワシ,city", 1)
	if bad == csv {
		t.Fatal("the test did not break the list")
	}
	_, err := Import(ctx, st, strings.NewReader(bad))
	if err == nil || !strings.Contains(err.Error(), "check digit") || !strings.Contains(err.Error(), "line ") {
		t.Fatalf("Import of a list with a bad check digit: %v, want an error naming the line", err)
	}
	if all, _ := st.ListMunicipalities(ctx); len(all) != 0 {
		t.Errorf("%d municipalities written from a bad list", len(all))
	}
}
