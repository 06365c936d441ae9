//go:build !windows

package agent

import (
	"fmt"
	"os"
)

// createPrivate creates path with mode 0600 (the umask can only take bits
// away), failing if it exists.
func createPrivate(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// checkTokenFile refuses a token file with any group or other permission
// bit, or one that is not a regular file.
func checkTokenFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("agent: integrator token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("agent: integrator token file %s is not a regular file", f.Name())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w (%s has mode %04o; want 0600 or stricter)", ErrTokenFilePermissions, f.Name(), perm)
	}
	return nil
}
