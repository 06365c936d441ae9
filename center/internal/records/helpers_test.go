package records

import (
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
)

const (
	asahikawa = "012041"
	sapporo   = "011002"
	fujimino  = "112453"
	operator  = "op-tanaka"
)

var fixedNow = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func randomMaster(t testing.TB) *MasterKey {
	t.Helper()
	b := make([]byte, MasterKeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	k, err := NewMasterKey(b)
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

// newVault opens a vault on a fresh database file with a random master key.
func newVault(t testing.TB) (*Vault, *bolt.DB, *MasterKey) {
	t.Helper()
	db := openDB(t, filepath.Join(t.TempDir(), "records.db"))
	master := randomMaster(t)
	v, err := Open(db, master, Options{Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	return v, db, master
}

// demoEntries is the demo ledger of one municipality. (ledgercsv.FromDemo
// does the same with the ledger's product wording; records cannot import
// it without a cycle.)
func demoEntries(t testing.TB, code string) []Entry {
	t.Helper()
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	var out []Entry
	for _, res := range d.Residents {
		for _, rec := range res.Records {
			if rec.Municipality != code {
				continue
			}
			r := Record{
				Municipality: code, ResidentNumber: rec.ResidentNumber, TicketNumber: rec.TicketNumber,
				Name: res.Name, NameKana: res.NameKana, RomanFamily: res.RomanFamily, RomanGiven: res.RomanGiven,
				BirthDate: res.BirthDate, Sex: res.Sex, Nationality: res.Nationality, PassportNumber: res.PassportNumber,
			}
			for _, d := range rec.Doses {
				r.Doses = append(r.Doses, Dose{Number: d.Number, Date: d.Date, Product: d.Product, Manufacturer: "テスト製薬", Lot: d.Lot, VaccineType: "mRNAワクチン"})
			}
			out = append(out, Entry{MyNumber: res.MyNumber, Record: r})
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

func importDemo(t testing.TB, v *Vault, codes ...string) {
	t.Helper()
	for _, code := range codes {
		if _, err := v.Import(t.Context(), code, operator, demoEntries(t, code)); err != nil {
			t.Fatalf("import %s: %v", code, err)
		}
	}
}
