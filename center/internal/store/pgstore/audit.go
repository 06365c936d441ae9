package pgstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// prepareEvents validates and normalises events before a transaction.
func prepareEvents(events []store.Event) ([]store.Event, error) {
	out := make([]store.Event, len(events))
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return nil, err
		}
		e.Time = store.Time(e.Time)
		out[i] = e
	}
	return out, nil
}

// AppendEvent implements store.AuditLog through the group committer: it
// returns once the event is committed.
func (s *Store) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	evs, err := prepareEvents([]store.Event{e})
	if err != nil {
		return store.Event{}, err
	}
	var ev []store.Event
	err = s.write(ctx, "append audit event", func(ctx context.Context, tx pgx.Tx, b *batch) error {
		// A fresh copy each run: flush sets the sequence number.
		ev = []store.Event{evs[0]}
		b.appendEvents(ev)
		return nil
	})
	if err != nil {
		return store.Event{}, err
	}
	return ev[0], nil
}

const eventColumns = `seq, time, type, kiosk_id, store_code, municipality, kind, copies, certificate_id,
	request_id, result, latency_ns, operator, source, object, prev_hash, hash`

func scanEvent(row pgx.Row, e *store.Event) error {
	var seq, latency int64
	var at time.Time
	var typ, kind string
	err := row.Scan(&seq, &at, &typ, &e.KioskID, &e.StoreCode, &e.Municipality, &kind, &e.Copies, &e.CertificateID,
		&e.RequestID, &e.Result, &latency, &e.Operator, &e.Source, &e.Object, &e.PrevHash, &e.Hash)
	e.Seq, e.Time, e.Type, e.Kind, e.Latency = uint64(seq), utc(&at), store.EventType(typ), certificate.Kind(kind), time.Duration(latency)
	return err
}

// Events implements store.AuditLog.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if !q.From.IsZero() {
		where = append(where, "time >= "+arg(store.Time(q.From)))
	}
	if !q.To.IsZero() {
		where = append(where, "time < "+arg(store.Time(q.To)))
	}
	// The "<> ''" terms let the planner use the partial indexes.
	for _, f := range []struct{ column, v string }{
		{"kiosk_id", q.KioskID}, {"request_id", q.RequestID}, {"municipality", q.Municipality},
		{"certificate_id", q.CertificateID}, {"operator", q.Operator},
	} {
		if f.v != "" {
			where = append(where, f.column+" = "+arg(f.v), f.column+" <> ''")
		}
	}
	if q.Result != "" {
		where = append(where, "result = "+arg(q.Result))
	}
	if q.Type != "" {
		where = append(where, "type = "+arg(string(q.Type)))
	}
	order := " ORDER BY time, seq"
	if q.Descending {
		order = " ORDER BY time DESC, seq DESC"
	}
	if !q.After.IsZero() {
		cmp := ">"
		if q.Descending {
			cmp = "<"
		}
		where = append(where, "(time, seq) "+cmp+" ("+arg(store.Time(q.After.Time))+"::timestamptz, "+arg(int64(min(q.After.Seq, 1<<62)))+"::bigint)")
	}
	sql := `SELECT ` + eventColumns + ` FROM audit_events`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += order + " LIMIT " + arg(q.EffectiveLimit())
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.result(ctx, "read audit events", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, e *store.Event) error { return scanEvent(r, e) })
	return out, s.result(ctx, "read audit events", err)
}

// DailyCounts implements store.AuditLog: it sums the counters' shards.
func (s *Store) DailyCounts(ctx context.Context, firstDay, lastDay string) ([]store.DailyCount, error) {
	first, err := store.ParseDay(firstDay)
	if err != nil {
		return nil, err
	}
	last, err := store.ParseDay(lastDay)
	if err != nil {
		return nil, err
	}
	if last.Before(first) {
		return nil, fmt.Errorf("%w: lastDay is before firstDay", store.ErrInvalid)
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT day, municipality, type, kind, sum(events)::bigint, sum(copies)::bigint
		FROM audit_daily WHERE day BETWEEN $1 AND $2
		GROUP BY day, municipality, type, kind ORDER BY day, municipality, type, kind`, firstDay, lastDay)
	if err != nil {
		return nil, s.result(ctx, "read settlement counts", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, c *store.DailyCount) error {
		var typ, kind string
		err := r.Scan(&c.Day, &c.Municipality, &typ, &kind, &c.Events, &c.Copies)
		c.Type, c.Kind = store.EventType(typ), certificate.Kind(kind)
		return err
	})
	return out, s.result(ctx, "read settlement counts", err)
}

// EventsBySeq implements store.AuditLog.
func (s *Store) EventsBySeq(ctx context.Context, from uint64, limit int) ([]store.Event, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2`,
		int64(min(from, 1<<62)), store.EventQuery{Limit: limit}.EffectiveLimit())
	if err != nil {
		return nil, s.result(ctx, "read audit events", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, e *store.Event) error { return scanEvent(r, e) })
	return out, s.result(ctx, "read audit events", err)
}

// AuditHead implements store.AuditLog.
func (s *Store) AuditHead(ctx context.Context) (uint64, string, error) {
	if err := s.check(ctx); err != nil {
		return 0, "", err
	}
	var seq int64
	var hash string
	if err := s.pool.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash); err != nil {
		return 0, "", s.result(ctx, "read the audit head", err)
	}
	return uint64(seq), hash, nil
}

// PutCheckpoint implements store.AuditLog.
func (s *Store) PutCheckpoint(ctx context.Context, c store.Checkpoint) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return s.tx(ctx, "put audit checkpoint", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO audit_checkpoints (seq, hash, time, key_id, signature) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (seq) DO NOTHING`, int64(c.Seq), c.Hash, store.Time(c.Time), c.KeyID, c.Signature)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("%w: a checkpoint at sequence %d", store.ErrExists, c.Seq)
		}
		return err
	})
}

// Checkpoints implements store.AuditLog.
func (s *Store) Checkpoints(ctx context.Context) ([]store.Checkpoint, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, hash, time, key_id, signature FROM audit_checkpoints ORDER BY seq`)
	if err != nil {
		return nil, s.result(ctx, "read audit checkpoints", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, c *store.Checkpoint) error {
		var seq int64
		var at time.Time
		err := r.Scan(&seq, &c.Hash, &at, &c.KeyID, &c.Signature)
		c.Seq, c.Time = uint64(seq), utc(&at)
		return err
	})
	return out, s.result(ctx, "read audit checkpoints", err)
}

// SettlementCounts implements store.AuditLog: the printed events of the
// settlement days asked for, grouped by period, municipality, the printing
// kiosk's chain, kind and copies.
func (s *Store) SettlementCounts(ctx context.Context, q store.SettlementQuery) ([]store.SettlementCount, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	first, _ := store.ParseDay(q.FirstDay)
	last, _ := store.ParseDay(q.LastDay)
	// Settlement days are Japan's dates: UTC+9 all year.
	period := "to_char(e.time AT TIME ZONE 'UTC' + interval '9 hours', 'YYYY-MM-DD')"
	if q.Monthly {
		period = "to_char(e.time AT TIME ZONE 'UTC' + interval '9 hours', 'YYYY-MM')"
	}
	rows, err := s.pool.Query(ctx, `SELECT p, m, c, k, n, count FROM (SELECT `+period+` AS p, e.municipality AS m, coalesce(k.chain, '') AS c, e.kind AS k, e.copies AS n, count(*)
		FROM audit_events e LEFT JOIN kiosks k ON k.id = e.kiosk_id
		WHERE e.type = $1 AND e.municipality <> '' AND e.time >= $2 AND e.time < $3
			AND ($4 = '' OR e.municipality = $4) AND ($5 = '' OR k.chain = $5)
		GROUP BY 1, 2, 3, 4, 5) g
		ORDER BY p COLLATE "C", m COLLATE "C", c COLLATE "C", k COLLATE "C", n`,
		string(store.EventPrinted), first.UTC(), last.AddDate(0, 0, 1).UTC(), q.Municipality, q.Chain)
	if err != nil {
		return nil, s.result(ctx, "read settlement counts", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, c *store.SettlementCount) error {
		var kind string
		err := r.Scan(&c.Period, &c.Municipality, &c.Chain, &kind, &c.Copies, &c.Issuances)
		c.Kind = certificate.Kind(kind)
		return err
	})
	return out, s.result(ctx, "read settlement counts", err)
}
