package loadtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/demodata"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/childproc"
	"github.com/kioskcert/kioskcert/pkg/freeport"
)

// A national run drives the real center process (bin/issuance-center
// serve) with fleets in separate processes, because one process may hold
// only 20,000 open files here, and because the center's CPU and memory
// must be read from its own process, not mixed with the load generator's.
// The layout of a run directory:
//
//	DIR/center/            the center (center.json, keys, databases)
//	DIR/kiosks/<id>/       each enrolled kiosk's credentials
//	DIR/authority/         the test card authority the center trusts

// SetupNational prepares DIR with a center holding the demo data and n
// kiosks (NK-000000, …), enrolled in parallel. A directory already set up
// with at least n kiosks is reused. The center's limits are raised for a
// load test: the load generator's kiosks issue far faster than a kiosk
// with a resident at it.
func SetupNational(ctx context.Context, dir string, n int, progress io.Writer) error {
	return SetupNationalStore(ctx, dir, n, "", progress)
}

// SetupNationalStore is SetupNational with the center's store named
// (config "store": "" for the bbolt default, or a postgres:// URL that
// several center instances share).
func SetupNationalStore(ctx context.Context, dir string, n int, store string, progress io.Writer) error {
	cfgPath := filepath.Join(dir, "center", admin.ConfigFile)
	kioskDir := filepath.Join(dir, "kiosks")
	if _, err := os.Stat(cfgPath); err == nil {
		if entries, err := os.ReadDir(kioskDir); err == nil && len(entries) >= n {
			return nil
		}
		return fmt.Errorf("loadtest: %s holds a center with fewer than %d kiosks; remove it", dir, n)
	}
	authDir := filepath.Join(dir, "authority")
	authKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	auth := carddata.Authority{Signer: authKey}
	copy(auth.KeyID[:], "NATIONAL-JLIS-CA")
	if err := carddata.SaveAuthority(authDir, auth); err != nil {
		return err
	}
	ik, err := auth.IssuerKey()
	if err != nil {
		return err
	}
	trust, err := carddata.MarshalIssuerKey(ik)
	if err != nil {
		return err
	}
	trustFile := filepath.Join(authDir, "trust.pem")
	if err := os.WriteFile(trustFile, trust, 0o644); err != nil {
		return err
	}
	cfg, err := admin.Init(ctx, admin.InitOptions{
		Dir: filepath.Join(dir, "center"), CardTrustFile: trustFile, IssuerURL: "https://issuer.loadtest.invalid/kioskcert",
		KioskListen: "0.0.0.0:0", PublicListen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", EnrollListen: "127.0.0.1:0", Store: store,
	}, time.Now())
	if err != nil {
		return err
	}
	cfg.Limits = config.Limits{MaxConns: 60000, KioskIssueRate: 100, KioskIssueBurst: 100, DistinctResidentsPerHour: 1 << 20}
	if err := cfg.Write(cfgPath); err != nil {
		return err
	}
	ops, closeLocal, err := admin.OpenLocal(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeLocal()
	ops.WithLog(slog.New(slog.DiscardHandler))
	op := admin.Actor{Operator: "loadtest", Source: "local"}
	if _, err := demodata.Load(ctx, ops, op); err != nil {
		return err
	}
	// Enrollments commit together (the store's group commit), so many at
	// once cost few fsyncs.
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var done atomicCounter
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id := fmt.Sprintf("NK-%06d", i)
				e, err := ops.EnrollKiosk(ctx, op, admin.KioskEnrollment{
					ID: id, StoreName: "負荷試験店", StoreCode: fmt.Sprintf("NS%06d", i), Chain: "LOADTEST",
					Prefecture: fmt.Sprintf("%02d", 1+i%47), Region: "loadtest",
				})
				if err == nil {
					err = admin.WriteEnrollment(filepath.Join(kioskDir, id), e)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				if d := done.add(); progress != nil && d%2000 == 0 {
					fmt.Fprintf(progress, "loadgen: %d kiosks enrolled\n", d)
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	return ctx.Err()
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

// CenterProcess is a running `issuance-center serve`.
type CenterProcess struct {
	Bin, Config string
	cmd         *exec.Cmd
	exited      chan error
	Kiosk, Ops  string
	log         *os.File
}

// StartCenter runs the center and waits for its ready line. A kiosk or
// operations listener on port 0 gets a fixed port first, outside the
// ephemeral range: Restart binds the same address again, and an ephemeral
// port may meanwhile be some other connection's source port.
func StartCenter(bin, configPath string, logTo *os.File) (*CenterProcess, error) {
	cfg, err := config.Load(configPath)
	if err != nil {
		return nil, err
	}
	changed := false
	for _, l := range []*string{&cfg.KioskListen, &cfg.OpsListen} {
		host, port, err := net.SplitHostPort(*l)
		if err != nil || port != "0" {
			continue
		}
		p, err := freeport.Loopback()
		if err != nil {
			return nil, err
		}
		*l, changed = net.JoinHostPort(host, strconv.Itoa(p)), true
	}
	if changed {
		if err := cfg.Write(configPath); err != nil {
			return nil, err
		}
	}
	p := &CenterProcess{Bin: bin, Config: configPath, log: logTo}
	return p, p.start()
}

func (p *CenterProcess) start() error {
	p.cmd = exec.Command(p.Bin, "serve", "-config", p.Config)
	p.cmd.Stderr = p.log
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := childproc.Start(p.cmd); err != nil {
		return fmt.Errorf("loadtest: start the center: %w", err)
	}
	p.exited = make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				ready <- sc.Text()
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	select {
	case line := <-ready:
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "kiosk":
				p.Kiosk = v
			case "ops":
				p.Ops = v
			}
		}
		return nil
	case err := <-p.exited:
		return fmt.Errorf("loadtest: the center exited before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		return errors.New("loadtest: the center was not ready within 60 s")
	}
}

// PID is the center's process ID.
func (p *CenterProcess) PID() int { return p.cmd.Process.Pid }

// Kill sends sig and waits for the process to exit.
func (p *CenterProcess) Kill(sig syscall.Signal) error {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return errors.New("loadtest: the center did not exit within 30 s")
	}
}

// Restart starts the center again on the same addresses: kiosks reconnect
// to the port they knew.
func (p *CenterProcess) Restart() error {
	cfg, err := config.Load(p.Config)
	if err != nil {
		return err
	}
	if cfg.KioskListen != p.Kiosk || cfg.OpsListen != p.Ops {
		cfg.KioskListen, cfg.OpsListen = p.Kiosk, p.Ops
		if err := cfg.Write(p.Config); err != nil {
			return err
		}
	}
	return p.start()
}

// ProcStat reads a process's CPU seconds (user+system) and resident set.
func ProcStat(pid int) (cpu float64, rssBytes int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name (which is in parentheses).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	rssPages, _ := strconv.ParseInt(f[21], 10, 64)
	return (utime + stime) / 100, rssPages * int64(os.Getpagesize()), nil
}

// Metric reads one sample of the center's /metrics (the first series
// whose name and labels start with series), or an error.
func Metric(opsAddr, series string) (float64, error) {
	resp, err := http.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series) && (len(line) == len(series) || line[len(series)] == ' ' || line[len(series)] == '{') {
			fields := strings.Fields(line)
			return strconv.ParseFloat(fields[len(fields)-1], 64)
		}
	}
	return 0, fmt.Errorf("loadtest: metric %s not found", series)
}

// WorkerArgs are what the coordinator passes a fleet process.
type WorkerArgs struct {
	Dir                        string
	Addr                       string
	From, To                   int // kiosk indexes [From, To)
	Source                     string
	Rate                       float64
	Duration                   time.Duration
	CardsPerKiosk              int
	DisconnectRate, CancelRate float64
	Timeout                    time.Duration
	Seed                       uint64
}

// Args renders the command line of `loadgen worker`.
func (w WorkerArgs) Args() []string {
	return []string{"worker", "-dir", w.Dir, "-addr", w.Addr, "-from", strconv.Itoa(w.From), "-to", strconv.Itoa(w.To),
		"-source", w.Source, "-rate", strconv.FormatFloat(w.Rate, 'f', -1, 64), "-duration", w.Duration.String(),
		"-cards", strconv.Itoa(w.CardsPerKiosk), "-disconnect", strconv.FormatFloat(w.DisconnectRate, 'f', -1, 64),
		"-cancel", strconv.FormatFloat(w.CancelRate, 'f', -1, 64), "-timeout", w.Timeout.String(),
		"-seed", strconv.FormatUint(w.Seed, 10)}
}

// RunWorker is a fleet process: it loads its slice of kiosks and makes
// their cards, connects them, prints "connected N SECONDS", waits for a
// line "start" on in, runs, and prints its FleetReport as JSON.
func RunWorker(ctx context.Context, w WorkerArgs, in io.Reader, out io.Writer) error {
	all, err := LoadKioskRange(filepath.Join(w.Dir, "kiosks"), "localhost", w.From, w.To)
	if err != nil {
		return err
	}
	auth, err := carddata.LoadAuthority(filepath.Join(w.Dir, "authority"))
	if err != nil {
		return err
	}
	ap, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	cards := make([][]Card, len(all))
	for i := range all {
		if cards[i], err = DemoCards(auth, ap, w.From+i, w.CardsPerKiosk, []certificate.Kind{certificate.Domestic}); err != nil {
			return err
		}
	}
	start := make(chan struct{})
	cfg := FleetConfig{Addr: w.Addr, Kiosks: all, Cards: cards, Source: w.Source, Rate: w.Rate, Duration: w.Duration,
		DisconnectRate: w.DisconnectRate, CancelRate: w.CancelRate, Timeout: w.Timeout, Seed: w.Seed,
		WaitStart: start,
		OnConnected: func(connected int, secs float64) {
			fmt.Fprintf(out, "connected %d %.3f\n", connected, secs)
			go func() {
				sc := bufio.NewScanner(in)
				for sc.Scan() {
					if sc.Text() == "start" {
						break
					}
				}
				close(start)
			}()
		}}
	rep, err := RunFleet(ctx, cfg)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(rep)
}

// LoadKioskRange loads the kiosks at sorted positions [from, to) of dir.
func LoadKioskRange(dir, serverName string, from, to int) ([]Kiosk, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loadtest: kiosk credentials: %w", err)
	}
	if from < 0 || to > len(entries) || from >= to {
		return nil, fmt.Errorf("loadtest: kiosks %d-%d asked for, %d enrolled", from, to, len(entries))
	}
	tmp, err := os.MkdirTemp("", "kioskcert-kiosks-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for _, e := range entries[from:to] { // ReadDir sorts by name
		if err := os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
			return nil, err
		}
	}
	return LoadKiosks(tmp, serverName)
}
