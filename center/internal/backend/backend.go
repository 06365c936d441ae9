// Package backend opens what a center keeps — the store and the encrypted
// records — from the center's configuration, so that nothing above it
// knows which database holds them. The store is a bbolt file (the embedded
// default, config "store": "bolt:PATH") or PostgreSQL ("postgres://…",
// shared by several center instances). The records follow the store
// unless the config's "records" says otherwise: a bbolt file
// (boltrecords) beside a bolt store, the store's PostgreSQL database
// (pgrecords) beside a PostgreSQL one, so every instance looks up the
// same records.
//
// Records are reached through Records, the operations the center and its
// operator procedures need, whatever the database.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/boltrecords"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
	"github.com/kioskcert/kioskcert/center/internal/records/pgrecords"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
)

// Records is what the center does with the vaccination records: look one
// up (issuance) and the operators' procedures.
type Records interface {
	// Lookup returns a person's record in one municipality's region.
	Lookup(ctx context.Context, municipality, myNumber string) (records.Record, error)
	// ImportCSV imports a municipality's ledger export (docs/RECORDS.md),
	// all or nothing: the whole ledger (records.ModeFull, the default) or
	// a file of changes (records.ModeChanges), in UTF-8 or CP932
	// (encoding "auto", "utf-8" or "cp932"; empty is auto).
	ImportCSV(ctx context.Context, municipality, operator string, mode records.ImportMode, encoding string, r io.Reader) (records.ImportResult, error)
	// StartImportCSV begins the same import on a goroutine of its own and
	// returns at once, so its progress can be watched (the operations
	// API's import jobs). size is the file's size in bytes for progress
	// (0: unknown). Cancelling ctx aborts the import; the records stay as
	// they were.
	StartImportCSV(ctx context.Context, municipality, operator string, mode records.ImportMode, encoding string, size int64, r io.Reader) (RunningImport, error)
	// SetFlag and ClearFlag change one person's record flags (docs/RECORDS.md).
	SetFlag(ctx context.Context, municipality, myNumber, operator string, c records.FlagChange) error
	ClearFlag(ctx context.Context, municipality, myNumber, operator string, k records.FlagKind) error
	// Counts returns the number of records per region.
	Counts(ctx context.Context) ([]records.RegionCount, error)
	// DeleteRegion destroys a municipality's records and keys and returns
	// how many records it held.
	DeleteRegion(ctx context.Context, municipality, operator string) (int, error)
}

// RunningImport is an import running in the background (ledgercsv.Importer).
type RunningImport interface {
	// Progress is a snapshot; safe from any goroutine.
	Progress() records.Progress
	// Done is closed when the import has ended.
	Done() <-chan struct{}
	// Wait waits for the end: the result, or why nothing was imported (a
	// *ledgercsv.Error lists the file's problems by row and column).
	Wait() (records.ImportResult, error)
}

// Backend is an opened store and records.
type Backend struct {
	Store   store.Store
	Records Records
	closers []io.Closer
}

// Open opens the backend cfg names.
func Open(ctx context.Context, cfg *config.Config) (*Backend, error) {
	b := &Backend{}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	lock := boltfile.Options{Timeout: cfg.LockTimeout.Duration}
	st, err := openStore(ctx, cfg, lock)
	if err != nil {
		return nil, err
	}
	b.Store = st
	b.closers = append(b.closers, st)
	master, err := records.LoadMasterKey(cfg.Path(cfg.MasterKeyFile))
	if err != nil {
		return nil, err
	}
	recordsBackend, err := b.openRecords(ctx, cfg, lock)
	if err != nil {
		return nil, err
	}
	vault, err := records.Open(ctx, recordsBackend, master, records.Options{})
	if err != nil {
		return nil, err
	}
	b.Records = vaultRecords{vault}
	ok = true
	return b, nil
}

// OpenTimeout bounds connecting to (and migrating) a PostgreSQL store.
const OpenTimeout = 30 * time.Second

func openStore(ctx context.Context, cfg *config.Config, lock boltfile.Options) (store.Store, error) {
	kind, loc := cfg.StoreLocation()
	if kind == config.StorePostgres {
		ctx, cancel := context.WithTimeout(ctx, OpenTimeout)
		defer cancel()
		return pgstore.Open(ctx, loc, pgstore.Options{})
	}
	// The store takes a commit per request step: keep commits small.
	return boltstore.Open(loc, boltfile.Options{Timeout: lock.Timeout, NoFreelistSync: true})
}

// openRecords opens the records' backend the config names.
func (b *Backend) openRecords(ctx context.Context, cfg *config.Config, lock boltfile.Options) (records.Backend, error) {
	kind, loc := cfg.RecordsLocation()
	if kind == config.StorePostgres {
		ctx, cancel := context.WithTimeout(ctx, OpenTimeout)
		defer cancel()
		rb, err := pgrecords.Open(ctx, loc, pgrecords.Options{})
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, rb)
		return rb, nil
	}
	db, err := boltfile.Open(loc, lock)
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, db)
	return boltrecords.New(db)
}

// Close closes everything Open opened.
func (b *Backend) Close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i].Close())
	}
	b.closers = nil
	return errors.Join(errs...)
}

// vaultRecords adapts records.Vault (and its CSV importer) to Records.
type vaultRecords struct{ v *records.Vault }

func (r vaultRecords) Lookup(ctx context.Context, municipality, myNumber string) (records.Record, error) {
	return r.v.Lookup(ctx, municipality, myNumber)
}

func (r vaultRecords) ImportCSV(ctx context.Context, municipality, operator string, mode records.ImportMode, encoding string, in io.Reader) (records.ImportResult, error) {
	enc, err := ledgercsv.ParseEncoding(encoding)
	if err != nil {
		return records.ImportResult{Municipality: municipality}, err
	}
	if mode == "" {
		mode = records.ModeFull
	}
	return ledgercsv.Import(ctx, r.v, in, municipality, operator, ledgercsv.Options{
		Mode: mode, Encoding: enc,
		KnownProduct: func(c string) bool { _, err := vaccine.Lookup(c); return err == nil },
	})
}

func (r vaultRecords) StartImportCSV(ctx context.Context, municipality, operator string, mode records.ImportMode, encoding string, size int64, in io.Reader) (RunningImport, error) {
	enc, err := ledgercsv.ParseEncoding(encoding)
	if err != nil {
		return nil, err
	}
	if mode == "" {
		mode = records.ModeFull
	}
	im, err := ledgercsv.Start(ctx, r.v, in, municipality, operator, ledgercsv.Options{
		Mode: mode, Encoding: enc, Size: size,
		KnownProduct: func(c string) bool { _, err := vaccine.Lookup(c); return err == nil },
	})
	if err != nil {
		return nil, err
	}
	return im, nil
}

func (r vaultRecords) SetFlag(ctx context.Context, municipality, myNumber, operator string, c records.FlagChange) error {
	_, err := r.v.SetFlag(ctx, municipality, myNumber, operator, c)
	return err
}

func (r vaultRecords) ClearFlag(ctx context.Context, municipality, myNumber, operator string, k records.FlagKind) error {
	_, err := r.v.ClearFlag(ctx, municipality, myNumber, operator, k)
	return err
}

func (r vaultRecords) Counts(ctx context.Context) ([]records.RegionCount, error) {
	return r.v.Counts(ctx)
}

func (r vaultRecords) DeleteRegion(ctx context.Context, municipality, operator string) (int, error) {
	region, err := r.v.Region(ctx, municipality)
	if err != nil {
		return 0, err
	}
	op, err := region.Delete(ctx, operator)
	if err != nil {
		return 0, fmt.Errorf("records: delete region %s: %w", municipality, err)
	}
	return op.Records, nil
}
