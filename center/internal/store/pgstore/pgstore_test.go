package pgstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgtest"
	"github.com/kioskcert/kioskcert/center/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func openTemp(t testing.TB, opts Options) *Store {
	t.Helper()
	// Generous: a loaded CI machine can take long to start a backend.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Open(ctx, pgtest.NewDatabase(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, Options{}) })
}

// The conformance suite again with one transaction per write, the mode
// the group commit is measured against.
func TestConformancePerCallTransactions(t *testing.T) {
	solo := false
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, Options{GroupCommit: &solo}) })
}

// Migrations run once, are recorded, and a database migrated by a newer
// build is refused.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	s, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A second open (another instance, a restart) applies nothing again.
	s, err = Open(ctx, url, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	var n, v int
	if err := s.pool.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || v != SchemaVersion() {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d", n, v, SchemaVersion())
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future.sql')", SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(ctx, url, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("open a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// A database at schema 1 (before the counter's names) keeps its
// municipalities through migration 2: they read back without a counter
// and take one when an operator gives it.
func TestMigrationCounterNames(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	s, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Back to schema 1, with a municipality written then.
	for _, q := range []string{
		"ALTER TABLE municipalities DROP COLUMN counter_ja, DROP COLUMN counter_en",
		"DELETE FROM schema_migrations WHERE version = 2",
		`INSERT INTO municipalities (code, name_ja, name_en, authority_ja, authority_en, participating, kana, kind)
			VALUES ('012041', '旭川市', 'Asahikawa City', '旭川市長', 'Mayor of Asahikawa City', true, 'アサヒカワシ', 'city')`,
	} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Close()
	if s, err = Open(ctx, url, Options{}); err != nil {
		t.Fatalf("migrate from schema 1: %v", err)
	}
	defer s.Close()
	m, err := s.Municipality(ctx, "012041")
	if err != nil {
		t.Fatal(err)
	}
	if m.NameJa != "旭川市" || !m.Participating || m.CounterJa != "" || m.CounterEn != "" {
		t.Fatalf("after migration: %+v, want the row kept without a counter", m)
	}
	m.CounterJa, m.CounterEn = "市民課", "Citizens Division"
	if err := s.UpsertMunicipality(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Municipality(ctx, "012041"); err != nil || got != m {
		t.Fatalf("Municipality = %+v, %v; want %+v", got, err, m)
	}
}

// Instances starting together migrate once.
func TestConcurrentMigrations(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := Open(ctx, url, Options{})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
}

// Two stores on one database are two center instances: a request claimed
// through one is registered for the other, whichever claims first.
func TestInstancesShareRegister(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	a, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	at := time.Date(2024, 4, 1, 9, 0, 0, 0, time.UTC)
	const n = 50
	wins := make(chan int, 2*n)
	for i, s := range []*Store{a, b} {
		go func() {
			won := 0
			for j := range n {
				r := storetest.NewRequest("req-"+string(rune('a'+j%26))+string(rune('a'+j/26)), "kiosk-a", at)
				_, err := s.ClaimRequest(ctx, r, time.Time{}, store.Event{Time: at, Type: store.EventRequested, KioskID: "kiosk-a", RequestID: r.ID})
				switch {
				case err == nil:
					won++
				case !errors.Is(err, store.ErrExists):
					t.Errorf("instance %d: %v", i, err)
				}
			}
			wins <- won
		}()
	}
	if total := <-wins + <-wins; total != n {
		t.Errorf("%d claims won across two instances, want %d", total, n)
	}
	evs, err := a.Events(ctx, store.EventQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Errorf("%d requested events, want %d (one per winning claim)", len(evs), n)
	}
}

// A change committed through one instance reaches another's watcher; a
// watcher that lost its connection resyncs.
func TestWatchChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := openTemp(t, Options{})
	b, err := Open(ctx, a.url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	changes := make(chan store.Change, 16)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.WatchChanges(wctx, func(c store.Change) { changes <- c }) }()
	next := func() store.Change {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-ctx.Done():
			t.Fatal("no change notification")
		}
		return store.Change{}
	}
	if c := next(); c.Kind != store.ChangeResync {
		t.Fatalf("first change %+v, want resync", c)
	}
	if err := a.EnrollKiosk(ctx, storetest.NewKiosk("w")); err != nil {
		t.Fatal(err)
	}
	if err := a.SetKioskStatus(ctx, "kiosk-w", store.KioskSuspended, "investigation", time.Now()); err != nil {
		t.Fatal(err)
	}
	if c := next(); c != (store.Change{Kind: store.ChangeKiosk, ID: "kiosk-w"}) {
		t.Errorf("change %+v, want kiosk kiosk-w", c)
	}
	// A refused change notifies nobody: the transaction rolled back.
	if err := a.SetKioskStatus(ctx, "kiosk-w", "lost", "x", time.Now()); err == nil {
		t.Fatal("bad status accepted")
	}
	if err := a.SetParticipation(ctx, "011002", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetParticipation unknown: %v", err)
	}
	m := store.Municipality{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City", AuthorityJa: "旭川市長", AuthorityEn: "Mayor of Asahikawa City"}
	if err := a.UpsertMunicipality(ctx, m); err != nil {
		t.Fatal(err)
	}
	if c := next(); c != (store.Change{Kind: store.ChangeMunicipality, ID: "012041"}) {
		t.Errorf("change %+v, want municipality 012041", c)
	}
	// Kill the watcher's connection: it reconnects and resyncs.
	if _, err := a.pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.Kind != store.ChangeResync {
		t.Errorf("after the connection was killed: %+v, want resync", c)
	}
	if err := a.SetKioskStatus(ctx, "kiosk-w", store.KioskActive, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if c := next(); c != (store.Change{Kind: store.ChangeKiosk, ID: "kiosk-w"}) {
		t.Errorf("change after reconnect %+v", c)
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("WatchChanges returned %v, want context.Canceled", err)
	}
}

// With the database down, writes fail with store.ErrUnavailable (never a
// silent success), and the same store works again once it is back.
func TestUnavailable(t *testing.T) {
	srv, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url, err := srv.CreateDatabase(ctx, "center")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2024, 4, 1, 9, 0, 0, 0, time.UTC)
	ev := store.Event{Time: at, Type: store.EventPrinted, Municipality: "012041", Copies: 1}
	if _, err := s.AppendEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if err := srv.StopServer(); err != nil {
		t.Fatal(err)
	}
	_, err = s.AppendEvent(ctx, ev)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AppendEvent with the database down: %v, want ErrUnavailable", err)
	}
	_, err = s.ClaimRequest(ctx, storetest.NewRequest("req-down", "kiosk-a", at), time.Time{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ClaimRequest with the database down: %v, want ErrUnavailable", err)
	}
	_, err = s.Kiosk(ctx, "kiosk-a")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Kiosk with the database down: %v, want ErrUnavailable", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendEvent(ctx, ev); err != nil {
		t.Errorf("AppendEvent after the restart: %v", err)
	}
	counts, err := s.DailyCounts(ctx, "2024-04-01", "2024-04-01")
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 1 || counts[0].Events != 2 {
		t.Errorf("counts after the restart %+v, want the two committed events", counts)
	}
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM requests").Scan(&n); err != nil || n != 0 {
		t.Errorf("requests after a failed claim: %d (%v), want 0", n, err)
	}
}
