package records_test

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/boltrecords"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

const (
	asahikawa = "012041"
	sapporo   = "011002"
	fujimino  = "112453"
	operator  = "op-tanaka"
)

var fixedNow = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func randomMaster(t testing.TB) *records.MasterKey {
	t.Helper()
	b := make([]byte, records.MasterKeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	k, err := records.NewMasterKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openDB(t testing.TB, path string) *bolt.DB {
	t.Helper()
	db, err := boltfile.Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newBackend(t testing.TB, db *bolt.DB) *boltrecords.Backend {
	t.Helper()
	b, err := boltrecords.New(db)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newVault opens a vault on a fresh database file with a random master key.
func newVault(t testing.TB) (*records.Vault, *boltrecords.Backend, *records.MasterKey) {
	t.Helper()
	b := newBackend(t, openDB(t, filepath.Join(t.TempDir(), "records.db")))
	master := randomMaster(t)
	v, err := records.Open(t.Context(), b, master, records.Options{Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	return v, b, master
}

func full() records.ImportOptions {
	return records.ImportOptions{Operator: operator, Mode: records.ModeFull}
}

func changes() records.ImportOptions {
	return records.ImportOptions{Operator: operator, Mode: records.ModeChanges}
}

// demoEntries is the demo ledger of one municipality. (demoledger.FromDemo
// does the same with the ledger's product wording; records cannot import
// it without a cycle.)
func demoEntries(t testing.TB, code string) []records.Entry {
	t.Helper()
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	var out []records.Entry
	for _, res := range d.Residents {
		for _, rec := range res.Records {
			if rec.Municipality != code {
				continue
			}
			r := records.Record{
				Municipality: code, ResidentNumber: rec.ResidentNumber, TicketNumber: rec.TicketNumber,
				Name: res.Name, NameKana: res.NameKana, RomanFamily: res.RomanFamily, RomanGiven: res.RomanGiven,
				BirthDate: res.BirthDate, Sex: res.Sex, Nationality: res.Nationality, PassportNumber: res.PassportNumber,
			}
			for _, d := range rec.Doses {
				r.Doses = append(r.Doses, records.Dose{Number: d.Number, Date: d.Date, Product: d.Product, Manufacturer: "テスト製薬", Lot: d.Lot, VaccineType: "mRNAワクチン"})
			}
			out = append(out, records.Entry{MyNumber: res.MyNumber, Record: r})
		}
	}
	if len(out) == 0 {
		t.Fatalf("no demo entries for %s", code)
	}
	return out
}

func demoResident(t testing.TB, id string) demo.Resident {
	t.Helper()
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Resident(id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func importDemo(t testing.TB, v *records.Vault, codes ...string) {
	t.Helper()
	for _, code := range codes {
		if _, err := v.Import(t.Context(), code, demoEntries(t, code), full()); err != nil {
			t.Fatalf("import %s: %v", code, err)
		}
	}
}

// syntheticEntries makes n distinct valid persons with 3 doses each,
// numbered from first.
func syntheticEntries(t testing.TB, first, n int) []records.Entry {
	t.Helper()
	out := make([]records.Entry, n)
	for i := range out {
		id := first + i
		mn, err := mynumber.Complete(fmt.Sprintf("9%010d", id))
		if err != nil {
			t.Fatal(err)
		}
		r := records.Record{
			Municipality: asahikawa, ResidentNumber: fmt.Sprintf("%010d", id+1), TicketNumber: fmt.Sprintf("012041%07d", id),
			Name: "試験　花子", NameKana: "シケン　ハナコ", RomanFamily: "SHIKEN", RomanGiven: "HANAKO",
			BirthDate: "1985-04-02", Sex: "2", Nationality: "JPN", PassportNumber: "TK1234567",
		}
		for d := 1; d <= 3; d++ {
			r.Doses = append(r.Doses, records.Dose{Number: d, Date: fmt.Sprintf("2021-0%d-14", d+4), Product: "comirnaty", Manufacturer: "ファイザー", Lot: "FA5765", VaccineType: "mRNAワクチン"})
		}
		out[i] = records.Entry{MyNumber: mn, Record: r}
	}
	return out
}
