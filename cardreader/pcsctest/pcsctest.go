// Package pcsctest runs a private pcscd with the vsmartcard vpcd driver, so
// that tests read the virtual card through the same PC/SC stack a kiosk
// uses, without touching (or racing) the machine's own pcscd.
//
// pcscd 1.9.9 always creates its socket at /run/pcscd/pcscd.comm; only the
// client library honours PCSCLITE_CSOCK_NAME. So Start runs pcscd in a
// private mount namespace (unshare -m) with a temporary directory bound over
// /run/pcscd, and points this process's PC/SC client at the socket in that
// directory. The vpcd driver gets a free TCP port of its own through a
// private reader.conf.d. Several test processes (go test ./... runs packages
// in parallel) thus each get their own daemon and reader.
//
// The client library reads PCSCLITE_CSOCK_NAME once per process, so there is
// one daemon per test process: call Start from TestMain, before any PC/SC
// call, and Stop after the tests.
package pcsctest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ebfe/scard"

	"github.com/kioskcert/kioskcert/cardreader/vpcd"
	"github.com/kioskcert/kioskcert/pkg/childproc"
)

// ReaderName is the first slot of the vpcd driver as pcscd names it.
const ReaderName = "Virtual PCD 00 00"

// Daemon is a running private pcscd.
type Daemon struct {
	// VPCDAddr is where the virtual card connects (vpcd.Insert).
	VPCDAddr string
	// Socket is the pcscd socket this process's PC/SC client now uses.
	Socket string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

// Start launches the daemon and waits until its reader is listed. It needs
// root (for the mount namespace) and Debian's pcscd and vsmartcard-vpcd
// packages; the error says which is missing and that `make deps` installs it.
func Start() (*Daemon, error) {
	for _, bin := range []string{"pcscd", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("pcsctest: %s not found; run `make deps` (Debian packages pcscd, vsmartcard-vpcd): %w", bin, err)
		}
	}
	const driver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
	if _, err := os.Stat(driver); err != nil {
		return nil, fmt.Errorf("pcsctest: vpcd driver missing; run `make deps` (Debian package vsmartcard-vpcd): %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("pcsctest: needs root to give pcscd a private /run/pcscd (run the tests as root, as CI does)")
	}
	dir, err := os.MkdirTemp("", "kioskcert-pcscd-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{dir: dir, Socket: filepath.Join(dir, "run", "pcscd.comm")}
	if err := d.start(driver); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start(driver string) error {
	port, err := freePortPair()
	if err != nil {
		return err
	}
	d.VPCDAddr = fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(d.dir, "reader.conf.d")
	run := filepath.Join(d.dir, "run")
	for _, p := range []string{conf, run, "/run/pcscd"} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("pcsctest: %w", err)
		}
	}
	cfg := fmt.Sprintf("FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x%X\nLIBPATH %s\nCHANNELID 0x%X\n", port, driver, port)
	if err := os.WriteFile(filepath.Join(conf, "vpcd"), []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("pcsctest: %w", err)
	}
	d.log, err = os.Create(filepath.Join(d.dir, "pcscd.log"))
	if err != nil {
		return fmt.Errorf("pcsctest: %w", err)
	}
	level := "--error"
	if os.Getenv("PCSCTEST_DEBUG") != "" {
		level = "--debug"
	}
	script := fmt.Sprintf("mount --bind %q /run/pcscd && exec pcscd --foreground --config %q %s", run, conf, level)
	d.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// The daemon must not outlive a test binary that crashes.
	if err := childproc.Start(d.cmd); err != nil {
		return fmt.Errorf("pcsctest: start pcscd: %w", err)
	}
	exited := make(chan struct{})
	d.exited = exited
	go func() { d.cmd.Wait(); close(exited) }()
	if err := os.Setenv("PCSCLITE_CSOCK_NAME", d.Socket); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("pcsctest: pcscd exited at start: %s", d.Log())
		default:
		}
		if names, err := listReaders(); err == nil && contains(names, ReaderName) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("pcsctest: pcscd did not list %q within 15s: %s", ReaderName, d.Log())
}

// Log returns what pcscd printed, for failure messages.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "pcscd.log"))
	return strings.TrimSpace(string(b))
}

// Stop kills the daemon and removes its files.
func (d *Daemon) Stop() {
	if d.exited != nil {
		d.cmd.Process.Kill()
		<-d.exited
	}
	if d.log != nil {
		d.log.Close()
	}
	os.RemoveAll(d.dir)
}

// pollSettle covers one pcscd presence poll (PCSCLITE_STATUS_POLL_RATE is
// 400 ms) so that pcscd has seen a removal before the next card arrives. The
// vpcd driver accepts the next card on the same poll that would have noticed
// the old one gone; a card inserted too soon after another is pulled mid-read
// is taken for the old card, left unpowered, and never announced.
const pollSettle = 600 * time.Millisecond

// Insert puts card into the daemon's reader and waits until pcscd has
// announced it.
func (d *Daemon) Insert(ctx context.Context, card vpcd.Card) (*vpcd.Connection, error) {
	conn, err := vpcd.Insert(ctx, d.VPCDAddr, card)
	if err != nil {
		return nil, err
	}
	if err := d.WaitForCard(ctx, true); err != nil {
		conn.Remove()
		return nil, err
	}
	return conn, nil
}

// Remove pulls the card and waits until pcscd has noticed, so the next
// Insert is seen as a new card.
func (d *Daemon) Remove(ctx context.Context, conn *vpcd.Connection) error {
	conn.Remove()
	if err := d.WaitForCard(ctx, false); err != nil {
		return err
	}
	select {
	case <-time.After(pollSettle):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitForCard polls until the reader reports a card, for tests that insert
// a virtual card and must not race pcscd's polling thread.
func (d *Daemon) WaitForCard(ctx context.Context, present bool) error {
	for {
		ctxS, err := scard.EstablishContext()
		if err == nil {
			st := []scard.ReaderState{{Reader: ReaderName, CurrentState: scard.StateUnaware}}
			err = ctxS.GetStatusChange(st, 0)
			ctxS.Release()
			if err == nil && (st[0].EventState&scard.StatePresent != 0) == present {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pcsctest: card present=%v not seen: %w", present, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func listReaders() ([]string, error) {
	ctx, err := scard.EstablishContext()
	if err != nil {
		return nil, err
	}
	defer ctx.Release()
	return ctx.ListReaders()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// freePortPair finds two consecutive free TCP ports: vpcd listens on the
// configured port and the next one (its second slot).
func freePortPair() (int, error) {
	for i := 0; i < 50; i++ {
		p := 20000 + rand.IntN(30000)
		a, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", fmt.Sprintf(":%d", p+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p, nil
	}
	return 0, errors.New("pcsctest: no free port pair for vpcd")
}
