//go:build !unix

package ipptest

import "testing"

// removeStalePidFile: the daemons ipptest starts exist on Unix only.
func removeStalePidFile(string) {}

// lockFile: ippeveprinter, D-Bus and avahi are Unix programs; elsewhere
// Start fails before it needs the lock.
func lockFile(testing.TB, string) func() { return func() {} }
