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
// do not race (package pgmigrate, shared with the records' own tables). A database whose schema is newer than this build knows is
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
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgerr"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Errors.
var (
	// ErrSchemaTooNew means the database was migrated by a newer build.
	ErrSchemaTooNew = pgmigrate.ErrSchemaTooNew
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

// schema is the store's migrations (see pgmigrate).
var schema = pgmigrate.Set{Name: "pgstore", FS: migrationFiles, Dir: "migrations", Table: "schema_migrations"}

// SchemaVersion is the newest schema this build knows.
func SchemaVersion() int { return schema.Version() }

func migrate(ctx context.Context, pool *pgxpool.Pool) error { return schema.Run(ctx, pool) }

func unavailable(err error) error { return pgerr.Unavailable(err) }

func isUnavailable(err error) bool { return pgerr.IsUnavailable(err) }

func isRetryable(err error) bool { return pgerr.IsRetryable(err) }

func isUniqueViolation(err error, constraint string) bool {
	return pgerr.IsUniqueViolation(err, constraint)
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
