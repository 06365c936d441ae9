package leaktest

import (
	"testing"
)

// parked closes started, runs until stop is closed, then closes done.
func parked(started, stop, done chan struct{}) {
	defer close(done)
	close(started)
	<-stop
}

// startParked starts parked and returns once it runs: before that, its
// stack names only the go statement's wrapper in the test.
func startParked() (stop, done chan struct{}) {
	stop, done = make(chan struct{}), make(chan struct{})
	started := make(chan struct{})
	go parked(started, stop, done)
	<-started
	return stop, done
}

func TestRunningFindsAndForgets(t *testing.T) {
	const prefix = "kiosk/internal/leaktest.parked"
	stop, done := startParked()
	if got := Running(prefix); len(got) != 1 {
		t.Fatalf("Running found %d goroutines, want the parked one:\n%v", len(got), got)
	}
	if got := Running("kiosk/internal/leaktest.nothing"); len(got) != 0 {
		t.Fatalf("Running found %d goroutines for a function that does not exist", len(got))
	}
	// The caller's own goroutine is never reported, though it runs this package.
	if got := Running("kiosk/internal/leaktest.TestRunningFindsAndForgets"); len(got) != 0 {
		t.Fatalf("Running reported the caller:\n%v", got)
	}
	close(stop)
	<-done
	Check(t, prefix)
}

func TestCheckFailsForAnUnjoinedGoroutine(t *testing.T) {
	stop, done := startParked()
	defer func() { close(stop); <-done }()
	ft := &fakeT{TB: t}
	func() {
		defer func() { recover() }() // Fatalf ends the check by panicking here
		Check(ft, "kiosk/internal/leaktest.parked")
	}()
	if !ft.failed {
		t.Fatal("Check passed with a goroutine still parked")
	}
}

// fakeT records a failure instead of ending the real test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}
