package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/pkg/childproc"
)

// HAProxy is Debian's haproxy running as a TCP load balancer in front of
// the instances' kiosk listeners. TLS passes through (mode tcp): the
// kiosks' mutual TLS ends at the center instance, as it must.
type HAProxy struct {
	// Addr is where kiosks connect.
	Addr   string
	Config string
	cmd    *exec.Cmd
	exited chan error
}

// HAProxyConfig is the configuration StartHAProxy writes: TCP mode,
// round-robin over the backends, a TCP health check every 500 ms (a dead
// instance is out after two failed checks, back after one good one), and
// redispatch, so a connection to a dead instance is retried on another.
func HAProxyConfig(listen string, backends []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    # Two descriptors per connection; the process limit here is 20,000.
    maxconn 8000
    log stderr format raw local0 warning

defaults
    mode tcp
    log global
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 1s

frontend kiosks
    bind %s
    default_backend centers

backend centers
    balance roundrobin
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
`, listen)
	for i, addr := range backends {
		fmt.Fprintf(&b, "    server center-%d %s check\n", i, addr)
	}
	return b.String()
}

// StartHAProxy writes the configuration into dir and starts haproxy in the
// foreground (its own process, killed with the test binary).
func StartHAProxy(ctx context.Context, dir string, backends []string) (*HAProxy, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			return nil, errors.New("cluster: haproxy is not installed; run .ci/install-deps test (Debian package haproxy)")
		}
		bin = "/usr/sbin/haproxy"
	}
	addr, err := FreePort()
	if err != nil {
		return nil, err
	}
	h := &HAProxy{Addr: addr, Config: filepath.Join(dir, "haproxy.cfg")}
	if err := os.WriteFile(h.Config, []byte(HAProxyConfig(addr, backends)), 0o600); err != nil {
		return nil, err
	}
	check := exec.CommandContext(ctx, bin, "-c", "-f", h.Config)
	if out, err := check.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("cluster: haproxy refuses its configuration: %w\n%s", err, out)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "haproxy.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	h.cmd = exec.Command(bin, "-db", "-f", h.Config)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := childproc.Start(h.cmd); err != nil {
		return nil, fmt.Errorf("cluster: start haproxy: %w", err)
	}
	h.exited = make(chan error, 1)
	go func() { h.exited <- h.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return h, nil
		}
		select {
		case err := <-h.exited:
			return nil, fmt.Errorf("cluster: haproxy exited at start: %v; see %s", err, logf.Name())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.Stop()
			return nil, errors.New("cluster: haproxy not listening within 10 s")
		}
	}
}

// Stop stops haproxy.
func (h *HAProxy) Stop() {
	if h.cmd == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(5 * time.Second):
		h.cmd.Process.Kill()
		<-h.exited
	}
	h.cmd = nil
}
