// Package pgerr classifies PostgreSQL errors for the center's PostgreSQL
// packages (pgstore, pgrecords): which mean the database cannot be reached
// (answered "unavailable", so kiosks retry), which may simply be retried,
// and which are unique violations.
package pgerr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Unavailable marks errors that mean the database cannot be reached (or is
// shutting down) with store.ErrUnavailable, so the center answers
// "unavailable" and the kiosk retries.
//
// A deadline reaching here is the caller package's own (a write timeout, a
// connect timeout): callers' cancelled contexts are answered with the
// context's error before. A database that hangs is unavailable.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.Canceled) {
		return err
	}
	if IsUnavailable(err) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// IsUnavailable reports an error that means the database cannot be
// reached: the connection failed or broke, the server is shutting down or
// starting, has no connection slot left, or is a read-only standby.
func IsUnavailable(err error) bool {
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

// IsRetryable reports a deadlock or serialisation failure: the transaction
// may simply run again.
func IsRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// IsUniqueViolation reports a unique violation, of constraint if it is not
// empty.
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (constraint == "" || pgErr.ConstraintName == constraint)
}

// IsUndefinedTable reports a reference to a table that does not exist
// (dropped meanwhile).
func IsUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}
