package ipptest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const (
	systemBusSocket = "/run/dbus/system_bus_socket"
	dbusPidFile     = "/run/dbus/pid"
	daemonWait      = 10 * time.Second
)

// ensureDNSSD makes sure avahi-daemon (and the D-Bus system bus it needs)
// is running. Test packages run in parallel processes, so the check and
// start happen under an exclusive lock on a shared lock file; whoever
// comes second finds the daemons running.
func ensureDNSSD(t testing.TB) {
	t.Helper()
	if avahiRunning() {
		return
	}
	unlock := lockFile(t, filepath.Join(os.TempDir(), "kioskcert-ipptest-dnssd.lock"))
	defer unlock()
	if avahiRunning() {
		return
	}
	for _, prog := range []string{"dbus-daemon", "avahi-daemon"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatal(missing(prog))
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("ipptest: avahi-daemon is not running and the test is not root: start dbus and avahi-daemon (as CI does, running the tests as root)")
	}
	if !busUp() {
		if err := os.MkdirAll(filepath.Dir(systemBusSocket), 0o755); err != nil {
			t.Fatalf("ipptest: %v", err)
		}
		removeStalePidFile(dbusPidFile)
		if out, err := exec.Command("dbus-daemon", "--system", "--fork").CombinedOutput(); err != nil && !busUp() {
			t.Fatalf("ipptest: starting dbus-daemon: %v: %s", err, out)
		}
		if !waitFor(busUp) {
			t.Fatal("ipptest: the D-Bus system bus did not come up")
		}
	}
	if out, err := exec.Command("avahi-daemon", "-D", "--no-drop-root", "--no-chroot").CombinedOutput(); err != nil && !avahiRunning() {
		t.Fatalf("ipptest: starting avahi-daemon: %v: %s", err, out)
	}
	if !waitFor(avahiRunning) {
		t.Fatal("ipptest: avahi-daemon did not come up")
	}
}

// avahiRunning asks avahi-daemon itself (it checks its PID file and that
// the process is alive).
func avahiRunning() bool {
	return exec.Command("avahi-daemon", "--check").Run() == nil
}

func busUp() bool {
	c, err := net.DialTimeout("unix", systemBusSocket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func waitFor(ok func() bool) bool {
	for end := time.Now().Add(daemonWait); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return false
}
