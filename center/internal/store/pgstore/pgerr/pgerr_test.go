package pgerr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

func TestClassification(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: code}) }
	tests := []struct {
		name                   string
		err                    error
		unavailable, retryable bool
		unique, undefinedTable bool
	}{
		{"nil", nil, false, false, false, false},
		{"connection exception", pg("08006"), true, false, false, false},
		{"admin shutdown", pg("57P01"), true, false, false, false},
		{"cannot connect now", pg("57P03"), true, false, false, false},
		{"too many connections", pg("53300"), true, false, false, false},
		{"read-only standby", pg("25006"), true, false, false, false},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true, false, false, false},
		{"closed pool", errors.New("closed pool"), true, false, false, false},
		{"deadlock", pg("40P01"), false, true, false, false},
		{"serialization failure", pg("40001"), false, true, false, false},
		{"unique violation", pg("23505"), false, false, true, false},
		{"undefined table", pg("42P01"), false, false, false, true},
		{"syntax error", pg("42601"), false, false, false, false},
		{"cancelled", context.Canceled, false, false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err != nil {
				if got := IsUnavailable(tc.err); got != tc.unavailable {
					t.Errorf("IsUnavailable = %v", got)
				}
			}
			if got := errors.Is(Unavailable(tc.err), store.ErrUnavailable); got != tc.unavailable {
				t.Errorf("Unavailable marks it: %v", got)
			}
			if got := IsRetryable(tc.err); got != tc.retryable {
				t.Errorf("IsRetryable = %v", got)
			}
			if got := IsUniqueViolation(tc.err, ""); got != tc.unique {
				t.Errorf("IsUniqueViolation = %v", got)
			}
			if got := IsUndefinedTable(tc.err); got != tc.undefinedTable {
				t.Errorf("IsUndefinedTable = %v", got)
			}
		})
	}
	// Marked once, and the original stays inside.
	marked := Unavailable(Unavailable(pg("08006")))
	var pgErr *pgconn.PgError
	if !errors.As(marked, &pgErr) || pgErr.Code != "08006" {
		t.Errorf("the marked error lost the PostgreSQL error: %v", marked)
	}
	if !IsUniqueViolation(fmt.Errorf("x: %w", &pgconn.PgError{Code: "23505", ConstraintName: "kiosks_pkey"}), "kiosks_pkey") ||
		IsUniqueViolation(fmt.Errorf("x: %w", &pgconn.PgError{Code: "23505", ConstraintName: "other"}), "kiosks_pkey") {
		t.Error("IsUniqueViolation does not tell constraints apart")
	}
}
