package ledgercsv

import (
	"runtime"
	"syscall"
)

// importNice is the nice value of an import's thread: above the center's
// default 0, so under CPU contention the kernel runs the threads serving
// kiosks first, while an idle machine still gives the import all it asks.
const importNice = 10

// backgroundThread locks the calling goroutine to its OS thread and lowers
// that thread's priority (Linux applies PRIO_PROCESS with a thread ID to
// that thread alone). The goroutine must not unlock: when it exits, the
// thread exits with it instead of returning to the pool with the lowered
// priority.
func backgroundThread() {
	runtime.LockOSThread()
	// Best effort: a failure leaves the import at normal priority.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), importNice)
}
