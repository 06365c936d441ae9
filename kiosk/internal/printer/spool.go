package printer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrJobExists is returned by the spool printer when a job of the same
// name was already printed: job names are unique request IDs, so a second
// job with one means two requests collided, which must never be papered
// over by overwriting the first certificate.
var ErrJobExists = errors.New("printer: a job with this name was already printed: job names must be unique request IDs")

// Spool is a printer whose paper is a directory: integrators and the demo
// use it where there is no printer. Each copy of a job becomes a file
// <name>.pdf (copies after the first: <name>.2.pdf, <name>.3.pdf, ...),
// readable by its owner only (0600). Files appear atomically, complete and
// synced, or not at all.
type Spool struct {
	dir string
}

// NewSpool returns a spool printer writing to dir, which must exist.
func NewSpool(dir string) (*Spool, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("printer: spool directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("printer: spool directory %s is not a directory", dir)
	}
	return &Spool{dir: dir}, nil
}

// Status reports ready while the directory exists and is writable, and
// offline otherwise.
func (s *Spool) Status(ctx context.Context) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{State: StateOffline}, fmt.Errorf("%w (%w)", ErrPrinterOffline, err)
	}
	fi, err := os.Stat(s.dir)
	if err != nil || !fi.IsDir() {
		return Status{State: StateOffline, Message: "spool directory missing"}, nil
	}
	f, err := os.CreateTemp(s.dir, ".status-*.tmp")
	if err != nil {
		return Status{State: StateOffline, Message: "spool directory not writable"}, nil
	}
	f.Close()
	os.Remove(f.Name())
	return Status{State: StateReady}, nil
}

// Print writes the job's copies. A name already printed fails with
// ErrJobExists and leaves the earlier files untouched.
func (s *Spool) Print(ctx context.Context, job Job) error {
	if err := ValidateJob(job); err != nil {
		return err
	}
	st, err := s.Status(ctx)
	if err != nil {
		return err
	}
	if err := st.Err(); err != nil {
		return fmt.Errorf("%w (%s)", err, st.Message)
	}
	for i := 1; i <= job.Copies; i++ {
		if err := checkContext(ctx); err != nil {
			return err
		}
		name := job.Name + ".pdf"
		if i > 1 {
			name = fmt.Sprintf("%s.%d.pdf", job.Name, i)
		}
		if err := s.writeAtomic(name, job.PDF); err != nil {
			return err
		}
	}
	return nil
}

// writeAtomic writes data to name in the spool directory: a temporary file
// in the same directory (same file system), synced, then hard-linked to
// its final name, which fails rather than replaces if the name exists, then
// the directory is synced so the new entry survives a power cut.
func (s *Spool) writeAtomic(name string, data []byte) (err error) {
	final := filepath.Join(s.dir, name)
	tmp, err := os.CreateTemp(s.dir, "."+name+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("%w: creating a spool file: %v", ErrPrinterOffline, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // the link keeps the data; the temporary name goes
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("printer: spool file permissions: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("%w: writing a spool file: %v", ErrPrinterOffline, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%w: syncing a spool file: %v", ErrPrinterOffline, err)
	}
	if err := os.Link(tmp.Name(), final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w (%s)", ErrJobExists, name)
		}
		return fmt.Errorf("%w: publishing a spool file: %v", ErrPrinterOffline, err)
	}
	if d, err := os.Open(s.dir); err == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil {
			return fmt.Errorf("%w: syncing the spool directory: %v", ErrPrinterOffline, serr)
		}
	}
	return nil
}
