package boltfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("created with mode %04o, want no group/other bits", perm)
	}
}

// A second Open of a locked file fails within the timeout with ErrLocked
// and names the file, instead of hanging. flock locks belong to the open file
// description, so a second open in the same process conflicts exactly as a
// second process would.
func TestOpenLockedFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	done := make(chan error, 1)
	go func() {
		db2, err := Open(path, Options{Timeout: 50 * time.Millisecond})
		if err == nil {
			db2.Close()
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("second Open did not return: it waits for the lock without a timeout")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: got %v, want ErrLocked", err)
	}
	for _, want := range []string{path, "lock"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// Once the first holder closes, the file opens again.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db3, err := Open(path, Options{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db3.Close()
}

func TestOpenRefusesOpenPermissions(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o644, false},
		{0o606, false},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.db")
			db, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			db, err = Open(path, Options{ReadOnly: tc.mode&0o200 == 0})
			if tc.ok {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				db.Close()
				return
			}
			if !errors.Is(err, ErrPermissions) {
				t.Fatalf("Open: got %v, want ErrPermissions", err)
			}
			if !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("error %q does not say how to fix it", err)
			}
		})
	}
}

func TestOpenRefusesNegativeTimeout(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "c.db"), Options{Timeout: -1}); err == nil {
		t.Fatal("negative timeout accepted")
	}
}

func TestOpenRefusesDirectory(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{}); err == nil {
		t.Fatal("directory accepted")
	}
}
