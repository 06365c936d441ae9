// Package pgrecords is the records backend on PostgreSQL (pgx with a
// pgxpool): it implements records.Backend, so several center instances
// share one set of vaccination records, and an import made through one
// instance is what every instance looks up.
//
//	backend, err := pgrecords.Open(ctx, "postgres://center@db/kioskcert", pgrecords.Options{})
//	vault, err := records.Open(ctx, backend, master, records.Options{})
//
// PostgreSQL sees what a bbolt records file holds, no more: record keys
// are HMACs of My Numbers under a region's lookup key, values sealed
// records, key entries the regions' keys wrapped under the master key,
// which never reaches the database (docs/RECORDS.md). The encryption stays
// in the Vault above the backend.
//
// # Tables
//
// The tables are prefixed records_ so they can share a database with the
// center's store, with their own numbered migrations (migrations/, the
// versions in records_schema_migrations) run at Open under the store's
// advisory lock (package pgmigrate); a schema newer than this build is
// refused. records_regions holds each region's state, records_items every
// generation's keys and values (primary key (gen, key)), records_gens the
// generations' states and heartbeats, records_log the operations log.
//
// # Imports
//
// A staging generation's runs go by COPY, in batches of bounded size,
// into an unlogged table of its own (records_stage_<gen>): nothing an
// import stages is written to the WAL or reaches a replica. FinishStaging
// indexes it by key and reads it back in key order, a bounded batch per
// query (keyset paging), joining each batch with the base generation in
// the same query; a build writes each batch into records_items by COPY in
// its own transaction, then drops the staging table. The new generation's
// keys arrive in order and its number is the highest yet, so its index
// grows at the right edge. Promote then points the region at it in one
// small transaction; until then no lookup sees it, and a failed or
// cancelled import leaves the region on its previous generation (the
// abandoned one is garbage). Lookups are one statement, which reads the
// region's state and both its generations in one snapshot.
//
// Dropping a generation deletes its rows in bounded batches.
//
// # Errors
//
// An unreachable database (down, restarting, a standby) is reported with
// store.ErrUnavailable, as pgstore does, so issuance answers
// "unavailable" and the kiosk retries.
package pgrecords

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgerr"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// schema is the records' migrations, versioned apart from the store's.
var schema = pgmigrate.Set{Name: "pgrecords", FS: migrationFiles, Dir: "migrations", Table: "records_schema_migrations"}

// SchemaVersion is the newest records schema this build knows.
func SchemaVersion() int { return schema.Version() }

// ErrSchemaTooNew means the records tables were migrated by a newer build.
var ErrSchemaTooNew = pgmigrate.ErrSchemaTooNew

var errClosed = errors.New("pgrecords: records backend is closed")

// Generation states in records_gens.
const (
	genStaging = 1 // an import is staging runs into it
	genBuilt   = 2 // built, waiting for Promote
	genLive    = 3 // a region's active generation or overlay
	genRetired = 4 // out of use, to be dropped
)

// Options tunes Open.
type Options struct {
	// MaxConns caps the pool's connections (default: pgxpool's, or the
	// URL's pool_max_conns). Imports take one at a time.
	MaxConns int32
	// Batch bounds the items one transaction of a build, merge or drop
	// moves (default 20,000; tests use small ones to cross the
	// boundaries).
	Batch int
}

// Backend is records.Backend on PostgreSQL.
type Backend struct {
	pool   *pgxpool.Pool
	batch  int
	closed atomic.Bool
}

var _ records.Backend = (*Backend)(nil)

// Open connects to the database at url (postgres://… or a key=value
// connection string; pool_max_conns and the other pgxpool parameters
// apply) and runs the records migrations.
func Open(ctx context.Context, url string, opts Options) (*Backend, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgrecords: connection string: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "kioskcert-records"
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgrecords: %w", err)
	}
	if err := schema.Run(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	b := &Backend{pool: pool, batch: opts.Batch}
	if b.batch <= 0 {
		b.batch = 20000
	}
	return b, nil
}

// Close closes the pool.
func (b *Backend) Close() error {
	if !b.closed.Swap(true) {
		b.pool.Close()
	}
	return nil
}

// Pool returns the connection pool (tests and benchmarks inspect the
// tables through it).
func (b *Backend) Pool() *pgxpool.Pool { return b.pool }

func (b *Backend) check(ctx context.Context) error {
	if b.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

// result turns an error into what callers see: the records sentinels and
// the callers' own errors (Carry, Check, Rewrap) pass through, a cancelled
// context is the context's error, others get the prefix and the
// unavailable mark.
func (b *Backend) result(ctx context.Context, what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, records.ErrNoRegion), errors.Is(err, records.ErrNoRecord), errors.Is(err, records.ErrConflict),
		errors.Is(err, records.ErrStaging), errors.As(err, new(*callerError)):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("pgrecords: %s: %w", what, pgerr.Unavailable(err))
}

// callerError carries an error of a caller's function (Carry, Check,
// Rewrap) through a transaction unchanged.
type callerError struct{ err error }

func (e *callerError) Error() string { return e.err.Error() }
func (e *callerError) Unwrap() error { return e.err }

// tx runs fn in a transaction, again on a deadlock or serialisation
// failure.
func (b *Backend) tx(ctx context.Context, what string, fn func(pgx.Tx) error) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	var err error
	for range 3 {
		err = pgx.BeginFunc(ctx, b.pool, fn)
		if !pgerr.IsRetryable(err) {
			break
		}
	}
	return b.result(ctx, what, err)
}

// Init implements records.Backend.
func (b *Backend) Init(ctx context.Context, m records.Meta) (records.Meta, error) {
	var out records.Meta
	err := b.tx(ctx, "initialising the records metadata", func(tx pgx.Tx) error {
		read := func() (bool, error) {
			var f int16
			err := tx.QueryRow(ctx, "SELECT format, master_check, master_id FROM records_meta").Scan(&f, &out.MasterCheck, &out.MasterID)
			if errors.Is(err, pgx.ErrNoRows) {
				return false, nil
			}
			out.Format = byte(f)
			return err == nil, err
		}
		if ok, err := read(); ok || err != nil {
			return err
		}
		var regions bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM records_regions)").Scan(&regions); err != nil {
			return err
		}
		if regions {
			return &callerError{errors.New("pgrecords: database has regions but no records metadata; refusing to guess the master key")}
		}
		// Instances starting together: the first insert wins, the others
		// read it.
		if _, err := tx.Exec(ctx, "INSERT INTO records_meta (format, master_check, master_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
			int16(m.Format), nonNil(m.MasterCheck), m.MasterID); err != nil {
			return err
		}
		_, err := read()
		return err
	})
	return out, err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

const regionColumns = "code, id, key_version, key_entry, active, overlay, records, serial"

func scanRegion(row pgx.Row, st *records.RegionState) error {
	var kv int32
	var active, overlay, recs, serial int64
	if err := row.Scan(&st.Code, &st.ID, &kv, &st.KeyEntry, &active, &overlay, &recs, &serial); err != nil {
		return err
	}
	st.KeyVersion, st.Active, st.Overlay, st.Records, st.Serial = uint32(kv), records.Generation(active), records.Generation(overlay), recs, uint64(serial)
	return nil
}

// region reads a region's state (locking its row with lock set); ErrNoRegion
// if absent.
func region(ctx context.Context, q pgx.Tx, code string, lock bool) (records.RegionState, error) {
	var st records.RegionState
	sql := "SELECT " + regionColumns + " FROM records_regions WHERE code = $1"
	if lock {
		sql += " FOR UPDATE"
	}
	err := scanRegion(q.QueryRow(ctx, sql, code), &st)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("%w: municipality %s", records.ErrNoRegion, code)
	}
	return st, err
}

// regionFor locks a region's row and checks it is the instance id.
func regionFor(ctx context.Context, tx pgx.Tx, code string, id []byte) (records.RegionState, error) {
	st, err := region(ctx, tx, code, true)
	if err == nil && !bytes.Equal(st.ID, id) {
		err = errOtherRegion(code)
	}
	return st, err
}

func errOtherRegion(code string) error {
	return fmt.Errorf("%w: the region of municipality %s was deleted (or re-created) after this handle was opened", records.ErrNoRegion, code)
}

func putRegion(ctx context.Context, tx pgx.Tx, st *records.RegionState) error {
	_, err := tx.Exec(ctx, `UPDATE records_regions SET key_entry = $2, active = $3, overlay = $4, records = $5, serial = $6 WHERE code = $1`,
		st.Code, st.KeyEntry, int64(st.Active), int64(st.Overlay), st.Records, int64(st.Serial))
	return err
}

// Region implements records.Backend.
func (b *Backend) Region(ctx context.Context, code string) (records.RegionState, error) {
	if err := b.check(ctx); err != nil {
		return records.RegionState{}, err
	}
	var st records.RegionState
	err := scanRegion(b.pool.QueryRow(ctx, "SELECT "+regionColumns+" FROM records_regions WHERE code = $1", code), &st)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("%w: municipality %s", records.ErrNoRegion, code)
	}
	return st, b.result(ctx, "reading a region", err)
}

// Regions implements records.Backend.
func (b *Backend) Regions(ctx context.Context) ([]records.RegionState, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	rows, err := b.pool.Query(ctx, "SELECT "+regionColumns+" FROM records_regions ORDER BY code")
	if err != nil {
		return nil, b.result(ctx, "listing regions", err)
	}
	defer rows.Close()
	var out []records.RegionState
	for rows.Next() {
		var st records.RegionState
		if err := scanRegion(rows, &st); err != nil {
			return nil, b.result(ctx, "listing regions", err)
		}
		out = append(out, st)
	}
	return out, b.result(ctx, "listing regions", rows.Err())
}

// LastKeyVersion implements records.Backend.
func (b *Backend) LastKeyVersion(ctx context.Context, code string) (uint32, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	var v int32
	err := b.pool.QueryRow(ctx, "SELECT key_version FROM records_key_versions WHERE code = $1", code).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return uint32(v), b.result(ctx, "reading the last key version", err)
}

// appendLog writes op to the operations log, setting its sequence number.
func appendLog(ctx context.Context, tx pgx.Tx, op *records.Operation) error {
	op.Seq = 0
	raw, err := json.Marshal(op)
	if err != nil {
		return err
	}
	var seq int64
	if err := tx.QueryRow(ctx, "INSERT INTO records_log (op) VALUES ($1) RETURNING seq", string(raw)).Scan(&seq); err != nil {
		return err
	}
	op.Seq = uint64(seq)
	return nil
}

// Log implements records.Backend.
func (b *Backend) Log(ctx context.Context) ([]records.Operation, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	rows, err := b.pool.Query(ctx, "SELECT seq, op::text FROM records_log ORDER BY seq")
	if err != nil {
		return nil, b.result(ctx, "reading the operations log", err)
	}
	defer rows.Close()
	var out []records.Operation
	for rows.Next() {
		var seq int64
		var raw string
		if err := rows.Scan(&seq, &raw); err != nil {
			return nil, b.result(ctx, "reading the operations log", err)
		}
		var op records.Operation
		if err := json.Unmarshal([]byte(raw), &op); err != nil {
			return nil, fmt.Errorf("pgrecords: decoding the operations log: %w", err)
		}
		op.Seq = uint64(seq)
		out = append(out, op)
	}
	return out, b.result(ctx, "reading the operations log", rows.Err())
}

// retire marks generations out of use (0 is skipped).
func retire(ctx context.Context, tx pgx.Tx, gens ...records.Generation) error {
	for _, g := range gens {
		if g == 0 {
			continue
		}
		if _, err := tx.Exec(ctx, "UPDATE records_gens SET state = $2 WHERE gen = $1", int64(g), genRetired); err != nil {
			return err
		}
	}
	return nil
}

// DeleteRegion implements records.Backend.
func (b *Backend) DeleteRegion(ctx context.Context, code string, id []byte, op records.Operation) (records.Operation, error) {
	err := b.tx(ctx, "deleting a region", func(tx pgx.Tx) error {
		st, err := regionFor(ctx, tx, code, id)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM records_regions WHERE code = $1", code); err != nil {
			return err
		}
		if err := retire(ctx, tx, st.Active, st.Overlay); err != nil {
			return err
		}
		op.Records = int(st.Records)
		return appendLog(ctx, tx, &op)
	})
	if err != nil {
		return records.Operation{}, err
	}
	return op, nil
}

// Rewrap implements records.Backend.
func (b *Backend) Rewrap(ctx context.Context, r records.Rewrapping) (records.Operation, int, error) {
	n := 0
	op := r.Log
	err := b.tx(ctx, "re-wrapping the region keys", func(tx pgx.Tx) error {
		var m records.Meta
		var f int16
		err := tx.QueryRow(ctx, "SELECT format, master_check, master_id FROM records_meta FOR UPDATE").Scan(&f, &m.MasterCheck, &m.MasterID)
		if errors.Is(err, pgx.ErrNoRows) {
			return &callerError{errors.New("pgrecords: database has no records metadata")}
		}
		if err != nil {
			return err
		}
		m.Format = byte(f)
		if err := r.Check(m); err != nil {
			return &callerError{err}
		}
		rows, err := tx.Query(ctx, "SELECT code, key_entry FROM records_regions ORDER BY code FOR UPDATE")
		if err != nil {
			return err
		}
		type entry struct {
			code  string
			entry []byte
		}
		var entries []entry
		for rows.Next() {
			var e entry
			if err := rows.Scan(&e.code, &e.entry); err != nil {
				rows.Close()
				return err
			}
			entries = append(entries, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, e := range entries {
			wrapped, err := r.Rewrap(e.code, e.entry)
			if err != nil {
				return &callerError{err}
			}
			if _, err := tx.Exec(ctx, "UPDATE records_regions SET key_entry = $2 WHERE code = $1", e.code, wrapped); err != nil {
				return err
			}
		}
		n = len(entries)
		if _, err := tx.Exec(ctx, "UPDATE records_meta SET format = $1, master_check = $2, master_id = $3",
			int16(r.Meta.Format), nonNil(r.Meta.MasterCheck), r.Meta.MasterID); err != nil {
			return err
		}
		op.Records = n
		return appendLog(ctx, tx, &op)
	})
	if err != nil {
		return records.Operation{}, 0, err
	}
	return op, n, nil
}

// Usage is the space a region's records take in the database.
type Usage struct {
	// Records is the number of rows of the region's generations.
	Records int64
	// Bytes is their share of records_items' table and index (the
	// relations' size in proportion to the rows).
	Bytes int64
}

// Usage measures a region's active generation and overlay. It counts
// rows: for benchmarks and operators, not for requests.
func (b *Backend) Usage(ctx context.Context, code string) (Usage, error) {
	var u Usage
	if err := b.check(ctx); err != nil {
		return u, err
	}
	var total, size int64
	err := b.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM records_items i JOIN records_regions r ON i.gen IN (r.active, r.overlay) WHERE r.code = $1),
		(SELECT count(*) FROM records_items),
		pg_total_relation_size('records_items')`, code).Scan(&u.Records, &total, &size)
	if err != nil {
		return u, b.result(ctx, "measuring a region", err)
	}
	if total > 0 {
		u.Bytes = int64(float64(size) * float64(u.Records) / float64(total))
	}
	return u, nil
}

// heartbeatOf converts a caller's time for records_gens.
func heartbeatOf(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
