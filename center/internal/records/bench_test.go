package records

import (
	"fmt"
	"testing"

	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

// syntheticEntries makes n distinct valid persons with 3 doses each.
func syntheticEntries(t testing.TB, n int) []Entry {
	t.Helper()
	out := make([]Entry, n)
	for i := range out {
		mn, err := mynumber.Complete(fmt.Sprintf("9%010d", i))
		if err != nil {
			t.Fatal(err)
		}
		r := Record{
			Municipality: asahikawa, ResidentNumber: fmt.Sprintf("%010d", i+1), TicketNumber: fmt.Sprintf("012041%07d", i),
			Name: "試験　花子", NameKana: "シケン　ハナコ", RomanFamily: "SHIKEN", RomanGiven: "HANAKO",
			BirthDate: "1985-04-02", Sex: "2", Nationality: "JPN", PassportNumber: "TK1234567",
		}
		for d := 1; d <= 3; d++ {
			r.Doses = append(r.Doses, Dose{Number: d, Date: fmt.Sprintf("2021-0%d-14", d+4), Product: "comirnaty", Manufacturer: "ファイザー", Lot: "FA5765", VaccineType: "mRNAワクチン"})
		}
		out[i] = Entry{MyNumber: mn, Record: r}
	}
	return out
}

// BenchmarkLookup measures Vault.Lookup of an existing record in a region of
// 10,000 records: My Number check, HMAC, bbolt read, AES-GCM open, JSON
// decode.
func BenchmarkLookup(b *testing.B) {
	v, _, _ := newVault(b)
	entries := syntheticEntries(b, 10000)
	if _, err := v.Import(b.Context(), asahikawa, operator, entries); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := v.Lookup(ctx, asahikawa, entries[i%len(entries)].MyNumber); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := v.Lookup(ctx, asahikawa, entries[i%len(entries)].MyNumber); err != nil {
					b.Error(err)
					return
				}
				i += 7
			}
		})
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		absent := demoResident(b, "norecord").MyNumber
		for b.Loop() {
			if _, err := v.Lookup(ctx, asahikawa, absent); err == nil {
				b.Fatal("found a record for a resident without one")
			}
		}
	})
}
