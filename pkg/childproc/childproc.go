// Package childproc starts helper processes (PostgreSQL, haproxy, pcscd,
// ippeveprinter, center instances) that must die with the process that
// started them.
//
// Linux delivers a child's parent-death signal (SysProcAttr.Pdeathsig) when
// the *thread* that forked it exits, not the process. Go normally keeps its
// threads, but a goroutine that locks its thread and returns without
// unlocking takes the thread down with it (the records importer does this
// to run at a lower priority). A child forked from such a thread is killed
// in the middle of a run: a test's PostgreSQL server closed every connection
// this way. Start forks from one thread that is locked for the life of the
// process and so never exits.
package childproc

import (
	"os/exec"
	"runtime"
	"sync"
)

type request struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	once     sync.Once
	requests chan request
)

// Start starts cmd as cmd.Start does, so that on Linux the child receives
// SIGKILL (or the Pdeathsig already set in cmd.SysProcAttr) when this
// process dies, and only then: it forks from a thread that lives as long
// as the process.
func Start(cmd *exec.Cmd) error {
	setDeathSignal(cmd)
	once.Do(func() {
		requests = make(chan request)
		go spawner()
	})
	r := request{cmd: cmd, done: make(chan error, 1)}
	requests <- r
	return <-r.done
}

func spawner() {
	// Never unlocked: the goroutine and its thread live until the process
	// exits.
	runtime.LockOSThread()
	for r := range requests {
		r.done <- r.cmd.Start()
	}
}
