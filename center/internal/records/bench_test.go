package records_test

import (
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/records"
)

// BenchmarkLookup measures Vault.Lookup of an existing record in a region of
// 10,000 records: My Number check, HMAC, bbolt read, AES-GCM open, decode.
func BenchmarkLookup(b *testing.B) {
	v, _, _ := newVault(b)
	entries := syntheticEntries(b, 0, 10000)
	if _, err := v.Import(b.Context(), asahikawa, entries, full()); err != nil {
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

// BenchmarkImport measures a full import of 20,000 persons (60,000 doses)
// through the job API: validation, HMAC, lookup of the records replaced,
// encoding, sealing, sorted runs, the merge into a generation, promotion.
// recordsbench runs the city-sized import; this is the quick figure.
func BenchmarkImport(b *testing.B) {
	entries := syntheticEntries(b, 0, 20000)
	for b.Loop() {
		b.StopTimer()
		v, _, _ := newVault(b)
		b.StartTimer()
		if _, err := v.Import(b.Context(), asahikawa, entries, full()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*60000)/b.Elapsed().Seconds(), "doses/s")
}

// BenchmarkEncodeRecord measures the compact encoding of a three-dose
// person, and reports its size.
func BenchmarkEncodeRecord(b *testing.B) {
	r := syntheticEntries(b, 0, 1)[0].Record
	var n int
	for b.Loop() {
		n = len(records.EncodeRecord(&r))
	}
	b.ReportMetric(float64(n), "bytes")
}
