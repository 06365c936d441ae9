package pgrecords

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgerr"
)

// copyBytes bounds the bytes one StageRun transaction copies.
const copyBytes = 8 << 20

func isUnique(err error) bool { return pgerr.IsUniqueViolation(err, "") }

// StageRun implements records.Backend: the run goes by COPY into the
// generation's unlogged staging table, in transactions of at most
// copyBytes, each refreshing the heartbeat.
func (b *Backend) StageRun(ctx context.Context, g records.Generation, kind records.RunKind, items []records.Staged, now time.Time) error {
	if kind != records.RunRecords && kind != records.RunUnique {
		return fmt.Errorf("pgrecords: unknown run kind %d", kind)
	}
	for i := range items {
		if len(items[i].Key) == 0 {
			return errors.New("pgrecords: a staged item has an empty key")
		}
		if i > 0 && bytes.Compare(items[i-1].Key, items[i].Key) > 0 {
			return errors.New("pgrecords: a staging run is not sorted by key")
		}
	}
	if err := b.check(ctx); err != nil {
		return err
	}
	for pos := 0; pos < len(items); {
		end, size := pos, 0
		for end < len(items) && size < copyBytes {
			size += len(items[end].Key) + len(items[end].Value) + 32
			end++
		}
		chunk := items[pos:end]
		err := b.tx(ctx, "staging records", func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, "UPDATE records_gens SET heartbeat = $2, staged = staged + $3 WHERE gen = $1 AND state = $4",
				int64(g), heartbeatOf(now), len(chunk), genStaging)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("%w: generation %d is not staging", records.ErrStaging, g)
			}
			_, err = tx.CopyFrom(ctx, pgx.Identifier{stageTable(g)}, []string{"kind", "key", "ref", "value"},
				pgx.CopyFromSlice(len(chunk), func(i int) ([]any, error) {
					it := &chunk[i]
					return []any{int16(kind), it.Key, int64(it.Ref), it.Value}, nil
				}))
			if pgerr.IsUndefinedTable(err) {
				return fmt.Errorf("%w: generation %d lost its staging table", records.ErrStaging, g)
			}
			return err
		})
		if err != nil {
			return err
		}
		pos = end
	}
	return nil
}

// stagedRow is one row of a staging table as FinishStaging reads it, with
// the base generation's value for its key.
type stagedRow struct {
	records.Staged
	n      int64
	inBase bool
	base   []byte
}

// readBatch reads the next batch of a run kind's staged rows in (key,
// ref) order after the row after, joined with generation base (0: none).
// The staging table's index makes each batch a range scan.
func (b *Backend) readBatch(ctx context.Context, g records.Generation, kind records.RunKind, base records.Generation, after *stagedRow) ([]stagedRow, error) {
	key, ref, n := []byte{}, int64(math.MinInt64), int64(math.MinInt64)
	if after != nil {
		key, ref, n = after.Key, int64(after.Ref), after.n
	}
	// The batch first, then one index probe of the base per row (LATERAL
	// keeps the planner from scanning the whole base generation for each
	// batch, whatever its statistics say).
	rows, err := b.pool.Query(ctx, `SELECT s.key, s.ref, s.value, s.n, i.present IS NOT NULL, i.value
		FROM (SELECT key, ref, value, n FROM `+stageTable(g)+`
			WHERE kind = $1 AND (key, ref, n) > ($2, $3, $4) ORDER BY key, ref, n LIMIT $5) s
		LEFT JOIN LATERAL (SELECT true AS present, value FROM records_items WHERE gen = $6 AND key = s.key) i ON true
		ORDER BY s.key, s.ref, s.n`, int16(kind), key, ref, n, b.batch, int64(base))
	if err != nil {
		if pgerr.IsUndefinedTable(err) {
			return nil, fmt.Errorf("%w: generation %d lost its staging table", records.ErrStaging, g)
		}
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stagedRow, error) {
		var s stagedRow
		var ref int64
		err := r.Scan(&s.Key, &ref, &s.Value, &s.n, &s.inBase, &s.base)
		s.Ref = uint64(ref)
		return s, err
	})
	if pgerr.IsUndefinedTable(err) {
		return nil, fmt.Errorf("%w: generation %d lost its staging table", records.ErrStaging, g)
	}
	return out, err
}

// lockStaging locks a generation's row and checks it is staging.
func lockStaging(ctx context.Context, tx pgx.Tx, g records.Generation) error {
	var state int16
	err := tx.QueryRow(ctx, "SELECT state FROM records_gens WHERE gen = $1 FOR UPDATE", int64(g)).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && state != genStaging {
		return fmt.Errorf("%w: generation %d is not staging", records.ErrStaging, g)
	}
	return err
}

// FinishStaging implements records.Backend.
func (b *Backend) FinishStaging(ctx context.Context, g records.Generation, f records.Finish) (records.StagingResult, error) {
	var res records.StagingResult
	maxConflicts := f.MaxConflicts
	if maxConflicts <= 0 {
		maxConflicts = 100
	}
	now := f.Now
	if now == nil {
		now = time.Now
	}
	var total int64
	err := b.tx(ctx, "ordering an import", func(tx pgx.Tx) error {
		if err := lockStaging(ctx, tx, g); err != nil {
			return err
		}
		// The ordering itself: PostgreSQL sorts the staged rows into an
		// index, spilling to disk beyond maintenance_work_mem.
		if _, err := tx.Exec(ctx, "CREATE INDEX IF NOT EXISTS "+stageTable(g)+"_order ON "+stageTable(g)+" (kind, key, ref, n)"); err != nil {
			return err
		}
		// Statistics for the planner, which otherwise takes the new table
		// for empty (cheap: ANALYZE samples).
		if _, err := tx.Exec(ctx, "ANALYZE "+stageTable(g)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE records_gens SET heartbeat = $2 WHERE gen = $1", int64(g), heartbeatOf(now())); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT count(*) FROM "+stageTable(g)).Scan(&total)
	})
	if err != nil {
		return res, err
	}
	var done int64
	report := func() {
		if f.Progress != nil {
			f.Progress(done, total)
		}
	}
	report()
	conflict := func(c records.Conflict) {
		if len(res.Conflicts) < maxConflicts {
			res.Conflicts = append(res.Conflicts, c)
		} else {
			res.MoreConflicts++
		}
	}

	// Resident numbers first: cheap (no writes), and a conflict there
	// means the build can be skipped.
	err = b.walk(ctx, g, records.RunUnique, 0, func(batch []stagedRow, first func(i int) *stagedRow) error {
		for i := range batch {
			if fr := first(i); fr != nil {
				conflict(records.Conflict{Kind: records.RunUnique, FirstRef: fr.Ref, Ref: batch[i].Ref, FirstValue: bytes.Clone(fr.Value), Value: batch[i].Value})
			}
		}
		done += int64(len(batch))
		report()
		return nil
	})
	if err != nil {
		return res, err
	}
	build := f.Build && len(res.Conflicts) == 0 && res.MoreConflicts == 0
	base := records.Generation(0)
	if build {
		base = f.Base
	}
	var out [][]any
	err = b.walk(ctx, g, records.RunRecords, base, func(batch []stagedRow, first func(i int) *stagedRow) error {
		out = out[:0]
		for i := range batch {
			it := &batch[i]
			if it.Value == nil {
				res.Removals++
			} else {
				res.Records++
			}
			if fr := first(i); fr != nil {
				conflict(records.Conflict{Kind: records.RunRecords, FirstRef: fr.Ref, Ref: it.Ref})
				build = false
			}
			if !build {
				continue
			}
			value := it.Value
			switch {
			case it.Value == nil && it.inBase && it.base != nil:
				res.Removed++
			case it.Value == nil:
				res.Absent++
			case it.base != nil:
				res.Replaced++
				if f.Carry != nil {
					v, err := f.Carry(it.Staged, it.base)
					if err != nil {
						return &callerError{err}
					}
					if len(v) == 0 {
						return errors.New("pgrecords: Carry returned no value")
					}
					value = v
				}
			default:
				res.Added++
			}
			out = append(out, []any{int64(g), it.Key, value})
		}
		done += int64(len(batch))
		if build && len(out) > 0 {
			err := b.tx(ctx, "building an import", func(tx pgx.Tx) error {
				if err := lockStaging(ctx, tx, g); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "UPDATE records_gens SET heartbeat = $2 WHERE gen = $1", int64(g), heartbeatOf(now())); err != nil {
					return err
				}
				_, err := tx.CopyFrom(ctx, pgx.Identifier{"records_items"}, []string{"gen", "key", "value"}, pgx.CopyFromRows(out))
				return err
			})
			if err != nil {
				return err
			}
		}
		report()
		return nil
	})
	if err != nil {
		return res, err
	}
	// Free the staged runs and, when built, mark the generation so.
	err = b.tx(ctx, "finishing an import", func(tx pgx.Tx) error {
		if err := lockStaging(ctx, tx, g); err != nil {
			return err
		}
		if build {
			if _, err := tx.Exec(ctx, "DROP TABLE "+stageTable(g)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "UPDATE records_gens SET state = $2, heartbeat = $3, staged = 0 WHERE gen = $1", int64(g), genBuilt, heartbeatOf(now()))
			return err
		}
		if _, err := tx.Exec(ctx, "TRUNCATE "+stageTable(g)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE records_gens SET heartbeat = $2, staged = 0 WHERE gen = $1", int64(g), heartbeatOf(now()))
		return err
	})
	return res, err
}

// walk reads a run kind's staged rows in order, a batch at a time, and
// hands each batch to fn with first: for the row at i, the first row of
// its key if an earlier row had the same key (nil otherwise), valid during
// the call.
func (b *Backend) walk(ctx context.Context, g records.Generation, kind records.RunKind, base records.Generation, fn func(batch []stagedRow, first func(i int) *stagedRow) error) error {
	var group stagedRow // the current key's first row
	haveGroup := false
	var after *stagedRow
	for {
		if err := b.check(ctx); err != nil {
			return err
		}
		batch, err := b.readBatch(ctx, g, kind, base, after)
		if err != nil {
			return b.result(ctx, "ordering an import", err)
		}
		if len(batch) == 0 {
			return nil
		}
		firsts := make([]*stagedRow, len(batch))
		for i := range batch {
			if haveGroup && bytes.Equal(group.Key, batch[i].Key) {
				fr := group
				firsts[i] = &fr
				continue
			}
			group, haveGroup = batch[i], true
		}
		if err := fn(batch, func(i int) *stagedRow { return firsts[i] }); err != nil {
			return b.result(ctx, "building an import", err)
		}
		last := batch[len(batch)-1]
		after = &last
		if len(batch) < b.batch {
			return nil
		}
	}
}
