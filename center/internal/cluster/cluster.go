// Package cluster runs several issuance-center instances on one
// PostgreSQL store, as a national deployment does (docs/DEPLOYMENT.md):
// the real issuance-center binary (built with CGO_ENABLED=0, as deployed),
// one process per instance, each with its own directory, behind Debian's
// haproxy as the TCP load balancer. The failover tests and the
// multi-instance benchmark use it.
//
// Setup creates the center once (init, demo municipalities and records,
// enrolled kiosks, cards for them) and copies its directory for each
// instance: every instance has the same keys, certificates, records master
// key and operator token, and all share the records, which follow the
// store onto PostgreSQL; the signing keys' directory
// is shared (an absolute path in every instance's config), as a key
// directory distributed to every instance is in production.
package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
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

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/demodata"
	"github.com/kioskcert/kioskcert/center/internal/loadtest"
	"github.com/kioskcert/kioskcert/center/internal/opsclient"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/childproc"
	"github.com/kioskcert/kioskcert/pkg/freeport"
)

// Options shape a cluster.
type Options struct {
	// Dir holds everything (created if missing).
	Dir string
	// Bin is the issuance-center binary (BuildCenter).
	Bin string
	// Store is the PostgreSQL URL every instance uses.
	Store string
	// Instances is how many center instances to prepare.
	Instances int
	// Kiosks to enroll (CL-00000, …) and cards per kiosk (default 2).
	Kiosks, CardsPerKiosk int
	// IssueTimeout overrides the config's (a claim left by a killed
	// instance is taken over after twice this).
	IssueTimeout time.Duration
	// Heartbeat overrides the config's.
	Heartbeat time.Duration
}

// Cluster is a prepared set of instances and the kiosks that use them.
type Cluster struct {
	Dir       string
	Instances []*Instance
	Kiosks    []loadtest.Kiosk
	Cards     [][]loadtest.Card
	// Token is the operator token every instance accepts.
	Token string
}

// Instance is one center instance: its directory and, while it runs, its
// process and addresses. Its ports are fixed at Setup, so a restarted
// instance comes back where the load balancer expects it.
type Instance struct {
	ID         string
	Dir        string
	Config     string
	KioskAddr  string
	PublicAddr string
	OpsAddr    string

	bin    string
	cmd    *exec.Cmd
	exited chan error
	log    *os.File
}

// Setup creates the center and the instances' directories. It starts
// nothing.
func Setup(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Instances <= 0 || opts.Kiosks <= 0 || opts.Bin == "" || opts.Store == "" {
		return nil, errors.New("cluster: need the binary, a store URL, instances and kiosks")
	}
	if opts.CardsPerKiosk <= 0 {
		opts.CardsPerKiosk = 2
	}
	c := &Cluster{Dir: opts.Dir}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// A card issuing authority of its own and one AP key for every card
	// (RSA-2048 generation is the slow part).
	authKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	auth := carddata.Authority{Signer: authKey}
	copy(auth.KeyID[:], "CLUSTER-JLIS-CA0")
	ap, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ik, err := auth.IssuerKey()
	if err != nil {
		return nil, err
	}
	trust, err := carddata.MarshalIssuerKey(ik)
	if err != nil {
		return nil, err
	}
	trustFile := filepath.Join(c.Dir, carddata.AuthorityTrustFile)
	if err := os.WriteFile(trustFile, trust, 0o644); err != nil {
		return nil, err
	}
	base := filepath.Join(c.Dir, "center")
	cfg, err := admin.Init(ctx, admin.InitOptions{
		Dir: base, CardTrustFile: trustFile, IssuerURL: "https://issuer.cluster.invalid/kioskcert",
		KioskListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", Store: opts.Store,
	}, time.Now())
	if err != nil {
		return nil, err
	}
	ops, closeLocal, err := admin.OpenLocal(ctx, cfg)
	if err != nil {
		return nil, err
	}
	kioskDir := filepath.Join(c.Dir, "kiosks")
	err = func() error {
		defer closeLocal()
		op := admin.Actor{Operator: "cluster", Source: "local"}
		if _, err := demodata.Load(ctx, ops, op); err != nil {
			return err
		}
		for i := 0; i < opts.Kiosks; i++ {
			id := fmt.Sprintf("CL-%05d", i)
			e, err := ops.EnrollKiosk(ctx, op, admin.KioskEnrollment{
				ID: id, StoreName: "多重化試験店", StoreCode: fmt.Sprintf("CL%05d", i), Chain: "CLUSTER",
				Prefecture: "01", Region: "cluster",
			})
			if err != nil {
				return err
			}
			if err := admin.WriteEnrollment(filepath.Join(kioskDir, id), e); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return nil, err
	}
	if c.Kiosks, err = loadtest.LoadKiosks(kioskDir, "localhost"); err != nil {
		return nil, err
	}
	for i := range c.Kiosks {
		cards, err := loadtest.DemoCards(auth, ap, i, opts.CardsPerKiosk, []certificate.Kind{certificate.Domestic})
		if err != nil {
			return nil, err
		}
		c.Cards = append(c.Cards, cards)
	}
	tok, err := os.ReadFile(cfg.Path(cfg.OpsTokenFile))
	if err != nil {
		return nil, err
	}
	c.Token = strings.TrimSpace(string(tok))

	for i := range opts.Instances {
		in := &Instance{ID: fmt.Sprintf("center-%d", i), Dir: filepath.Join(c.Dir, fmt.Sprintf("instance-%d", i)), bin: opts.Bin}
		if out, err := exec.CommandContext(ctx, "cp", "-a", base, in.Dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("cluster: copy the center for %s: %w: %s", in.ID, err, out)
		}
		in.Config = filepath.Join(in.Dir, admin.ConfigFile)
		icfg, err := config.Load(in.Config)
		if err != nil {
			return nil, err
		}
		icfg.InstanceID = in.ID
		icfg.KeysDir = cfg.Path(cfg.KeysDir)
		// Each instance has its copy of the records master key.
		icfg.MasterKeyFile = filepath.Join(in.Dir, cfg.MasterKeyFile)
		for _, addr := range []*string{&in.KioskAddr, &in.PublicAddr, &in.OpsAddr} {
			if *addr, err = FreePort(); err != nil {
				return nil, err
			}
		}
		icfg.KioskListen, icfg.PublicListen, icfg.OpsListen = in.KioskAddr, in.PublicAddr, in.OpsAddr
		// The other listeners of each instance on ports of their own.
		for _, l := range []*string{&icfg.EnrollListen, &icfg.ConsoleListen, &icfg.MetricsListen} {
			if *l != "" {
				*l = "127.0.0.1:0"
			}
		}
		// The test's kiosks issue far faster than a kiosk with a resident
		// at it: raise the per-kiosk limits as the national load test does.
		// Two frames per issuance (issue, outcome): the frame rate too,
		// or a fast kiosk is answered rate_limited a second into a run.
		icfg.Limits.KioskIssueRate, icfg.Limits.KioskIssueBurst, icfg.Limits.DistinctResidentsPerHour = 100, 100, 1<<20
		icfg.Limits.FrameRate, icfg.Limits.FrameBurst = 400, 400
		if opts.IssueTimeout > 0 {
			icfg.IssueTimeout.Duration = opts.IssueTimeout
		}
		if opts.Heartbeat > 0 {
			icfg.Heartbeat.Duration = opts.Heartbeat
		}
		if err := icfg.Write(in.Config); err != nil {
			return nil, err
		}
		c.Instances = append(c.Instances, in)
	}
	return c, nil
}

// FreePort returns a loopback address with a port free now, outside the
// ephemeral range (an instance comes back on its address after a kill, and
// haproxy's configuration names it).
func FreePort() (string, error) {
	return freeport.Addr()
}

// BuildCenter builds the issuance-center binary into dir as it is deployed
// (CGO_ENABLED=0), from the module the go command finds from the working
// directory, and returns its path.
func BuildCenter(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("cluster: the go command is not in PATH: %w", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("cluster: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("cluster: not inside the kioskcert module (go env GOMOD is empty)")
	}
	bin := filepath.Join(dir, "issuance-center")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./center/cmd/issuance-center")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cluster: build the issuance center: %w\n%s", err, out)
	}
	return bin, nil
}

// Start runs `issuance-center serve` for the instance and waits for its
// ready line.
func (in *Instance) Start(ctx context.Context) error {
	if in.cmd != nil {
		return fmt.Errorf("cluster: %s is running", in.ID)
	}
	var err error
	if in.log, err = os.OpenFile(filepath.Join(in.Dir, "center.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return err
	}
	cmd := exec.Command(in.bin, "serve", "-config", in.Config)
	cmd.Stderr = in.log
	// The instance dies with the test binary.
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := childproc.Start(cmd); err != nil {
		return fmt.Errorf("cluster: start %s: %w", in.ID, err)
	}
	in.cmd, in.exited = cmd, make(chan error, 1)
	ready := make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				ready <- struct{}{}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	exited := in.exited
	go func() { exited <- cmd.Wait() }()
	select {
	case <-ready:
		return nil
	case err := <-exited:
		in.cmd = nil
		return fmt.Errorf("cluster: %s exited at start (%v); %s ends:\n%s", in.ID, err, in.log.Name(), logTail(in.log.Name(), 2048))
	case <-time.After(60 * time.Second):
		in.Kill()
		return fmt.Errorf("cluster: %s not ready within 60 s; see %s", in.ID, in.log.Name())
	case <-ctx.Done():
		in.Kill()
		return ctx.Err()
	}
}

// Running reports whether the instance's process runs.
func (in *Instance) Running() bool { return in.cmd != nil }

// PID is the running instance's process ID (0 when stopped).
func (in *Instance) PID() int {
	if in.cmd == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// Kill stops the instance with SIGKILL: no graceful shutdown, nothing
// flushed, as a machine failure.
func (in *Instance) Kill() {
	if in.cmd == nil {
		return
	}
	in.cmd.Process.Kill()
	<-in.exited
	in.cmd = nil
	in.log.Close()
}

// Stop shuts the instance down gracefully (SIGTERM), killing it after 20 s.
func (in *Instance) Stop() error {
	if in.cmd == nil {
		return nil
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-in.exited:
	case <-time.After(20 * time.Second):
		in.cmd.Process.Kill()
		err = <-in.exited
	}
	in.cmd = nil
	in.log.Close()
	return err
}

// Ops returns an operations API client for the instance, acting as the
// operator whose token Init wrote (keys/ops.token: "admin").
func (c *Cluster) Ops(in *Instance, operator string) *opsclient.Client {
	return &opsclient.Client{BaseURL: "http://" + in.OpsAddr, Token: c.Token, Operator: operator}
}

// LiveView is the part of GET /ops/kiosks that tells instances apart.
type LiveView struct {
	Instance string `json:"instance"`
	Live     []struct {
		KioskID   string `json:"kioskId"`
		Connected bool   `json:"connected"`
	} `json:"live"`
}

// Live reads an instance's live view.
func (c *Cluster) Live(ctx context.Context, in *Instance) (*LiveView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.OpsAddr+"/ops/kiosks", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cluster: /ops/kiosks of %s: %s", in.ID, resp.Status)
	}
	var v LiveView
	return &v, json.NewDecoder(resp.Body).Decode(&v)
}

// Connected returns the IDs of the kiosks connected to an instance now.
func (c *Cluster) Connected(ctx context.Context, in *Instance) ([]string, error) {
	v, err := c.Live(ctx, in)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, k := range v.Live {
		if k.Connected {
			ids = append(ids, k.KioskID)
		}
	}
	return ids, nil
}

// logTail returns the last n bytes of a log file, for an error that must
// say why a process stopped after the test has removed its directory.
func logTail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
