package pgrecords_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
	"github.com/kioskcert/kioskcert/center/internal/records/pgrecords"
	"github.com/kioskcert/kioskcert/center/internal/records/recordsbench"
	"github.com/kioskcert/kioskcert/center/internal/records/recordstest"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func openTemp(t testing.TB, opts pgrecords.Options) *pgrecords.Backend {
	t.Helper()
	// Generous: a loaded machine can take long to start a backend.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := pgrecords.Open(ctx, pgtest.NewDatabase(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	recordstest.Run(t, func(t *testing.T) records.Backend { return openTemp(t, pgrecords.Options{}) })
}

// With tiny batches every build, merge and drop crosses transaction
// boundaries many times.
func TestConformanceSmallBatches(t *testing.T) {
	recordstest.Run(t, func(t *testing.T) records.Backend { return openTemp(t, pgrecords.Options{Batch: 2}) })
}

// Migrations run once, are recorded in the records' own version table
// (apart from the store's), and a newer records schema is refused.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	b, err := pgrecords.Open(ctx, url, pgrecords.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = pgrecords.Open(ctx, url, pgrecords.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b.Close()
	var n, v int
	if err := b.Pool().QueryRow(ctx, "SELECT count(*), max(version) FROM records_schema_migrations").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != pgrecords.SchemaVersion() || v != pgrecords.SchemaVersion() {
		t.Errorf("records_schema_migrations has %d rows up to version %d, want %d", n, v, pgrecords.SchemaVersion())
	}
	var storeTable bool
	if err := b.Pool().QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&storeTable); err != nil || storeTable {
		t.Errorf("the records migrations created the store's version table: %v, %v", storeTable, err)
	}
	if _, err := b.Pool().Exec(ctx, "INSERT INTO records_schema_migrations (version, name) VALUES ($1, 'from_the_future.sql')", pgrecords.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := pgrecords.Open(ctx, url, pgrecords.Options{}); !errors.Is(err, pgrecords.ErrSchemaTooNew) {
		t.Fatalf("open a newer records schema: %v, want pgrecords.ErrSchemaTooNew", err)
	}
}

// Instances starting together migrate once.
func TestConcurrentMigrations(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			b, err := pgrecords.Open(ctx, url, pgrecords.Options{})
			if err == nil {
				b.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func newVault(t *testing.T, b records.Backend) *records.Vault {
	t.Helper()
	key := make([]byte, records.MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	master, err := records.NewMasterKey(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := records.Open(context.Background(), b, master, records.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// importLedger imports persons synthetic residents (generator seed seed)
// as the full ledger of recordsbench.Code.
func importLedger(t *testing.T, ctx context.Context, v *records.Vault, persons int, seed uint64) (records.ImportResult, error) {
	t.Helper()
	var csv bytes.Buffer
	if _, err := recordsbench.Generate(&csv, recordsbench.Code, 0, persons, seed); err != nil {
		t.Fatal(err)
	}
	return ledgercsv.Import(ctx, v, &csv, recordsbench.Code, "op-test", ledgercsv.Options{Mode: records.ModeFull, KeepPriority: true})
}

func checkLedger(t *testing.T, v *records.Vault, persons int, seed uint64) {
	t.Helper()
	for i := range persons {
		want := recordsbench.Person(recordsbench.Code, i, seed)
		got, err := v.Lookup(context.Background(), recordsbench.Code, want.MyNumber)
		if err != nil {
			t.Fatalf("person %d: %v", i, err)
		}
		if got.BirthDate != want.Record.BirthDate || len(got.Doses) != len(want.Record.Doses) {
			t.Fatalf("person %d: not the record of seed %d", i, seed)
		}
	}
}

func stagingTables(t *testing.T, b *pgrecords.Backend) int {
	t.Helper()
	var n int
	if err := b.Pool().QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'records_stage_%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// failingReader yields n bytes of r, then fails.
type failingReader struct {
	r io.Reader
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("the ledger's disk failed")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// A failed or cancelled import leaves the region on its previous
// generation, and its staging table goes.
func TestFailedImportKeepsPrevious(t *testing.T) {
	ctx := context.Background()
	b := openTemp(t, pgrecords.Options{Batch: 50})
	v := newVault(t, b)
	const persons = 300
	if _, err := importLedger(t, ctx, v, persons, 1); err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	if _, err := recordsbench.Generate(&csv, recordsbench.Code, 0, persons, 2); err != nil {
		t.Fatal(err)
	}
	_, err := ledgercsv.Import(ctx, v, &failingReader{&csv, csv.Len() / 2}, recordsbench.Code, "op-test", ledgercsv.Options{Mode: records.ModeFull, KeepPriority: true})
	if err == nil {
		t.Fatal("an import whose input failed succeeded")
	}
	checkLedger(t, v, persons, 1)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := importLedger(t, cctx, v, persons, 3); err == nil {
		t.Fatal("a cancelled import succeeded")
	}
	checkLedger(t, v, persons, 1)
	if err := v.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := stagingTables(t, b); n != 0 {
		t.Errorf("%d staging tables left after failed imports", n)
	}
	// And the next import goes through.
	if _, err := importLedger(t, ctx, v, persons, 4); err != nil {
		t.Fatal(err)
	}
	checkLedger(t, v, persons, 4)
}

// privateServer starts a server of the test's own (the shared one must
// not be stopped, nor its files scanned with other tests' data in them).
func privateServer(t *testing.T) (*pgtest.Server, string) {
	t.Helper()
	srv, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	url, err := srv.CreateDatabase(context.Background(), "records")
	if err != nil {
		t.Fatal(err)
	}
	return srv, url
}

// A database that cannot be reached is the store's "unavailable" (the
// kiosk retries), for lookups and imports alike, and the backend recovers
// once the server is back, without being reopened.
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	srv, url := privateServer(t)
	b, err := pgrecords.Open(ctx, url, pgrecords.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v := newVault(t, b)
	const persons = 20
	if _, err := importLedger(t, ctx, v, persons, 1); err != nil {
		t.Fatal(err)
	}
	someone := recordsbench.Person(recordsbench.Code, 3, 1).MyNumber
	if err := srv.StopServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Lookup(ctx, recordsbench.Code, someone); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("lookup with the database down: %v, want store.ErrUnavailable", err)
	}
	if _, err := b.Regions(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Regions with the database down: %v, want store.ErrUnavailable", err)
	}
	if _, err := b.BeginStaging(ctx, recordsbench.Code, time.Now()); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("BeginStaging with the database down: %v, want store.ErrUnavailable", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := v.Lookup(ctx, recordsbench.Code, someone)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookup after the restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkLedger(t, v, persons, 1)
}

// After synthetic residents are imported, no name, kana, roman name, My
// Number, resident number or birth date of theirs is anywhere in the
// PostgreSQL server's files (tables, indexes, WAL, logs), checkpointed:
// the database sees ciphertext and HMACs only. A canary written in clear
// shows the scan reads the files the rows land in.
func TestNoPlaintextInDatabaseFiles(t *testing.T) {
	ctx := context.Background()
	srv, url := privateServer(t)
	b, err := pgrecords.Open(ctx, url, pgrecords.Options{Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v := newVault(t, b)
	const persons = 400
	if _, err := importLedger(t, ctx, v, persons, 7); err != nil {
		t.Fatal(err)
	}
	// A changes import and a flag too: the overlay, the merge and the
	// updated rows.
	var changes bytes.Buffer
	w, err := ledgercsv.NewWriter(&changes, records.ModeChanges)
	if err != nil {
		t.Fatal(err)
	}
	for i := persons; i < persons+20; i++ {
		if err := w.Set(recordsbench.Person(recordsbench.Code, i, 7)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := ledgercsv.Import(ctx, v, &changes, recordsbench.Code, "op-test", ledgercsv.Options{Mode: records.ModeChanges, KeepPriority: true}); err != nil {
		t.Fatal(err)
	}
	const canary = "CANARY-試験-0123456789"
	if _, err := b.Pool().Exec(ctx, "CREATE TABLE canary (t text); INSERT INTO canary VALUES ('"+canary+"')"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pool().Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	needles := map[string]bool{canary: true}
	for i := range persons + 20 {
		e := recordsbench.Person(recordsbench.Code, i, 7)
		r := e.Record
		for _, s := range []string{e.MyNumber, r.Name, r.NameKana, r.RomanGiven, r.RomanFamily, r.ResidentNumber, r.BirthDate, r.PassportNumber} {
			if s != "" {
				needles[s] = true
			}
		}
	}
	found := map[string][]string{}
	var scanned int64
	err = filepath.WalkDir(srv.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned += int64(len(data))
		for s := range needles {
			if bytes.Contains(data, []byte(s)) {
				found[s] = append(found[s], path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found[canary]) == 0 {
		t.Fatalf("the canary written in clear is not in the %d bytes scanned: the scan misses the database's files", scanned)
	}
	delete(found, canary)
	for s, paths := range found {
		// Never print the value itself: say which kind it was.
		t.Errorf("a resident's value (%d bytes) is in clear in %v", len(s), paths)
	}
	t.Logf("scanned %d MiB of %s for %d values", scanned>>20, srv.Dir, len(needles)-1)
}

// Several instances' collectors may drop the same generation at once:
// all of them finish, and no record of it is left behind.
func TestConcurrentDrops(t *testing.T) {
	ctx := context.Background()
	b := openTemp(t, pgrecords.Options{Batch: 7})
	g, err := b.BeginStaging(ctx, "012041", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	run := make([]records.Staged, 500)
	for i := range run {
		run[i] = records.Staged{Key: []byte(fmt.Sprintf("key-%05d", i)), Value: []byte("sealed"), Ref: uint64(i + 1)}
	}
	if err := b.StageRun(ctx, g, records.RunRecords, run, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FinishStaging(ctx, g, records.Finish{Build: true}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- b.Drop(ctx, g) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var items, gens int
	if err := b.Pool().QueryRow(ctx, "SELECT (SELECT count(*) FROM records_items WHERE gen = $1), (SELECT count(*) FROM records_gens WHERE gen = $1)", int64(g)).Scan(&items, &gens); err != nil {
		t.Fatal(err)
	}
	if items != 0 || gens != 0 {
		t.Errorf("after concurrent drops: %d records and %d generation rows left", items, gens)
	}
	if n := stagingTables(t, b); n != 0 {
		t.Errorf("%d staging tables left", n)
	}
}
