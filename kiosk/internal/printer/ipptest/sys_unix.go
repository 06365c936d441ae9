//go:build unix

package ipptest

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// removeStalePidFile removes a PID file whose process is gone (left by a
// killed daemon), which would stop the daemon from starting.
func removeStalePidFile(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
		return // alive
	}
	os.Remove(path)
}

// lockFile takes an exclusive flock on path, released by the returned
// function (and by the kernel if the process dies).
func lockFile(t testing.TB, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("ipptest: lock file: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("ipptest: lock: %v", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}
