// Package ipptest starts a real IPP printer for tests: CUPS's
// ippeveprinter, an IPP Everywhere printer that keeps every document it is
// sent as a file, so a test can print over the network exactly as the
// kiosk does and then read what came out.
//
//	p := ipptest.Start(t, ipptest.Options{})      // stopped by t.Cleanup
//	pr, _ := printer.NewIPP(p.URI, printer.IPPOptions{})
//	... print ...
//	docs := p.Documents(t)                        // job file name -> bytes
//
// With Options{TLS: ca} (ca from NewCA) the printer speaks ipps with a
// certificate ca issued, so a test prints over TLS as a deployed kiosk
// must; its helpers (StateReasons, SetPaperLevel, …) keep using plain HTTP
// on the same port.
//
// Faults: p.SetPaperLevel(t, 0) empties the tray (the printer then reports
// media-empty); Options.Command runs a script for each job, and
// JamCommand, PaperOutCommand and SlowCommand write scripts that make the
// job jam, run out of paper or take long.
//
// ippeveprinter needs DNS-SD even with advertising off, so Start makes sure
// a D-Bus system bus and avahi-daemon are running, starting them when the
// test runs as root (as in CI) and they are not: several test packages may
// do this at once, so it is serialised with a lock file. Missing programs
// fail the test with a pointer to `make deps`; they never skip it.
package ipptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/OpenPrinting/goipp"

	"github.com/kioskcert/kioskcert/pkg/childproc"
	"github.com/kioskcert/kioskcert/pkg/freeport"
)

// Options configures the printer.
type Options struct {
	// Command is run by the printer for each document (ippeveprinter -c):
	// lines it writes to stderr such as "STATE: +media-jam-error" change
	// the printer's state reasons, and a non-zero exit aborts the job.
	// Empty means a command that succeeds at once: without one,
	// ippeveprinter simulates printing by sleeping 5 to 15 seconds a job.
	Command string
	// TLS, when set, makes the printer speak IPP over TLS too (on the same
	// port, as ippeveprinter does), with a certificate for localhost and
	// 127.0.0.1 that TLS issues; URI is then the ipps:// one, and a kiosk
	// trusts the printer with printer.caFile = TLS.File.
	TLS *CA
}

// Printer is a running ippeveprinter.
type Printer struct {
	// URI is the printer's IPP URI on the loopback interface: ipps:// when
	// started with Options.TLS, ipp:// otherwise.
	URI string
	// SpoolDir holds the documents printed, one file per job
	// ("<job-id>-<job-name>.pdf").
	SpoolDir string
	port     int
	cmd      *exec.Cmd
	done     chan struct{}
	log      *lockedBuffer
}

const startTimeout = 15 * time.Second

// missing is the message for a missing program: CI installs them with
// `make deps` (.ci/install-deps).
func missing(prog string) string {
	return fmt.Sprintf("ipptest: %s not found: run `make deps` (it installs cups-ipp-utils, avahi-daemon and dbus)", prog)
}

// Start runs an ippeveprinter on a free loopback port and waits until it
// answers IPP requests. It is stopped when the test ends.
func Start(t testing.TB, opts Options) *Printer {
	t.Helper()
	bin, err := exec.LookPath("ippeveprinter")
	if err != nil {
		t.Fatal(missing("ippeveprinter"))
	}
	ensureDNSSD(t)
	spool := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before we bind it
		p, err := launch(t, bin, spool, opts)
		if err == nil {
			return p
		}
		lastErr = err
	}
	t.Fatalf("ipptest: ippeveprinter did not start: %v", lastErr)
	return nil
}

func launch(t testing.TB, bin, spool string, opts Options) (*Printer, error) {
	port, err := freeport.Loopback()
	if err != nil {
		return nil, err
	}
	args := []string{"-r", "off", "-p", strconv.Itoa(port), "-d", spool, "-k", "-f", "application/pdf", "-n", "localhost"}
	command := opts.Command
	if command == "" {
		command = script(t, "print", "exit 0")
	}
	args = append(args, "-c", command)
	scheme := "ipp"
	if opts.TLS != nil {
		keys := t.TempDir()
		if err := opts.TLS.issue(keys); err != nil {
			return nil, err
		}
		args = append(args, "-K", keys)
		scheme = "ipps"
	}
	args = append(args, fmt.Sprintf("kioskcert-test-%d", port))
	cmd := exec.Command(bin, args...)
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	// The printer must not outlive a test binary that crashes.
	if err := childproc.Start(cmd); err != nil {
		return nil, fmt.Errorf("starting ippeveprinter: %w", err)
	}
	p := &Printer{
		URI:      fmt.Sprintf("%s://127.0.0.1:%d/ipp/print", scheme, port),
		SpoolDir: spool,
		port:     port,
		cmd:      cmd,
		done:     make(chan struct{}),
		log:      log,
	}
	go func() { cmd.Wait(); close(p.done) }()
	if err := p.waitReady(); err != nil {
		p.kill()
		return nil, fmt.Errorf("%w; its log:\n%s", err, log.String())
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("ippeveprinter log:\n%s", log.String())
		}
	})
	return p, nil
}

// waitReady polls Get-Printer-Attributes until the printer answers.
func (p *Printer) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return errors.New("ippeveprinter exited")
		default:
		}
		if _, err := p.attributes(); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no IPP answer within %s", startTimeout)
}

// attributes fetches the printer's state attributes with raw IPP (this
// package must not depend on the printer package it helps test).
func (p *Printer) attributes() (goipp.Attributes, error) {
	req := goipp.NewRequest(goipp.DefaultVersion, goipp.OpGetPrinterAttributes, 1)
	req.Operation.Add(goipp.MakeAttribute("attributes-charset", goipp.TagCharset, goipp.String("utf-8")))
	req.Operation.Add(goipp.MakeAttribute("attributes-natural-language", goipp.TagLanguage, goipp.String("en")))
	req.Operation.Add(goipp.MakeAttribute("printer-uri", goipp.TagURI, goipp.String(p.URI)))
	m, err := p.post(req)
	if err != nil {
		return nil, err
	}
	return m.Printer, nil
}

// post sends an IPP request to the printer and decodes the answer.
func (p *Printer) post(req *goipp.Message) (*goipp.Message, error) {
	body, err := req.EncodeBytes()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.httpURL("/ipp/print"), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", goipp.ContentType)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m goipp.Message
	if err := m.Decode(resp.Body); err != nil {
		return nil, err
	}
	return &m, nil
}

func (p *Printer) httpURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path)
}

// StateReasons returns the printer's printer-state-reasons.
func (p *Printer) StateReasons(t testing.TB) []string {
	t.Helper()
	attrs, err := p.attributes()
	if err != nil {
		t.Fatalf("ipptest: Get-Printer-Attributes: %v", err)
	}
	var out []string
	for _, a := range attrs {
		if a.Name == "printer-state-reasons" {
			for _, v := range a.Values {
				out = append(out, v.V.String())
			}
		}
	}
	return out
}

// JobStates returns every job the printer knows (Get-Jobs, which-jobs
// all) with its job-state: 7 canceled, 8 aborted, 9 completed.
func (p *Printer) JobStates(t testing.TB) map[int]int {
	t.Helper()
	req := goipp.NewRequest(goipp.DefaultVersion, goipp.OpGetJobs, 1)
	req.Operation.Add(goipp.MakeAttribute("attributes-charset", goipp.TagCharset, goipp.String("utf-8")))
	req.Operation.Add(goipp.MakeAttribute("attributes-natural-language", goipp.TagLanguage, goipp.String("en")))
	req.Operation.Add(goipp.MakeAttribute("printer-uri", goipp.TagURI, goipp.String(p.URI)))
	req.Operation.Add(goipp.MakeAttribute("which-jobs", goipp.TagKeyword, goipp.String("all")))
	var want goipp.Values
	want.Add(goipp.TagKeyword, goipp.String("job-id"))
	want.Add(goipp.TagKeyword, goipp.String("job-state"))
	req.Operation.Add(goipp.Attribute{Name: "requested-attributes", Values: want})
	m, err := p.post(req)
	if err != nil {
		t.Fatalf("ipptest: Get-Jobs: %v", err)
	}
	states := map[int]int{}
	for _, g := range m.Groups {
		if g.Tag != goipp.TagJobGroup {
			continue
		}
		id, state := 0, 0
		for _, a := range g.Attrs {
			if len(a.Values) == 0 {
				continue
			}
			if v, ok := a.Values[0].V.(goipp.Integer); ok {
				switch a.Name {
				case "job-id":
					id = int(v)
				case "job-state":
					state = int(v)
				}
			}
		}
		states[id] = state
	}
	return states
}

// SetPaperLevel sets the number of sheets in the main (A4) tray through
// the printer's web form and removes the by-pass tray, so that 0 means the
// printer has no paper: it then reports media-empty.
func (p *Printer) SetPaperLevel(t testing.TB, sheets int) {
	t.Helper()
	u := p.httpURL("/media") + "?size1=iso_a4_210x297mm&type1=stationery&level1=" + strconv.Itoa(sheets) +
		"&size3=&type3=&level3=-2"
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("ipptest: setting the paper level: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ipptest: setting the paper level: HTTP %s", resp.Status)
	}
}

// Documents returns the documents the printer has kept, by file name.
func (p *Printer) Documents(t testing.TB) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(p.SpoolDir)
	if err != nil {
		t.Fatalf("ipptest: reading the spool: %v", err)
	}
	docs := map[string][]byte{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pdf") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.SpoolDir, e.Name()))
		if err != nil {
			t.Fatalf("ipptest: %v", err)
		}
		docs[e.Name()] = b
	}
	return docs
}

// Stop ends the printer now (it is also stopped at cleanup), so a test can
// see a printer go offline.
func (p *Printer) Stop() { p.kill() }

func (p *Printer) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill() // our own child, by PID
	<-p.done
}

// JamCommand writes a job command that jams: it reports media-jam and
// fails, so the job is aborted and the printer keeps the jam reason.
func JamCommand(t testing.TB) string {
	return script(t, "jam", `echo "STATE: +media-jam-error" >&2
echo "ERROR: paper jam" >&2
exit 1`)
}

// PaperOutCommand writes a job command that runs out of paper mid-job.
func PaperOutCommand(t testing.TB) string {
	return script(t, "paper-out", `echo "STATE: +media-empty-error" >&2
echo "ERROR: out of paper" >&2
exit 1`)
}

// SlowCommand writes a job command that takes d to print, then succeeds.
func SlowCommand(t testing.TB, d time.Duration) string {
	return script(t, "slow", fmt.Sprintf("sleep %.3f\nexit 0", d.Seconds()))
}

func script(t testing.TB, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatalf("ipptest: %v", err)
	}
	return path
}

// lockedBuffer collects the printer's log from its output pipes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
