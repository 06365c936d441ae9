package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// writeOp is one caller's part of a group commit. run may run more than
// once (a failed batch is retried operation by operation), always in a
// fresh transaction, so it must reset what it captures for its caller and
// report refusals through captured results, not errors: an error aborts
// the whole transaction.
type writeOp struct {
	ctx  context.Context // the caller's: an op whose caller gave up is left out
	run  func(ctx context.Context, tx pgx.Tx, b *batch) error
	done chan error
}

// batch collects what a transaction's operations append, written by flush
// just before the commit.
type batch struct {
	events []*store.Event
}

// appendEvents queues events (validated and normalised by the caller) for
// the batch's insert; their Seq is set by flush.
func (b *batch) appendEvents(evs []store.Event) {
	for i := range evs {
		b.events = append(b.events, &evs[i])
	}
}

// counterShards is how many rows a settlement counter is spread over.
const counterShards = 16

type dailyKey struct{ day, municipality, typ, kind string }

// flush appends the batch's events to the hash chain and adds them to
// the settlement counters: two round trips whatever the batch's size.
//
// The chain's head row is locked first and held to the commit: appends
// from every connection and every instance take their sequence numbers and
// hashes one batch after another, so the chain has no holes and follows
// commit order. It is the last lock a batch takes but for the counters,
// which every batch takes after it, so batches cannot deadlock on it. The
// lock is what makes group commit matter here: one holder per commit, many
// events per holder.
func (b *batch) flush(ctx context.Context, tx pgx.Tx) error {
	n := len(b.events)
	if n == 0 {
		return nil
	}
	var head int64
	var prev string
	if err := tx.QueryRow(ctx, "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").Scan(&head, &prev); err != nil {
		return err
	}
	var (
		cols = struct {
			seq, copies, latency                                                                               []int64
			times                                                                                              []time.Time
			typ, kiosk, storeCode, muni, kind, certID, reqID, result, operator, source, object, prevHash, hash []string
		}{}
		counts = map[dailyKey][2]int64{}
	)
	for i, e := range b.events {
		e.Seq = uint64(head) + uint64(i) + 1
		e.Hash, e.PrevHash = store.ChainHash(prev, *e), prev
		prev = e.Hash
		cols.seq = append(cols.seq, int64(e.Seq))
		cols.times = append(cols.times, e.Time)
		cols.typ = append(cols.typ, string(e.Type))
		cols.kiosk = append(cols.kiosk, e.KioskID)
		cols.storeCode = append(cols.storeCode, e.StoreCode)
		cols.muni = append(cols.muni, e.Municipality)
		cols.kind = append(cols.kind, string(e.Kind))
		cols.copies = append(cols.copies, int64(e.Copies))
		cols.certID = append(cols.certID, e.CertificateID)
		cols.reqID = append(cols.reqID, e.RequestID)
		cols.result = append(cols.result, e.Result)
		cols.latency = append(cols.latency, int64(e.Latency))
		cols.operator = append(cols.operator, e.Operator)
		cols.source = append(cols.source, e.Source)
		cols.object = append(cols.object, e.Object)
		cols.prevHash = append(cols.prevHash, e.PrevHash)
		cols.hash = append(cols.hash, e.Hash)
		if e.Municipality != "" {
			k := dailyKey{store.SettlementDay(e.Time), e.Municipality, string(e.Type), string(e.Kind)}
			c := counts[k]
			counts[k] = [2]int64{c[0] + 1, c[1] + int64(e.Copies)}
		}
	}
	var pb pgx.Batch
	pb.Queue(`INSERT INTO audit_events (seq, time, type, kiosk_id, store_code, municipality, kind, copies,
			certificate_id, request_id, result, latency_ns, operator, source, object, prev_hash, hash)
		SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::text[], $14::text[],
			$15::text[], $16::text[], $17::text[])`,
		cols.seq, cols.times, cols.typ, cols.kiosk, cols.storeCode, cols.muni, cols.kind, cols.copies,
		cols.certID, cols.reqID, cols.result, cols.latency, cols.operator, cols.source, cols.object, cols.prevHash, cols.hash)
	pb.Queue("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", int64(head)+int64(n), prev)
	if len(counts) > 0 {
		keys := make([]dailyKey, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		// One lock order for every transaction: no deadlocks between batches.
		slices.SortFunc(keys, func(a, b dailyKey) int {
			return strings.Compare(a.day+"\x00"+a.municipality+"\x00"+a.typ+"\x00"+a.kind, b.day+"\x00"+b.municipality+"\x00"+b.typ+"\x00"+b.kind)
		})
		var days, munis, types, kinds []string
		var events, copies []int64
		for _, k := range keys {
			days, munis, types, kinds = append(days, k.day), append(munis, k.municipality), append(types, k.typ), append(kinds, k.kind)
			events, copies = append(events, counts[k][0]), append(copies, counts[k][1])
		}
		pb.Queue(`INSERT INTO audit_daily (day, municipality, type, kind, shard, events, copies)
			SELECT d, m, t, k, $5, e, c FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $6::bigint[], $7::bigint[]) AS u(d, m, t, k, e, c)
			ON CONFLICT (day, municipality, type, kind, shard)
			DO UPDATE SET events = audit_daily.events + excluded.events, copies = audit_daily.copies + excluded.copies`,
			days, munis, types, kinds, int16(rand.IntN(counterShards)), events, copies)
	}
	return tx.SendBatch(ctx, &pb).Close()
}

// committer runs write operations in transactions: grouped (one
// transaction for everything queued while the previous one committed), or
// one each.
type committer struct {
	pool     *pgxpool.Pool
	maxBatch int
	timeout  time.Duration
	solo     bool

	// Counters for CommitStats.
	commits, writes, nanos atomic.Int64

	mu      sync.Mutex
	pending []*writeOp
	closed  bool
	wake    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newCommitter(pool *pgxpool.Pool, maxBatch int, timeout time.Duration) *committer {
	c := &committer{pool: pool, maxBatch: maxBatch, timeout: timeout, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	c.wg.Add(1)
	go c.loop()
	return c
}

func newSoloCommitter(pool *pgxpool.Pool, timeout time.Duration) *committer {
	return &committer{pool: pool, timeout: timeout, solo: true, stop: make(chan struct{})}
}

// do runs fn in a (shared) transaction and returns once it committed or
// failed, or once the caller's ctx ended. An operation whose caller gave up
// before its batch started is left out; one whose caller gives up while
// its batch commits may still commit, as a write whose acknowledgement was
// lost may with any database (the request register's take-over and replay
// cover that). Nothing is ever acknowledged that did not commit.
func (c *committer) do(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx, b *batch) error) error {
	op := &writeOp{ctx: ctx, run: fn, done: make(chan error, 1)}
	if c.solo {
		c.runBatch([]*writeOp{op})
		return <-op.done
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errClosed
	}
	c.pending = append(c.pending, op)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the database: %w", ctx.Err())
	}
}

func (c *committer) loop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			c.mu.Lock()
			ops := c.pending
			c.pending, c.closed = nil, true
			c.mu.Unlock()
			if len(ops) > 0 {
				c.runBatch(ops)
			}
			return
		}
		for {
			c.mu.Lock()
			n := min(len(c.pending), c.maxBatch)
			ops := slices.Clone(c.pending[:n])
			c.pending = c.pending[n:]
			c.mu.Unlock()
			if n == 0 {
				break
			}
			c.runBatch(ops)
		}
	}
}

// close runs what is queued and stops the loop.
func (c *committer) close() {
	close(c.stop)
	c.wg.Wait()
}

func (c *committer) runBatch(ops []*writeOp) {
	live := ops[:0:0]
	for _, op := range ops {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
		live = append(live, op)
	}
	if ops = live; len(ops) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	start := time.Now()
	err := c.try(ctx, ops)
	c.nanos.Add(int64(time.Since(start)))
	if err == nil {
		c.commits.Add(1)
		c.writes.Add(int64(len(ops)))
	}
	if err == nil || len(ops) == 1 || isUnavailable(err) {
		for _, op := range ops {
			op.done <- err
		}
		return
	}
	// Something in the batch failed: each operation alone, so only the
	// failing one fails.
	for _, op := range ops {
		op.done <- c.try(ctx, []*writeOp{op})
	}
}

// try runs ops in one transaction, again on a deadlock or serialisation
// failure.
func (c *committer) try(ctx context.Context, ops []*writeOp) error {
	var err error
	for range 3 {
		err = pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
			b := &batch{}
			for _, op := range ops {
				if err := op.run(ctx, tx, b); err != nil {
					return err
				}
			}
			return b.flush(ctx, tx)
		})
		if !isRetryable(err) {
			break
		}
	}
	return err
}

// CommitStats reports the issuance path's transactions: how many committed,
// the writes they carried, and the seconds spent running them (the app
// exports them as metrics; writes per commit show the grouping).
func (s *Store) CommitStats() (commits, writes int64, seconds float64) {
	c := s.group
	return c.commits.Load(), c.writes.Load(), time.Duration(c.nanos.Load()).Seconds()
}

// write runs fn through the committer after checking ctx, and maps errors
// like Store.tx.
func (s *Store) write(ctx context.Context, what string, fn func(ctx context.Context, tx pgx.Tx, b *batch) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.group.do(ctx, fn)
	if errors.Is(err, errClosed) {
		return err
	}
	if ctx.Err() != nil && err != nil {
		// The caller's deadline passed waiting for the database: the
		// database is too slow to serve, which the center answers as
		// unavailable.
		return fmt.Errorf("pgstore: %s: %w: %w", what, store.ErrUnavailable, err)
	}
	return s.result(context.Background(), what, err)
}
