package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/loadtest"
	"github.com/kioskcert/kioskcert/center/internal/store/pgstore/pgtest"
	"github.com/kioskcert/kioskcert/pkg/childproc"
)

// ScaleOptions shape a scale run: many kiosks across several instances on
// one PostgreSQL (`loadgen cluster`, docs/BENCHMARKS.md).
type ScaleOptions struct {
	// Dir is the run directory (loadtest.SetupNationalStore's layout,
	// plus instance-N/ for each instance).
	Dir string
	// CenterBin is the issuance-center binary, LoadgenBin the loadgen
	// binary whose "worker" subcommand runs a fleet.
	CenterBin, LoadgenBin string
	// Store is the PostgreSQL URL; empty starts a private server (fsync on)
	// with pgtest for the run.
	Store string
	// Instances, and Kiosks spread evenly over them: one fleet process per
	// instance, dialling from its own loopback source address.
	Instances, Kiosks int
	// Rate is the offered load (issuances a second, all fleets together)
	// for Duration.
	Rate     float64
	Duration time.Duration
	Log      io.Writer
}

// ScaleResult is a run's figures.
type ScaleResult struct {
	Instances, Kiosks, Connected int
	ConnectSeconds               float64
	Offered, Throughput          float64
	Report                       loadtest.FleetReport
	// CenterCPU is the CPU seconds of every instance during the run;
	// DatabaseCPU that of the PostgreSQL server's processes (when the run
	// started it).
	CenterCPU, DatabaseCPU float64
	LoadAverage            string
}

// RunScale sets up (or reuses) the run directory, starts the instances
// and one fleet per instance, connects every kiosk, offers Rate for
// Duration, and reports.
func RunScale(ctx context.Context, o ScaleOptions) (*ScaleResult, error) {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "loadgen: "+format+"\n", args...)
		}
	}
	if o.Instances <= 0 || o.Kiosks < o.Instances {
		return nil, fmt.Errorf("cluster: need at least one instance and a kiosk per instance")
	}
	var srv *pgtest.Server
	if o.Store == "" {
		var err error
		srv, err = pgtest.Start(pgtest.Options{Durable: true, MaxConnections: 300,
			Settings: map[string]string{"shared_buffers": "1GB", "max_wal_size": "4GB"}})
		if err != nil {
			return nil, err
		}
		defer srv.Stop()
		// The run directory outlives the server: a fresh database and a
		// fresh setup each time.
		os.RemoveAll(o.Dir)
		if o.Store, err = srv.CreateDatabase(ctx, "center"); err != nil {
			return nil, err
		}
		// Each instance's pool: enough connections for its share of the
		// reads beside the committer.
		o.Store += "&pool_max_conns=24"
		logf("private PostgreSQL in %s", srv.Dir)
	}
	logf("setting up %d kiosks in %s", o.Kiosks, o.Dir)
	// The setup's enrollments need no durability: asynchronous commits
	// make them several times faster. The instances commit synchronously.
	setupStore := o.Store + "&synchronous_commit=off"
	if !strings.Contains(o.Store, "?") {
		setupStore = o.Store + "?synchronous_commit=off"
	}
	if err := loadtest.SetupNationalStore(ctx, o.Dir, o.Kiosks, setupStore, o.Log); err != nil {
		return nil, err
	}
	base := filepath.Join(o.Dir, "center")
	baseCfg, err := config.Load(filepath.Join(base, admin.ConfigFile))
	if err != nil {
		return nil, err
	}
	var centers []*loadtest.CenterProcess
	defer func() {
		for _, c := range centers {
			c.Kill(syscall.SIGTERM)
		}
	}()
	for i := range o.Instances {
		dir := filepath.Join(o.Dir, fmt.Sprintf("instance-%d", i))
		os.RemoveAll(dir)
		if out, err := exec.CommandContext(ctx, "cp", "-a", base, dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("cluster: copy the center: %w: %s", err, out)
		}
		cfgPath := filepath.Join(dir, admin.ConfigFile)
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, err
		}
		cfg.InstanceID = fmt.Sprintf("center-%d", i)
		cfg.Store = o.Store
		cfg.KeysDir = baseCfg.Path(baseCfg.KeysDir)
		cfg.MasterKeyFile = filepath.Join(dir, baseCfg.MasterKeyFile)
		cfg.Limits.MaxConns = o.Kiosks
		// The other listeners of each instance on ports of their own.
		for _, l := range []*string{&cfg.EnrollListen, &cfg.ConsoleListen, &cfg.MetricsListen} {
			if *l != "" {
				*l = "127.0.0.1:0"
			}
		}
		if err := cfg.Write(cfgPath); err != nil {
			return nil, err
		}
		logFile, err := os.OpenFile(filepath.Join(dir, "center.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, err
		}
		defer logFile.Close()
		cp, err := loadtest.StartCenter(o.CenterBin, cfgPath, logFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: instance %d: %w", i, err)
		}
		centers = append(centers, cp)
	}
	type fleet struct {
		cmd  *exec.Cmd
		in   io.WriteCloser
		out  *bufio.Reader
		args loadtest.WorkerArgs
	}
	var fleets []*fleet
	defer func() {
		for _, f := range fleets {
			f.cmd.Process.Kill()
			f.cmd.Wait()
		}
	}()
	per := (o.Kiosks + o.Instances - 1) / o.Instances
	for i, cp := range centers {
		port := cp.Kiosk[strings.LastIndexByte(cp.Kiosk, ':')+1:]
		w := loadtest.WorkerArgs{Dir: o.Dir, Addr: "127.0.0.1:" + port, From: i * per, To: min((i+1)*per, o.Kiosks),
			Source: fmt.Sprintf("127.0.0.%d", 2+i%8), Rate: o.Rate / float64(o.Instances), Duration: o.Duration,
			CardsPerKiosk: 1, Timeout: 30 * time.Second, Seed: uint64(i + 1)}
		f := &fleet{args: w, cmd: exec.Command(o.LoadgenBin, w.Args()...)}
		f.cmd.Stderr = o.Log
		f.in, _ = f.cmd.StdinPipe()
		out, _ := f.cmd.StdoutPipe()
		f.out = bufio.NewReader(out)
		if err := childproc.Start(f.cmd); err != nil {
			return nil, err
		}
		fleets = append(fleets, f)
	}
	res := &ScaleResult{Instances: o.Instances, Kiosks: o.Kiosks, Offered: o.Rate}
	for _, f := range fleets {
		line, err := f.out.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("cluster: fleet %d-%d did not connect: %w", f.args.From, f.args.To, err)
		}
		var c int
		var s float64
		fmt.Sscanf(line, "connected %d %f", &c, &s)
		res.Connected += c
		res.ConnectSeconds = max(res.ConnectSeconds, s)
	}
	logf("%d kiosks connected to %d instances in %.1f s", res.Connected, o.Instances, res.ConnectSeconds)
	cpu := func() (centers_, db float64) {
		for _, c := range centers {
			v, _, _ := loadtest.ProcStat(c.PID())
			centers_ += v
		}
		if srv != nil {
			db = treeCPU(srv.PID())
		}
		return centers_, db
	}
	c0, d0 := cpu()
	for _, f := range fleets {
		fmt.Fprintln(f.in, "start")
	}
	for _, f := range fleets {
		var fr loadtest.FleetReport
		if err := json.NewDecoder(f.out).Decode(&fr); err != nil {
			return nil, fmt.Errorf("cluster: fleet %d-%d report: %w", f.args.From, f.args.To, err)
		}
		res.Report.Merge(&fr)
	}
	c1, d1 := cpu()
	res.CenterCPU, res.DatabaseCPU = c1-c0, d1-d0
	if res.Report.Elapsed > 0 {
		res.Throughput = float64(res.Report.Completed) / res.Report.Elapsed
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return res, nil
}

// treeCPU is the CPU seconds of a process and its children: its own
// time, the time of the children it has reaped (PostgreSQL's backends that
// ended), and the time of the children alive now.
func treeCPU(pid int) float64 {
	fields := func(p int) []string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			return nil
		}
		s := string(b)
		return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	}
	ticks := func(f []string, from, to int) float64 {
		t := 0.0
		for i := from; i <= to && i < len(f); i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			t += v
		}
		return t / 100
	}
	// Fields after the name: state(0) ppid(1) … utime(11) stime(12)
	// cutime(13) cstime(14).
	total := ticks(fields(pid), 11, 14)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		if f := fields(p); len(f) > 14 && f[1] == strconv.Itoa(pid) {
			total += ticks(f, 11, 12)
		}
	}
	return total
}

// WriteText prints the result as the table in docs/BENCHMARKS.md.
func (r *ScaleResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "instances                 %d (one PostgreSQL)\n", r.Instances)
	fmt.Fprintf(w, "kiosks connected          %d of %d in %.1f s\n", r.Connected, r.Kiosks, r.ConnectSeconds)
	fmt.Fprintf(w, "offered                   %.0f issuances/s for %.0f s\n", r.Offered, r.Report.Elapsed)
	fmt.Fprintf(w, "completed                 %d (%.1f/s)\n", r.Report.Completed, r.Throughput)
	fmt.Fprintf(w, "issue → certificate       p50 %v  p99 %v  max %v\n",
		r.Report.Issue.Quantile(0.5).Round(time.Millisecond), r.Report.Issue.Quantile(0.99).Round(time.Millisecond), r.Report.Issue.Max().Round(time.Millisecond))
	fmt.Fprintf(w, "no idle kiosk for arrival %d\n", r.Report.NoKiosk)
	fmt.Fprintf(w, "errors                    %v\n", r.Report.Errors)
	fmt.Fprintf(w, "retried                   %v\n", r.Report.Retried)
	fmt.Fprintf(w, "mismatches                %d (replays %d)\n", r.Report.Mismatches, r.Report.ReplayMismatches)
	if r.Report.Completed > 0 {
		fmt.Fprintf(w, "CPU per issuance          centers %.1f ms, PostgreSQL %.1f ms\n",
			1000*r.CenterCPU/float64(r.Report.Completed), 1000*r.DatabaseCPU/float64(r.Report.Completed))
	}
	fmt.Fprintf(w, "load average              %s\n", r.LoadAverage)
}
