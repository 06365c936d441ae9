// Package boltfile opens the center's bbolt database files the one way the
// center allows: mode 0600, a bounded wait for the file lock, and a refusal
// to use a file other users can read.
//
// bbolt takes an exclusive flock on the file. With bbolt's default zero
// timeout a second process (an operator command while the center runs, or a
// second center) would wait forever; Open waits at most Options.Timeout and
// then fails with ErrLocked, naming the file. The store (boltstore) and the
// records (records) can share one *bbolt.DB opened here, or use a file each.
package boltfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors returned by Open.
var (
	// ErrLocked means another process (or another Open in this process)
	// holds the file lock and did not release it within the timeout.
	ErrLocked = errors.New("boltfile: database file is locked by another process")
	// ErrPermissions means the existing file is readable or writable by
	// group or others; fix it with chmod 600.
	ErrPermissions = errors.New("boltfile: database file permissions too open")
)

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = time.Second

// Mode is the permission the database file is created with.
const Mode fs.FileMode = 0o600

// Options tunes Open.
type Options struct {
	// Timeout bounds the wait for the file lock; zero means DefaultTimeout.
	// A negative value is refused: bbolt would wait forever.
	Timeout time.Duration
	// ReadOnly opens the file with a shared lock for reading only.
	ReadOnly bool
	// NoSync skips fsync after each commit. Only for tests and benchmarks:
	// a crash can lose committed transactions.
	NoSync bool
	// NoFreelistSync does not write the free-page list at each commit
	// (fewer pages written per commit, so faster commits) and rebuilds it
	// at open by scanning the file, which makes opening a large file
	// slower. For files with many small commits: the center's store.
	NoFreelistSync bool
}

// Open opens (creating if needed) the bbolt file at path.
func Open(path string, opts Options) (*bolt.DB, error) {
	timeout := opts.Timeout
	switch {
	case timeout == 0:
		timeout = DefaultTimeout
	case timeout < 0:
		return nil, fmt.Errorf("boltfile: negative lock timeout for %s", path)
	}
	// Check an existing file before bbolt opens it: bbolt applies the mode
	// only when it creates the file.
	if fi, err := os.Stat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("boltfile: %s is not a regular file", path)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("%w: %s has mode %04o; run chmod 600 on it (only the center's user may read it)", ErrPermissions, path, perm)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("boltfile: checking %s: %w", path, err)
	}
	db, err := bolt.Open(path, Mode, &bolt.Options{
		Timeout:        timeout,
		ReadOnly:       opts.ReadOnly,
		NoSync:         opts.NoSync,
		NoFreelistSync: opts.NoFreelistSync,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: could not obtain the bbolt file lock on %s within %s; stop the other process using it (issuance center or operator command) and retry: %w", ErrLocked, path, timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("boltfile: opening %s: %w", path, err)
	}
	return db, nil
}
