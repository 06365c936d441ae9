package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"strings"
	"sync"
	"time"
)

// HandshakeListener completes each kiosk's TLS handshake before handing the
// connection to the HTTP server, with at most maxHandshakes in progress.
// When every kiosk in the country reconnects at once (a center restart),
// the handshakes queue in the kernel's accept backlog instead of all
// starting together and starving the CPU: connections already up keep
// being served, and the reconnecting kiosks come back in a steady stream,
// each retrying with jittered back-off if it times out.
type HandshakeListener struct {
	inner   net.Listener
	config  *tls.Config
	timeout time.Duration
	slots   chan struct{}
	ready   chan net.Conn
	failed  func()
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	errMu   sync.Mutex
	err     error
}

// HandshakeListener wraps inner. The HTTP server must Serve (not ServeTLS)
// on it: connections come out as *tls.Conn with the handshake done.
func (s *Server) HandshakeListener(inner net.Listener, config *tls.Config, maxHandshakes int) *HandshakeListener {
	if maxHandshakes <= 0 {
		maxHandshakes = 256
	}
	l := &HandshakeListener{
		inner: inner, config: config, timeout: 10 * time.Second,
		slots: make(chan struct{}, maxHandshakes), ready: make(chan net.Conn),
		failed: s.cfg.Metrics.handshakeFailures.Inc, done: make(chan struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *HandshakeListener) acceptLoop() {
	defer l.wg.Done()
	for {
		select {
		case l.slots <- struct{}{}: // wait for a free handshake slot
		case <-l.done:
			return
		}
		raw, err := l.inner.Accept()
		if err != nil {
			<-l.slots
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.errMu.Lock()
			l.err = err
			l.errMu.Unlock()
			l.Close()
			return
		}
		l.wg.Add(1)
		go l.handshake(raw)
	}
}

func (l *HandshakeListener) handshake(raw net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(raw, l.config)
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-l.slots
	if err != nil {
		l.failed()
		raw.Close()
		return
	}
	select {
	case l.ready <- tc:
	case <-l.done:
		tc.Close()
	}
}

// Accept returns the next connection whose handshake completed.
func (l *HandshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		l.errMu.Lock()
		defer l.errMu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; handshakes in progress are abandoned.
func (l *HandshakeListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// Wait waits for the listener's goroutines after Close.
func (l *HandshakeListener) Wait() { l.wg.Wait() }

// Addr is the listening address.
func (l *HandshakeListener) Addr() net.Addr { return l.inner.Addr() }

// ErrorLog is the HTTP server's error log for the kiosk listener: failed
// TLS handshakes (anyone on the network can cause them) are counted in a
// metric and logged at most once every 10 s with the number suppressed,
// everything else is logged as a warning, sampled the same way.
func (s *Server) ErrorLog() *log.Logger {
	return log.New(errorLogWriter{s}, "", 0)
}

type errorLogWriter struct{ s *Server }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		w.s.cfg.Metrics.handshakeFailures.Inc()
		w.s.sampled.Warn("tls", "TLS handshakes failed (count in kioskcert_center_tls_handshake_failures_total)")
		return len(p), nil
	}
	// Other server errors name no kiosk data, but may repeat: sample them.
	w.s.sampled.Warn("http", "kiosk listener error", "err", msg)
	return len(p), nil
}
