// Package pgmigrate runs numbered, embedded SQL migrations against
// PostgreSQL, for each part of the center that keeps tables there (the
// store, pgstore; the records, pgrecords). Each part has its own list and
// its own version table, so their numbers never collide, and all of them
// migrate under one advisory lock, so instances starting together neither
// race nor interleave.
//
// A database whose schema is newer than the build knows is refused with
// ErrSchemaTooNew: an older binary must not write to a schema it does not
// understand (roll the binary forward, or restore the database).
package pgmigrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgerr"
)

// ErrSchemaTooNew means the database was migrated by a newer build.
var ErrSchemaTooNew = errors.New("the database schema is newer than this build knows; run the newer center binary, or restore a backup made for this version")

// Lock is the advisory lock key (an arbitrary constant) every migration
// runs under.
const Lock = 0x6b696f736b63

// Set is one part's migrations: the files Dir/NNNN_name.sql of FS,
// numbered 1, 2, 3…, and the table recording the applied ones.
type Set struct {
	// Name prefixes error messages ("pgstore").
	Name  string
	FS    fs.FS
	Dir   string
	Table string
}

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// List returns the set's migrations in order, checking their numbering.
func (s Set) List() ([]Migration, error) {
	entries, err := fs.ReadDir(s.FS, s.Dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("%s: migration %s is not named NNNN_name.sql", s.Name, e.Name())
		}
		b, err := fs.ReadFile(s.FS, path.Join(s.Dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{v, e.Name(), string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("%s: migrations are not numbered 1, 2, 3…: %s", s.Name, m.Name)
		}
	}
	return out, nil
}

// Version is the newest schema version the set knows.
func (s Set) Version() int {
	ms, _ := s.List()
	return len(ms)
}

// Run applies the missing migrations in order, each in a transaction that
// also records it in the set's table, under the advisory lock.
func (s Set) Run(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := s.List()
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("%s: connecting to the database: %w", s.Name, pgerr.Unavailable(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(Lock)); err != nil {
		return fmt.Errorf("%s: taking the migration lock: %w", s.Name, pgerr.Unavailable(err))
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(Lock))
	table := pgx.Identifier{s.Table}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("%s: creating %s: %w", s.Name, s.Table, pgerr.Unavailable(err))
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+table).Scan(&current); err != nil {
		return fmt.Errorf("%s: reading the schema version: %w", s.Name, pgerr.Unavailable(err))
	}
	if current > len(ms) {
		return fmt.Errorf("%s: %w (database: version %d, this build: version %d)", s.Name, ErrSchemaTooNew, current, len(ms))
	}
	for _, m := range ms[current:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+table+" (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: migration %s: %w", s.Name, m.Name, pgerr.Unavailable(err))
		}
	}
	return nil
}
