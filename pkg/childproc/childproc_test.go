//go:build linux

package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// startFromDyingThread starts a child with a parent-death signal from a
// goroutine that locks its thread and returns, which ends that thread.
func startFromDyingThread(t *testing.T, start func(*exec.Cmd) error) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if syscall.Gettid() != syscall.Getpid() {
			errc <- start(cmd) // returning while locked ends the thread
			return
		}
		// The main thread never exits; hold it while a goroutine on another
		// thread does the work.
		go func() {
			runtime.LockOSThread()
			errc <- start(cmd)
		}()
		<-time.After(200 * time.Millisecond)
		runtime.UnlockOSThread()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd
}

func diesWithin(cmd *exec.Cmd, d time.Duration) bool {
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	select {
	case <-exited:
		return true
	case <-time.After(d):
		return false
	}
}

func TestChildOutlivesTheThreadThatAskedForIt(t *testing.T) {
	// The hazard is real: forked directly, the child dies with the thread.
	if direct := startFromDyingThread(t, (*exec.Cmd).Start); !diesWithin(direct, 5*time.Second) {
		t.Fatal("control: a child forked from an exiting thread survived; the test no longer shows the hazard")
	}
	if cmd := startFromDyingThread(t, Start); diesWithin(cmd, time.Second) {
		t.Fatal("child started through Start died when the asking thread exited")
	}
}
