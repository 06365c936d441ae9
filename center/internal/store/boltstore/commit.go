package boltstore

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// committer is the store's group commit: the writes on the issuance path
// queue here, and one goroutine commits everything queued in one
// transaction and one fsync, then answers each caller. A caller alone is
// committed at once (no timer, unlike bbolt's DB.Batch, whose 10 ms delay
// would sit on every request's latency); callers that arrive while a
// commit is syncing are gathered into the next one, so the batch grows
// with the load and the fsync rate stays bounded by the disk, not by the
// request rate.
//
// A transaction fails as a whole: when one function in it returns an
// error, the batch is rolled back and its functions run again, the failing
// one alone. Functions therefore only read and write inside the
// transaction (safe to run twice) and report refusals through captured
// results rather than errors.
type committer struct {
	db      *bolt.DB
	maxSize int

	mu      sync.Mutex
	queue   []*pendingWrite
	wake    chan struct{}
	closed  bool
	stopped chan struct{}

	// commits and writes count transactions and the writes in them;
	// commitNanos is the time spent committing (CPU and fsync).
	commits, writes, commitNanos atomic.Int64
}

type pendingWrite struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// maxBatch bounds one transaction, so a huge backlog does not make one
// commit (and every caller in it) wait for all of it.
const maxBatch = 1000

var errCommitterClosed = errors.New("boltstore: store is closed")

func newCommitter(db *bolt.DB) *committer {
	c := &committer{db: db, maxSize: maxBatch, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go c.loop()
	return c
}

// do runs fn in a transaction shared with concurrent callers and returns
// once that transaction is durable (or failed).
func (c *committer) do(fn func(*bolt.Tx) error) error {
	w := &pendingWrite{fn: fn, done: make(chan error, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errCommitterClosed
	}
	c.queue = append(c.queue, w)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	c.mu.Unlock()
	return <-w.done
}

func (c *committer) loop() {
	defer close(c.stopped)
	for range c.wake {
		c.drain()
	}
	c.drain() // what was queued before close
}

func (c *committer) drain() {
	for {
		c.mu.Lock()
		n := min(len(c.queue), c.maxSize)
		batch := c.queue[:n:n]
		c.queue = c.queue[n:]
		if len(c.queue) == 0 {
			c.queue = nil
		}
		c.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		c.commit(batch)
	}
}

// commit runs batch in one transaction; on failure it retries without the
// function that failed, which then runs alone to get its own answer.
func (c *committer) commit(batch []*pendingWrite) {
	start := time.Now()
	defer func() { c.commitNanos.Add(int64(time.Since(start))) }()
	for len(batch) > 0 {
		failed := -1
		err := c.db.Update(func(tx *bolt.Tx) error {
			for i, w := range batch {
				if err := safeCall(w.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		c.commits.Add(1)
		if failed < 0 {
			c.writes.Add(int64(len(batch)))
			for _, w := range batch {
				w.done <- err
			}
			return
		}
		w := batch[failed]
		batch = append(batch[:failed:failed], batch[failed+1:]...)
		c.commits.Add(1)
		w.done <- c.db.Update(func(tx *bolt.Tx) error { return safeCall(w.fn, tx) })
	}
}

func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("boltstore: write panicked: %v", p)
		}
	}()
	return fn(tx)
}

// close stops the committer after the queued writes are committed.
func (c *committer) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.wake)
	c.mu.Unlock()
	<-c.stopped
}
