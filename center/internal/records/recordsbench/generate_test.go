package recordsbench

import (
	"bytes"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
)

// The generated ledger is valid as a whole (grouped, unique persons and
// resident numbers, valid records) and deterministic.
func TestGenerate(t *testing.T) {
	var a, b bytes.Buffer
	rows, err := Generate(&a, Code, 0, 500, 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(&b, Code, 0, 500, 7); err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("the generator is not deterministic (%v)", err)
	}
	entries, err := ledgercsv.Parse(bytes.NewReader(a.Bytes()), Code, ledgercsv.Options{})
	if err != nil {
		t.Fatalf("the generated ledger is rejected: %v", err)
	}
	doses := 0
	for _, e := range entries {
		doses += len(e.Record.Doses)
	}
	if len(entries) != 500 || doses != rows {
		t.Errorf("%d persons, %d doses; want 500 and %d", len(entries), doses, rows)
	}
	if avg := float64(rows) / 500; avg < 2.5 || avg > 3.7 {
		t.Errorf("%.2f doses per person; the benchmark assumes about 3", avg)
	}
	if d := dayString(365); d != "2022-02-17" {
		t.Errorf("dayString(365) = %s", d)
	}
}
