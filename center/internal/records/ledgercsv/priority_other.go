//go:build !linux

package ledgercsv

// backgroundThread does nothing where thread priorities are not set: the
// import runs at the process's priority.
func backgroundThread() {}
