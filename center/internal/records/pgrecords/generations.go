package pgrecords

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/records"
)

// getSQL reads, in one snapshot, a region's identity and a key in its
// overlay and its active generation (generation 0 matches no row).
const getSQL = `SELECT r.id, o.key IS NOT NULL, o.value, a.value
FROM records_regions r
LEFT JOIN records_items o ON o.gen = r.overlay AND o.key = $2
LEFT JOIN records_items a ON a.gen = r.active AND a.key = $2
WHERE r.code = $1`

// visible scans getSQL's row: the region's id and the value lookups see
// (nil if none).
func visible(row pgx.Row) (id, value []byte, inOverlay bool, err error) {
	var over, active []byte
	if err := row.Scan(&id, &inOverlay, &over, &active); err != nil {
		return nil, nil, false, err
	}
	if inOverlay {
		return id, over, true, nil
	}
	return id, active, false, nil
}

// Get implements records.Backend: one statement per lookup.
func (b *Backend) Get(ctx context.Context, code string, id, key []byte) ([]byte, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	gotID, v, _, err := visible(b.pool.QueryRow(ctx, getSQL, code, key))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("%w: municipality %s", records.ErrNoRegion, code)
	case err != nil:
		return nil, b.result(ctx, "looking up a record", err)
	case !bytes.Equal(gotID, id):
		return nil, errOtherRegion(code)
	case v == nil:
		return nil, records.ErrNoRecord
	}
	return v, nil
}

// Update implements records.Backend.
func (b *Backend) Update(ctx context.Context, u records.RecordUpdate) (records.Operation, error) {
	op := u.Log
	if len(u.Key) == 0 || u.New == nil {
		return records.Operation{}, errors.New("pgrecords: update needs a key and a new value")
	}
	err := b.tx(ctx, "updating a record", func(tx pgx.Tx) error {
		// The region's row lock serialises updates, merges and
		// promotions of the region; the reads below see what committed
		// before it was granted.
		st, err := regionFor(ctx, tx, u.Code, u.ID)
		if err != nil {
			return err
		}
		_, cur, inOverlay, err := visible(tx.QueryRow(ctx, getSQL, u.Code, u.Key))
		if err != nil {
			return err
		}
		if cur == nil {
			return fmt.Errorf("%w in municipality %s", records.ErrNoRecord, u.Code)
		}
		if !bytes.Equal(cur, u.Old) {
			return fmt.Errorf("%w: the record changed since it was read", records.ErrConflict)
		}
		// Into the overlay too when the key is there, so that neither a
		// lookup now nor the merge later brings the old value back.
		if inOverlay {
			if _, err := tx.Exec(ctx, "UPDATE records_items SET value = $3 WHERE gen = $1 AND key = $2", int64(st.Overlay), u.Key, u.New); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO records_items (gen, key, value) VALUES ($1, $2, $3)
			ON CONFLICT (gen, key) DO UPDATE SET value = EXCLUDED.value`, int64(st.Active), u.Key, u.New); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE records_regions SET serial = serial + 1 WHERE code = $1", u.Code); err != nil {
			return err
		}
		return appendLog(ctx, tx, &op)
	})
	if err != nil {
		return records.Operation{}, err
	}
	return op, nil
}

// mergeSQL folds the next batch of an overlay ($1) into the active
// generation ($2): the keys after $3, $4 of them at most. It returns the
// last key merged and how many were. Every statement probes the index by
// key (no join the planner could turn into a scan of the generation).
const mergeSQL = `WITH batch AS (
	SELECT key, value FROM records_items WHERE gen = $1 AND key > $3 ORDER BY key LIMIT $4
), put AS (
	INSERT INTO records_items (gen, key, value) SELECT $2, key, value FROM batch WHERE value IS NOT NULL
	ON CONFLICT (gen, key) DO UPDATE SET value = EXCLUDED.value
), removed AS (
	DELETE FROM records_items WHERE gen = $2 AND key = ANY (ARRAY(SELECT key FROM batch WHERE value IS NULL))
)
SELECT (SELECT key FROM batch ORDER BY key DESC LIMIT 1), (SELECT count(*) FROM batch)`

// Merge implements records.Backend: a batch per transaction, each under
// the region's row lock, so an update waits for the batch and a lookup
// (which reads the overlay first) sees the same value before and after.
func (b *Backend) Merge(ctx context.Context, code string, id []byte) (records.Generation, error) {
	var overlay records.Generation
	after := []byte{} // the last key merged; empty: start
	for {
		done := false
		err := b.tx(ctx, "merging changes", func(tx pgx.Tx) error {
			st, err := regionFor(ctx, tx, code, id)
			if err != nil {
				return err
			}
			if st.Overlay == 0 || overlay != 0 && st.Overlay != overlay {
				// None, or a full import replaced the region meanwhile
				// (its promotion retired this overlay).
				done = true
				return nil
			}
			overlay = st.Overlay
			// The overlay's keys land at random places in the active
			// generation: batches are kept a tenth of a build's.
			limit := max(1, b.batch/10)
			var last []byte
			var n int64
			if err := tx.QueryRow(ctx, mergeSQL, int64(overlay), int64(st.Active), after, limit).Scan(&last, &n); err != nil {
				return err
			}
			if n > 0 {
				after = last
			}
			if n < int64(limit) {
				// Everything is in the active generation: retire the
				// overlay in the same transaction.
				st.Overlay = 0
				if err := putRegion(ctx, tx, &st); err != nil {
					return err
				}
				done = true
				return retire(ctx, tx, overlay)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if done {
			return overlay, nil
		}
	}
}

// stageTable names a staging generation's table (g is a number this
// package handed out, never a caller's text).
func stageTable(g records.Generation) string { return fmt.Sprintf("records_stage_%d", uint64(g)) }

// BeginStaging implements records.Backend.
func (b *Backend) BeginStaging(ctx context.Context, code string, now time.Time) (records.Generation, error) {
	var g records.Generation
	err := b.tx(ctx, "beginning an import", func(tx pgx.Tx) error {
		var n int64
		if err := tx.QueryRow(ctx, "SELECT nextval('records_gen_seq')").Scan(&n); err != nil {
			return err
		}
		g = records.Generation(n)
		// Unlogged: staged runs are neither written to the WAL nor
		// replicated; a crash empties the table, and the import, which
		// fails anyway, leaves the generation to the collector.
		if _, err := tx.Exec(ctx, "CREATE UNLOGGED TABLE "+stageTable(g)+
			" (kind smallint NOT NULL, key bytea NOT NULL, ref bigint NOT NULL, value bytea, n bigint GENERATED ALWAYS AS IDENTITY)"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO records_gens (gen, state, code, heartbeat) VALUES ($1, $2, $3, $4)", n, genStaging, code, heartbeatOf(now))
		return err
	})
	return g, err
}

// Promote implements records.Backend.
func (b *Backend) Promote(ctx context.Context, p records.Promotion) (records.Operation, error) {
	op := p.Log
	err := b.tx(ctx, "publishing an import", func(tx pgx.Tx) error {
		var state int16
		var gcode string
		err := tx.QueryRow(ctx, "SELECT state, code FROM records_gens WHERE gen = $1 FOR UPDATE", int64(p.Gen)).Scan(&state, &gcode)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err != nil || state != genBuilt || gcode != p.Code {
			return fmt.Errorf("%w: generation %d is not a built import of municipality %s", records.ErrStaging, p.Gen, p.Code)
		}
		var st records.RegionState
		if p.ExpectID == nil {
			if p.Create == nil || p.Create.Code != p.Code {
				return &callerError{errors.New("pgrecords: promoting into a new region needs its state")}
			}
			var last int32
			err := tx.QueryRow(ctx, "SELECT key_version FROM records_key_versions WHERE code = $1 FOR UPDATE", p.Code).Scan(&last)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if p.Create.KeyVersion != uint32(last)+1 {
				return fmt.Errorf("%w: municipality %s is at key version %d", records.ErrConflict, p.Code, last)
			}
			st = *p.Create
			st.Active, st.Overlay, st.Serial, st.Records = p.Gen, 0, 1, p.Records
			// Of several imports creating the region at once, the primary
			// key lets one insert; the others wait for it and fail.
			_, err = tx.Exec(ctx, "INSERT INTO records_regions ("+regionColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
				st.Code, st.ID, int32(st.KeyVersion), st.KeyEntry, int64(st.Active), int64(st.Overlay), st.Records, int64(st.Serial))
			if isUnique(err) {
				return fmt.Errorf("%w: municipality %s has a region now", records.ErrConflict, p.Code)
			}
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO records_key_versions (code, key_version) VALUES ($1, $2)
				ON CONFLICT (code) DO UPDATE SET key_version = EXCLUDED.key_version`, p.Code, int32(st.KeyVersion)); err != nil {
				return err
			}
		} else {
			if st, err = regionFor(ctx, tx, p.Code, p.ExpectID); err != nil {
				return err
			}
			if st.Serial != p.ExpectSerial {
				return fmt.Errorf("%w: municipality %s changed since the import began", records.ErrConflict, p.Code)
			}
			if p.Overlay {
				if st.Overlay != 0 {
					return fmt.Errorf("%w: municipality %s has changes still being merged", records.ErrConflict, p.Code)
				}
				st.Overlay = p.Gen
			} else {
				if err := retire(ctx, tx, st.Active, st.Overlay); err != nil {
					return err
				}
				st.Active, st.Overlay = p.Gen, 0
			}
			st.Serial++
			st.Records = p.Records
			if err := putRegion(ctx, tx, &st); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE records_gens SET state = $2 WHERE gen = $1", int64(p.Gen), genLive); err != nil {
			return err
		}
		return appendLog(ctx, tx, &op)
	})
	if err != nil {
		return records.Operation{}, err
	}
	return op, nil
}

// Garbage implements records.Backend.
func (b *Backend) Garbage(ctx context.Context, staleBefore time.Time) ([]records.Generation, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	rows, err := b.pool.Query(ctx, `SELECT gen FROM records_gens
		WHERE state = $1 OR (state IN ($2, $3) AND heartbeat < $4) ORDER BY gen`,
		genRetired, genStaging, genBuilt, heartbeatOf(staleBefore))
	if err != nil {
		return nil, b.result(ctx, "listing garbage", err)
	}
	gens, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (records.Generation, error) {
		var g int64
		err := r.Scan(&g)
		return records.Generation(g), err
	})
	return gens, b.result(ctx, "listing garbage", err)
}

// Drop implements records.Backend. It first retires the generation (so
// no promotion can make it live while its rows go) and drops its staging
// table, then deletes its rows a batch per transaction.
func (b *Backend) Drop(ctx context.Context, g records.Generation) error {
	found := false
	err := b.tx(ctx, "dropping a generation", func(tx pgx.Tx) error {
		var state int16
		err := tx.QueryRow(ctx, "SELECT state FROM records_gens WHERE gen = $1 FOR UPDATE", int64(g)).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if state == genLive {
			return &callerError{fmt.Errorf("pgrecords: generation %d is in use by a region; it cannot be dropped", g)}
		}
		found = true
		if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+stageTable(g)); err != nil {
			return err
		}
		return retire(ctx, tx, g)
	})
	if err != nil || !found {
		return err
	}
	for {
		var n int64
		err := b.tx(ctx, "dropping a generation", func(tx pgx.Tx) error {
			// By tuple ID: a plan that does not depend on the
			// statistics (a freshly built generation has none until
			// autovacuum analyses it, and a join on key then degrades to
			// comparing every row of the batch with every other).
			tag, err := tx.Exec(ctx, `DELETE FROM records_items WHERE ctid = ANY (ARRAY(
				SELECT ctid FROM records_items WHERE gen = $1 LIMIT $2))`, int64(g), b.batch)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		// Nothing deleted: done, or another collector dropping the same
		// generation holds the rows this batch picked. Its row goes only
		// once none of its records is left, so a collector that stops
		// halfway leaves it listed for the next.
		var left bool
		if err := b.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM records_items WHERE gen = $1)", int64(g)).Scan(&left); err != nil {
			return b.result(ctx, "dropping a generation", err)
		}
		if !left {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return b.tx(ctx, "dropping a generation", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM records_gens WHERE gen = $1 AND state = $2", int64(g), genRetired)
		return err
	})
}
