package backend

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/recordsbench"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgtest"
	"github.com/kioskcert/kioskcert/center/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The config's store picks the implementation; an existing center.json
// without "store" keeps its bbolt file.
func TestOpenPicksStore(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		store   func(t *testing.T) string
		records string
		// recordsFile: the records are in the bbolt file records.db.
		recordsFile bool
		check       func(t *testing.T, b *Backend)
	}{
		{"default bolt", func(*testing.T) string { return "" }, "", true, func(t *testing.T, b *Backend) {
			if _, ok := b.Store.(*boltstore.Store); !ok {
				t.Errorf("store is %T, want bbolt", b.Store)
			}
		}},
		{"bolt path", func(*testing.T) string { return "bolt:other.db" }, "", true, func(t *testing.T, b *Backend) {
			if _, ok := b.Store.(*boltstore.Store); !ok {
				t.Errorf("store is %T, want bbolt", b.Store)
			}
		}},
		{"postgres", func(t *testing.T) string { return pgtest.NewDatabase(t) }, "", false, func(t *testing.T, b *Backend) {
			if _, ok := b.Store.(*pgstore.Store); !ok {
				t.Errorf("store is %T, want PostgreSQL", b.Store)
			}
			var n int
			if err := b.Store.(*pgstore.Store).Pool().QueryRow(context.Background(), "SELECT count(*) FROM records_meta").Scan(&n); err != nil || n != 1 {
				t.Errorf("records metadata rows in PostgreSQL: %d, %v; want 1", n, err)
			}
		}},
		{"postgres store, bolt records", func(t *testing.T) string { return pgtest.NewDatabase(t) }, "bolt", true, func(t *testing.T, b *Backend) {
			var exists bool
			if err := b.Store.(*pgstore.Store).Pool().QueryRow(context.Background(), "SELECT to_regclass('records_meta') IS NOT NULL").Scan(&exists); err != nil || exists {
				t.Errorf("records tables in PostgreSQL with bolt records: %v, %v", exists, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := config.Default()
			cfg.Store, cfg.Records = tc.store(t), tc.records
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			cfg.SetDir(dir)
			if err := os.MkdirAll(cfg.Path(cfg.KeysDir), 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := records.GenerateMasterKeyFile(cfg.Path(cfg.MasterKeyFile)); err != nil {
				t.Fatal(err)
			}
			b, err := Open(ctx, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			tc.check(t, b)
			if err := b.Store.EnrollKiosk(ctx, storetest.NewKiosk("b")); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Records.Counts(ctx); err != nil {
				t.Fatal(err)
			}
			if kind, loc := cfg.StoreLocation(); kind == config.StoreBolt && filepath.Dir(loc) != dir {
				t.Errorf("bbolt store at %s, want it in the center's directory", loc)
			}
			if _, err := os.Stat(cfg.Path(cfg.RecordsFile)); (err == nil) != tc.recordsFile {
				t.Errorf("records file: %v; want it to exist: %v", err, tc.recordsFile)
			}
		})
	}
}

// Two backends on one PostgreSQL database (two center instances) share
// the records: what is imported through one is looked up through the
// other, and a replacement through the second is seen by the first.
func TestInstancesShareRecords(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	dir := t.TempDir()
	var bs []*Backend
	for i := range 2 {
		cfg := config.Default()
		cfg.Store = url
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		cfg.SetDir(dir)
		if i == 0 {
			if err := os.MkdirAll(cfg.Path(cfg.KeysDir), 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := records.GenerateMasterKeyFile(cfg.Path(cfg.MasterKeyFile)); err != nil {
				t.Fatal(err)
			}
		}
		b, err := Open(ctx, &cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		bs = append(bs, b)
	}
	const persons = 40
	importLedger := func(b *Backend, seed uint64) {
		t.Helper()
		var csv bytes.Buffer
		if _, err := recordsbench.Generate(&csv, recordsbench.Code, 0, persons, seed); err != nil {
			t.Fatal(err)
		}
		res, err := b.Records.ImportCSV(ctx, recordsbench.Code, "op-test", records.ModeFull, "", &csv)
		if err != nil || res.Persons != persons {
			t.Fatalf("import: %+v, %v", res, err)
		}
	}
	check := func(b *Backend, seed uint64) {
		t.Helper()
		for i := range persons {
			want := recordsbench.Person(recordsbench.Code, i, seed)
			got, err := b.Records.Lookup(ctx, recordsbench.Code, want.MyNumber)
			if err != nil {
				t.Fatalf("person %d: %v", i, err)
			}
			if got.BirthDate != want.Record.BirthDate || len(got.Doses) != len(want.Record.Doses) {
				t.Fatalf("person %d: another record than the one imported", i)
			}
		}
	}
	importLedger(bs[0], 1)
	check(bs[1], 1)
	importLedger(bs[1], 2)
	check(bs[0], 2)
	counts, err := bs[0].Records.Counts(ctx)
	if err != nil || len(counts) != 1 || counts[0].Records != persons {
		t.Errorf("counts through the first instance: %+v, %v", counts, err)
	}
}
