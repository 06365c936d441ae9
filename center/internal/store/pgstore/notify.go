package pgstore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// changeChannel is the NOTIFY channel of committed changes.
const changeChannel = "kioskcert_changes"

// notify queues a change notification in tx: PostgreSQL delivers it to
// every listener when (and only if) tx commits.
func notify(ctx context.Context, tx pgx.Tx, kind store.ChangeKind, id string) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", changeChannel, string(kind)+":"+id)
	return err
}

// Watch timing.
const (
	// watchPing is how often an idle listening connection is checked, so
	// a connection that died silently is noticed.
	watchPing = 15 * time.Second
	// watchMaxBackoff caps the wait between reconnection attempts.
	watchMaxBackoff = 5 * time.Second
)

// WatchChanges implements store.Notifier with LISTEN on its own connection
// (outside the pool). After each (re)connection it calls fn with
// ChangeResync: whatever was committed while it was not listening is
// covered by re-reading.
func (s *Store) WatchChanges(ctx context.Context, fn func(store.Change)) error {
	backoff := 100 * time.Millisecond
	for {
		err := s.listen(ctx, fn, &backoff)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.closed.Load() {
			return errClosed
		}
		_ = err // the next connection attempt says whether it persists
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}

func (s *Store) listen(ctx context.Context, fn func(store.Change), backoff *time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, s.pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+changeChannel); err != nil {
		return err
	}
	*backoff = 100 * time.Millisecond
	fn(store.Change{Kind: store.ChangeResync})
	for {
		wctx, cancel := context.WithTimeout(ctx, watchPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			kind, id, _ := strings.Cut(n.Payload, ":")
			fn(store.Change{Kind: store.ChangeKind(kind), ID: id})
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded):
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}
