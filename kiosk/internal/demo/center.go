// Package demo runs the whole system on one machine: a demo issuance center
// (the issuance-center binary, as a separate process, because the kiosk
// never links center code), a test card issuing authority, virtual cards
// for the demo residents, and kiosk agents. `make demo` and the kiosk's
// end-to-end tests use it.
package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/childproc"
)

// Center is a running demo center process.
type Center struct {
	Dir        string // the center's directory (config, keys, databases)
	Config     string // its config file
	KioskAddr  string
	PublicAddr string
	OpsAddr    string
	// ConsoleURL is the operations console (https://…/), and Admin the
	// demo administrator's login (demo only: the password is fixed and
	// the TOTP secret is printed).
	ConsoleURL string
	Admin      ConsoleLogin
	EnrollAddr string // the kiosk enrollment endpoint (HTTPS)
	// SoftHSM holds the center's signing keys and kiosk issuing CA, when
	// the center was set up with one; nil: key files.
	SoftHSM *SoftHSMToken
	bin     string
	cmd     *exec.Cmd
	exited  chan error
	logFile *os.File
}

// ConsoleLogin is a console account's login.
type ConsoleLogin struct {
	ID, Password, TOTPSecret, TOTPURI string
}

// DemoAdmin and DemoAdminPassword are the demo center's console
// administrator (never use such a password outside the demo).
const (
	DemoAdmin         = "demo-admin"
	DemoAdminPassword = "demo-console-password"
)

// IssuerURL is the demo center's SMART Health Card issuer.
const IssuerURL = "https://issuer.kioskcert.example"

// SetupCenter creates a demo center in dir with the demo municipalities and
// records, trusting the card authority's trust file, and enrolls the given
// kiosks (credentials under dir/kiosks/<id>). Its keys are files. It does
// not start it.
func SetupCenter(ctx context.Context, bin, dir, cardTrust string, kioskIDs ...string) (*Center, error) {
	return SetupCenterWith(ctx, CenterOptions{Bin: bin, Dir: dir, CardTrust: cardTrust}, kioskIDs...)
}

// CenterOptions configure SetupCenterWith.
type CenterOptions struct {
	Bin, Dir, CardTrust string
	// SoftHSM, if set, is the token the center makes its signing keys and
	// kiosk issuing CA in (the center binary needs PKCS#11 support).
	SoftHSM *SoftHSMToken
}

// SetupCenterWith is SetupCenter with the options.
func SetupCenterWith(ctx context.Context, o CenterOptions, kioskIDs ...string) (*Center, error) {
	bin, dir, cardTrust := o.Bin, o.Dir, o.CardTrust
	c := &Center{Dir: dir, Config: filepath.Join(dir, "center.json"), bin: bin, SoftHSM: o.SoftHSM}
	d, err := demo.Load()
	if err != nil {
		return nil, err
	}
	// The center is not running yet: the operator commands work on its
	// files (-offline), as an operator sets up a new center.
	op := []string{"-config", c.Config, "-offline", "-operator", "demo"}
	steps := [][]string{
		{"init", "-dir", dir, "-card-trust", cardTrust, "-issuer-url", IssuerURL,
			"-kiosk-listen", "127.0.0.1:0", "-public-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-enroll-listen", "127.0.0.1:0",
			"-console-listen", "127.0.0.1:0", "-operator", "demo"},
	}
	if o.SoftHSM != nil {
		steps[0] = append(steps[0], o.SoftHSM.initArgs()...)
	}
	ledgers := filepath.Join(dir, "ledgers")
	if err := os.MkdirAll(ledgers, 0o700); err != nil {
		return nil, err
	}
	for _, m := range d.Municipalities {
		add := append([]string{"municipality", "add"}, op...)
		add = append(add, "-code", m.Code, "-name-ja", m.NameJa, "-name-en", m.NameEn,
			"-authority-ja", m.AuthorityJa, "-authority-en", m.AuthorityEn, fmt.Sprintf("-participating=%v", m.Participating))
		if m.CounterJa != "" {
			add = append(add, "-counter-ja", m.CounterJa, "-counter-en", m.CounterEn)
		}
		steps = append(steps, add)
		// The synthetic residents' ledger, as the municipality exports it.
		var csv bytes.Buffer
		n, err := d.WriteLedger(&csv, m.Code)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			continue
		}
		file := filepath.Join(ledgers, m.Code+".csv")
		if err := os.WriteFile(file, csv.Bytes(), 0o600); err != nil {
			return nil, err
		}
		steps = append(steps, append(append([]string{"records", "import"}, op...), "-municipality", m.Code, "-file", file))
	}
	for i, id := range kioskIDs {
		enroll := append([]string{"kiosk", "enroll"}, op...)
		steps = append(steps, append(enroll, "-id", id,
			"-store-name", "デモ店 "+id, "-store-code", fmt.Sprintf("DEMO-%04d", i+1), "-chain", "DEMO",
			"-prefecture", "01", "-region", "hokkaido", "-out", c.KioskDir(id)))
	}
	for _, args := range steps {
		out, err := c.command(ctx, args...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("demo: issuance-center %s: %w\n%s", strings.Join(args[:2], " "), err, out)
		}
	}
	// The demo's console administrator.
	pwFile := filepath.Join(dir, "demo-admin.password")
	if err := os.WriteFile(pwFile, []byte(DemoAdminPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	out, err := c.command(ctx, append(append([]string{"operator", "add"}, op...), "-admin", "-id", DemoAdmin, "-password-file", pwFile)...).CombinedOutput()
	os.Remove(pwFile)
	if err != nil {
		return nil, fmt.Errorf("demo: issuance-center operator add: %w\n%s", err, out)
	}
	c.Admin = ConsoleLogin{ID: DemoAdmin, Password: DemoAdminPassword}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "TOTP secret: "); ok {
			c.Admin.TOTPSecret = strings.TrimSpace(v)
		}
		if _, v, ok := strings.Cut(line, "): otpauth://"); ok {
			c.Admin.TOTPURI = "otpauth://" + strings.TrimSpace(v)
		}
	}
	return c, os.RemoveAll(ledgers)
}

// ImportNationalList imports the rest of the country's municipalities into
// the center (not participating; the demo municipalities keep their names
// and participation and gain their readings), as an operator does with
// `municipality import-list`. Run it before Start. The kiosk then shows the
// whole country, the others greyed.
func (c *Center) ImportNationalList(ctx context.Context) error {
	args := []string{"municipality", "import-list", "-config", c.Config, "-offline", "-operator", "demo"}
	if out, err := c.command(ctx, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("demo: issuance-center municipality import-list: %w\n%s", err, out)
	}
	return nil
}

// BuildCenter builds the issuance-center binary into dir as it is deployed
// (CGO_ENABLED=0) and returns its path. It builds from the source tree the
// go command finds from the working directory, so it serves tests and
// tools run inside the kioskcert module; `go test` puts its own toolchain's
// go first in PATH.
func BuildCenter(ctx context.Context, dir string) (string, error) {
	return buildCenter(ctx, filepath.Join(dir, "issuance-center"), "CGO_ENABLED=0")
}

// BuildCenterPKCS11 builds the issuance-center with PKCS#11 support (cgo,
// tag pkcs11; make build-center-pkcs11) into dir/pkcs11/ and returns its
// path.
func BuildCenterPKCS11(ctx context.Context, dir string) (string, error) {
	return buildCenter(ctx, filepath.Join(dir, "pkcs11", "issuance-center"), "CGO_ENABLED=1", "-tags", "pkcs11")
}

func buildCenter(ctx context.Context, bin, cgo string, flags ...string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("demo: the go command is not in PATH: %w", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("demo: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("demo: not inside the kioskcert module (go env GOMOD is empty)")
	}
	args := append(append([]string{"build"}, flags...), "-o", bin, "./center/cmd/issuance-center")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), cgo)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("demo: build the issuance center: %w\n%s", err, out)
	}
	return bin, nil
}

// Command runs an operator command of the issuance-center binary against
// this center (its configuration; the running center's operations API, or
// its files with -offline) and returns its output.
func (c *Center) Command(ctx context.Context, args ...string) ([]byte, error) {
	if len(args) < 2 {
		return nil, errors.New("demo: a command is two words (kiosk suspend, …)")
	}
	full := append(append([]string{}, args[:2]...), "-config", c.Config)
	out, err := c.command(ctx, append(full, args[2:]...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("demo: issuance-center %s: %w\n%s", strings.Join(args[:2], " "), err, out)
	}
	return out, nil
}

// command is the issuance-center binary run with args, in the token's
// environment when the keys are in SoftHSM2.
func (c *Center) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	if c.SoftHSM != nil {
		cmd.Env = c.SoftHSM.Env()
	}
	return cmd
}

// KeysDescription says where the center's signing keys are, for people.
func (c *Center) KeysDescription() string {
	if c.SoftHSM != nil {
		return fmt.Sprintf("SoftHSM2 token %q (%s, PKCS#11 module %s)", c.SoftHSM.Label, c.SoftHSM.Dir, c.SoftHSM.Module)
	}
	return "files (" + filepath.Join(c.Dir, "keys") + ")"
}

// KioskDir is where an enrolled kiosk's credentials are.
func (c *Center) KioskDir(id string) string { return filepath.Join(c.Dir, "kiosks", id) }

// CSCAFile is the country signing CA certificate VDS-NC verifiers trust.
func (c *Center) CSCAFile() string { return filepath.Join(c.Dir, "keys", "vdsnc", "csca.pem") }

// Start runs `issuance-center serve` and waits for its ready line.
func (c *Center) Start(ctx context.Context) error {
	var err error
	if c.logFile, err = os.OpenFile(filepath.Join(c.Dir, "center.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return err
	}
	c.cmd = exec.Command(c.bin, "serve", "-config", c.Config)
	if c.SoftHSM != nil {
		c.cmd.Env = c.SoftHSM.Env()
	}
	c.cmd.Stderr = c.logFile
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := childproc.Start(c.cmd); err != nil {
		return fmt.Errorf("demo: start center: %w", err)
	}
	c.exited = make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				ready <- sc.Text()
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { c.exited <- c.cmd.Wait() }()
	select {
	case line := <-ready:
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "kiosk":
				c.KioskAddr = v
			case "public":
				c.PublicAddr = v
			case "ops":
				c.OpsAddr = v
			case "console":
				c.ConsoleURL = v
			case "enroll":
				c.EnrollAddr = v
			}
		}
		return nil
	case err := <-c.exited:
		return fmt.Errorf("demo: center exited at start (%v); see %s", err, c.logFile.Name())
	case <-time.After(30 * time.Second):
		c.Stop()
		return fmt.Errorf("demo: center not ready within 30 s; see %s", c.logFile.Name())
	case <-ctx.Done():
		c.Stop()
		return ctx.Err()
	}
}

// PinAddresses rewrites the center's configuration so that it listens on
// the addresses it has now (the demo starts it on free ports). A center
// stopped and started again then comes back on the same ports, as a
// restarted production center does, and kiosks configured for it
// reconnect without a new configuration. Call it while the center runs.
func (c *Center) PinAddresses() error {
	if c.KioskAddr == "" || c.PublicAddr == "" || c.OpsAddr == "" {
		return errors.New("demo: PinAddresses needs a started center")
	}
	b, err := os.ReadFile(c.Config)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("demo: %s: %w", c.Config, err)
	}
	for key, addr := range map[string]string{"kioskListen": c.KioskAddr, "publicListen": c.PublicAddr, "opsListen": c.OpsAddr, "enrollListen": c.EnrollAddr} {
		if cfg[key], err = json.Marshal(addr); err != nil {
			return err
		}
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(c.Config, append(out, '\n'), 0o600)
}

// Running reports whether the center process is running (started and not
// yet stopped or killed).
func (c *Center) Running() bool { return c.cmd != nil }

// Stop shuts the center down gracefully (SIGTERM), killing it after 20 s.
func (c *Center) Stop() error {
	if c.cmd == nil || c.cmd.Process == nil {
		return nil
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-c.exited:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		err = <-c.exited
	}
	c.cmd = nil
	if c.logFile != nil {
		c.logFile.Close()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("demo: center exited with %v", ee)
	}
	return nil
}

// Kill stops the center at once (for tests of the center going down).
func (c *Center) Kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Kill()
		<-c.exited
		c.cmd = nil
	}
}

// JWKS fetches the issuer's key set as the center serves it.
func (c *Center) JWKS(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.PublicAddr+"/.well-known/jwks.json", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("demo: fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("demo: fetch JWKS: HTTP %d", resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// KioskConfig writes a kiosk agent configuration for an enrolled kiosk.
func (c *Center) KioskConfig(id, cardTrust string, reader config.Reader, printer config.Printer) (*config.Config, string, error) {
	dir := c.KioskDir(id)
	cfg := &config.Config{
		CenterURL:        "wss://" + c.KioskAddr + "/v1/kiosk",
		CenterServerName: "localhost",
		CertFile:         filepath.Join(dir, "kiosk.pem"),
		KeyFile:          filepath.Join(dir, "kiosk.key"),
		CenterCAFile:     filepath.Join(dir, "center-ca.pem"),
		CardTrustFile:    cardTrust,
		Reader:           reader,
		Printer:          printer,
	}
	path := filepath.Join(dir, "kiosk.json")
	if err := cfg.Write(path); err != nil {
		return nil, "", err
	}
	loaded, err := config.Load(path)
	return loaded, path, err
}

// NewAuthority creates a test card issuing authority in dir and returns it
// with its trust file.
func NewAuthority(dir string) (carddata.Authority, string, error) {
	a, err := virtualcard.GenerateAuthority("JLIS-TEST-CA")
	if err != nil {
		return carddata.Authority{}, "", err
	}
	if err := carddata.SaveAuthority(dir, a); err != nil {
		return carddata.Authority{}, "", err
	}
	return a, filepath.Join(dir, carddata.AuthorityTrustFile), nil
}
