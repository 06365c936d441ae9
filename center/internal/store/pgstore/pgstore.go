// Package pgstore implements store.Store on PostgreSQL (github.com/jackc/pgx
// with a pgxpool), so several center instances can share one store: the
// request register's primary key makes a request ID issue at most once
// across all of them, and every state change commits with its audit
// events in one transaction.
//
// # Schema and migrations
//
// The schema is a numbered list of embedded SQL files (migrations/NNNN_*.sql).
// Open applies the missing ones in order, each in a transaction recorded in
// schema_migrations, under an advisory lock so instances starting together
// do not race. A database whose schema is newer than this build knows is
// refused with ErrSchemaTooNew: an older binary must not write to a schema
// it does not understand (roll the binary forward, or restore the database).
// Identifier columns use COLLATE "C" so lists come back in byte order
// whatever the database's default collation.
//
// # Group commit
//
// The writes on the issuance path (audit events, request claims, finishes
// and settlements) are queued for a committer that runs everything queued
// since its last commit in one transaction: one commit (one WAL flush) for
// many callers, each acknowledged only once that commit returned. While a
// commit is in flight the next batch gathers, so a lone caller waits for no
// timer. A batch's events take their sequence numbers and hashes (the
// audit log is a hash chain, store.ChainHash) under the lock of the
// chain's head row, held to the commit, so the chain has no holes and
// follows commit order across every instance; they are inserted in one
// statement. Settlement counters are summed per batch and upserted in key
// order after the head (no deadlock between batches), into one of several
// shards per counter.
//
// Refusals inside a batch (a request already claimed, a settlement already
// recorded) are results, not errors, so they never abort the batch; if a
// batch fails for another reason each of its operations is retried alone,
// so one bad operation fails only its caller. A batch that fails because
// the database is unreachable fails every caller with store.ErrUnavailable:
// nothing is acknowledged that was not committed.
//
// Options.GroupCommit false runs each write in its own transaction instead;
// docs/BENCHMARKS.md has the measurement that chose the default.
//
// # Change notifications
//
// Kiosk status, municipality and signing key changes send a NOTIFY on the
// channel "kioskcert_changes" in the transaction that makes them, delivered
// to every instance's WatchChanges (store.Notifier) when it commits.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Errors.
var (
	// ErrSchemaTooNew means the database was migrated by a newer build.
	ErrSchemaTooNew = errors.New("pgstore: the database schema is newer than this build knows; run the newer center binary, or restore a backup made for this version")
	errClosed       = errors.New("pgstore: store is closed")
)

// Options tunes Open.
type Options struct {
	// GroupCommit batches the issuance path's writes (see the package
	// documentation). Default (nil): on.
	GroupCommit *bool
	// MaxBatch caps the operations in one group commit (default 256).
	MaxBatch int
	// WriteTimeout bounds one transaction of the committer (default 10s).
	WriteTimeout time.Duration
}

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
	pool   *pgxpool.Pool
	url    string
	group  *committer
	closed atomic.Bool
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Notifier = (*Store)(nil)
)

// Open connects to the database at url (postgres://… or a key=value
// connection string; pool_max_conns and the other pgxpool parameters
// apply), runs the migrations and starts the committer.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connection string: %w", err)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "kioskcert-center"
	// Every session's times are UTC; scans are converted anyway.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, url: url}
	if opts.GroupCommit == nil || *opts.GroupCommit {
		s.group = newCommitter(pool, opts.MaxBatch, opts.WriteTimeout)
	} else {
		s.group = newSoloCommitter(pool, opts.WriteTimeout)
	}
	return s, nil
}

// Close stops the committer (failing writes still queued) and closes the
// pool.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.group.close()
	s.pool.Close()
	return nil
}

// Pool returns the connection pool, for components that keep their own
// tables in the same database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("pgstore: migration %s is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{v, e.Name(), string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("pgstore: migrations are not numbered 1, 2, 3…: %s", m.name)
		}
	}
	return out, nil
}

// SchemaVersion is the newest schema this build knows.
func SchemaVersion() int {
	ms, _ := migrations()
	return len(ms)
}

// migrationLock is the advisory lock key (an arbitrary constant) that
// serialises migrations between instances starting together.
const migrationLock = 0x6b696f736b63

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: connecting to the database: %w", unavailable(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLock)); err != nil {
		return fmt.Errorf("pgstore: taking the migration lock: %w", err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(migrationLock))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("pgstore: creating schema_migrations: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("pgstore: reading the schema version: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("%w (database: version %d, this build: version %d)", ErrSchemaTooNew, current, len(ms))
	}
	for _, m := range ms[current:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("pgstore: migration %s: %w", m.name, err)
		}
	}
	return nil
}

// unavailable marks errors that mean the database cannot be reached (or is
// shutting down) with store.ErrUnavailable, so the center answers
// "unavailable" and the kiosk retries.
//
// A deadline reaching here is the store's own (the committer's write
// timeout, a connect timeout): callers' cancelled contexts are answered
// with the context's error before. A database that hangs is unavailable.
func unavailable(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.Canceled) {
		return err
	}
	if isUnavailable(err) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

func isUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutdown, crash, cannot connect now
			pgErr.Code == "53300", // too many connections
			pgErr.Code == "25006": // read-only transaction: a standby, not the primary
			return true
		}
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connErr), errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	}
	// pgxpool reports its closed pool only by this text.
	return errors.Is(err, pgconn.ErrConnClosed) || strings.Contains(err.Error(), "closed pool")
}

// isRetryable reports a deadlock or serialisation failure: the transaction
// may simply run again.
func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (constraint == "" || pgErr.ConstraintName == constraint)
}

// wrap adds the package prefix and the unavailable mark.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("pgstore: %s: %w", what, unavailable(err))
}

// tx runs fn in a transaction (with retries on deadlock or serialisation
// failure).
func (s *Store) tx(ctx context.Context, what string, fn func(pgx.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	var err error
	for range 3 {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if !isRetryable(err) {
			break
		}
	}
	return s.result(ctx, what, err)
}

// result turns an error into what callers see: sentinel errors pass
// through, a cancelled context is the context's error, others get the
// prefix.
func (s *Store) result(ctx context.Context, what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExists), errors.Is(err, store.ErrInvalid),
		errors.Is(err, store.ErrTransition), errors.Is(err, store.ErrSettled):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return wrap(what, err)
}

// utc converts a scanned time to UTC (the zero time stays zero).
func utc(t *time.Time) time.Time {
	if t == nil || t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// iterCheckEvery is how many rows a scan loop reads between context checks.
const iterCheckEvery = 256

// collect scans every row with scan, checking ctx as it goes.
func collect[T any](ctx context.Context, rows pgx.Rows, scan func(pgx.Rows, *T) error) ([]T, error) {
	defer rows.Close()
	var out []T
	n := 0
	for rows.Next() {
		if n++; n%iterCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		var v T
		if err := scan(rows, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
