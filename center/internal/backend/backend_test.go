package backend

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgtest"
	"github.com/kioskcert/kioskcert/center/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The config's store picks the implementation; an existing center.json
// without "store" keeps its bbolt file.
func TestOpenPicksStore(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		store func(t *testing.T) string
		check func(t *testing.T, b *Backend)
	}{
		{"default bolt", func(*testing.T) string { return "" }, func(t *testing.T, b *Backend) {
			if _, ok := b.Store.(*boltstore.Store); !ok {
				t.Errorf("store is %T, want bbolt", b.Store)
			}
		}},
		{"bolt path", func(*testing.T) string { return "bolt:other.db" }, func(t *testing.T, b *Backend) {
			if _, ok := b.Store.(*boltstore.Store); !ok {
				t.Errorf("store is %T, want bbolt", b.Store)
			}
		}},
		{"postgres", func(t *testing.T) string { return pgtest.NewDatabase(t) }, func(t *testing.T, b *Backend) {
			if _, ok := b.Store.(*pgstore.Store); !ok {
				t.Errorf("store is %T, want PostgreSQL", b.Store)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := config.Default()
			cfg.Store = tc.store(t)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			cfg.SetDir(dir)
			if err := os.MkdirAll(cfg.Path(cfg.KeysDir), 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := records.GenerateMasterKeyFile(cfg.Path(cfg.MasterKeyFile)); err != nil {
				t.Fatal(err)
			}
			b, err := Open(ctx, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			tc.check(t, b)
			if err := b.Store.EnrollKiosk(ctx, storetest.NewKiosk("b")); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Records.Counts(ctx); err != nil {
				t.Fatal(err)
			}
			if kind, loc := cfg.StoreLocation(); kind == config.StoreBolt && filepath.Dir(loc) != dir {
				t.Errorf("bbolt store at %s, want it in the center's directory", loc)
			}
		})
	}
}
