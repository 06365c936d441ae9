package pgrecords

import (
	"context"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/recordstest"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func openTemp(t testing.TB, opts Options) *Backend {
	t.Helper()
	// Generous: a loaded machine can take long to start a backend.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := Open(ctx, pgtest.NewDatabase(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	recordstest.Run(t, func(t *testing.T) records.Backend { return openTemp(t, Options{}) })
}

// With tiny batches every build, merge and drop crosses transaction
// boundaries many times.
func TestConformanceSmallBatches(t *testing.T) {
	recordstest.Run(t, func(t *testing.T) records.Backend { return openTemp(t, Options{Batch: 2}) })
}
