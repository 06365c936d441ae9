package loadtest

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/kioskcert/kioskcert/pkg/childproc"
	"github.com/kioskcert/kioskcert/pkg/shc"
)

// NationalOptions shape a national run.
type NationalOptions struct {
	Dir string // run directory (SetupNational)
	// CenterBin is the issuance-center binary; LoadgenBin this program
	// (for the fleet processes).
	CenterBin, LoadgenBin string
	Kiosks, Fleets        int
	// Rates are the offered loads (issuances a second) to run in turn,
	// each for Duration.
	Rates    []float64
	Duration time.Duration
	// DisconnectRate and CancelRate are the fleets' faults.
	DisconnectRate, CancelRate float64
	// Restart kills the center with SIGKILL after the runs, restarts it and
	// measures how long until every kiosk is back.
	Restart bool
	// Sample, when set, reads the center's memory, goroutines and open
	// files at this interval while each rate runs (a soak).
	Sample time.Duration
	Log    io.Writer
}

// NationalResult is one rate's figures.
type NationalResult struct {
	Offered    float64
	Report     FleetReport
	CenterCPU  float64  // CPU seconds of the center during the run
	Throughput float64  // completed per second
	Samples    []Sample `json:",omitempty"`
}

// National is a whole run.
type National struct {
	Kiosks, Connected          int
	ConnectSeconds             float64
	IdleRSSPerConn, IdleHeapPC float64 // bytes
	BaseRSS, ConnRSS           int64
	Results                    []NationalResult
	FloorCPU                   time.Duration // per issuance, one core
	ReconnectSeconds           float64
	ReconnectDone              bool
	LoadAverage                string
}

type fleetProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	args WorkerArgs
}

// RunNational sets up (or reuses) the run directory, starts the center
// process and the fleets, measures the idle connections, runs each rate,
// and optionally restarts the center under its full fleet.
func RunNational(ctx context.Context, o NationalOptions) (*National, error) {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "loadgen: "+format+"\n", args...)
		}
	}
	logf("setting up %d kiosks in %s", o.Kiosks, o.Dir)
	if err := SetupNational(ctx, o.Dir, o.Kiosks, o.Log); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(o.Dir, "center.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// Each run starts from a fresh request register and audit log.
	cp, err := StartCenter(o.CenterBin, filepath.Join(o.Dir, "center", admin.ConfigFile), logFile)
	if err != nil {
		return nil, err
	}
	defer cp.Kill(syscall.SIGTERM)
	time.Sleep(2 * time.Second) // let the center settle before the baseline
	n := &National{Kiosks: o.Kiosks}
	_, n.BaseRSS, _ = ProcStat(cp.PID())
	baseHeap, _ := Metric(cp.Ops, "go_memstats_heap_inuse_bytes")

	_, port, _ := strings.Cut(cp.Kiosk, "]:")
	if port == "" {
		port = cp.Kiosk[strings.LastIndexByte(cp.Kiosk, ':')+1:]
	}
	var fleets []*fleetProc
	defer func() {
		for _, f := range fleets {
			if f.cmd != nil {
				f.cmd.Process.Kill()
				f.cmd.Wait()
			}
		}
	}()
	per := (o.Kiosks + o.Fleets - 1) / o.Fleets
	for i := 0; i < o.Fleets; i++ {
		from, to := i*per, min((i+1)*per, o.Kiosks)
		if from >= to {
			break
		}
		w := WorkerArgs{Dir: o.Dir, Addr: "127.0.0.1:" + port, From: from, To: to, Source: fmt.Sprintf("127.0.0.%d", 2+i%8),
			CardsPerKiosk: 1, DisconnectRate: o.DisconnectRate, CancelRate: o.CancelRate, Timeout: 30 * time.Second, Seed: uint64(i + 1)}
		fleets = append(fleets, &fleetProc{args: w})
	}
	// One fleet process per rate: a fleet connects, waits, runs one rate.
	// For the idle figures, the first rate's fleets connect first.
	startFleets := func(rate float64) error {
		for _, f := range fleets {
			if f.cmd != nil {
				f.cmd.Process.Kill()
				f.cmd.Wait()
			}
			f.args.Rate = rate / float64(len(fleets))
			f.args.Duration = o.Duration
			f.cmd = exec.Command(o.LoadgenBin, f.args.Args()...)
			f.cmd.Stderr = o.Log
			f.in, _ = f.cmd.StdinPipe()
			out, _ := f.cmd.StdoutPipe()
			f.out = bufio.NewReader(out)
			if err := childproc.Start(f.cmd); err != nil {
				return err
			}
		}
		connected, secs := 0, 0.0
		for _, f := range fleets {
			line, err := f.out.ReadString('\n')
			if err != nil {
				return fmt.Errorf("loadtest: fleet %d-%d did not connect: %w", f.args.From, f.args.To, err)
			}
			var c int
			var s float64
			fmt.Sscanf(line, "connected %d %f", &c, &s)
			connected += c
			secs = max(secs, s)
		}
		n.Connected, n.ConnectSeconds = connected, secs
		return nil
	}
	for i, rate := range o.Rates {
		logf("connecting %d kiosks in %d fleet processes for %.0f issuances/s", o.Kiosks, len(fleets), rate)
		if err := startFleets(rate); err != nil {
			return nil, err
		}
		logf("%d kiosks connected in %.1f s", n.Connected, n.ConnectSeconds)
		if i == 0 {
			time.Sleep(5 * time.Second) // idle: heartbeats only
			_, n.ConnRSS, _ = ProcStat(cp.PID())
			heap, _ := Metric(cp.Ops, "go_memstats_heap_inuse_bytes")
			if n.Connected > 0 {
				n.IdleRSSPerConn = float64(n.ConnRSS-n.BaseRSS) / float64(n.Connected)
				n.IdleHeapPC = (heap - baseHeap) / float64(n.Connected)
			}
		}
		cpu0, _, _ := ProcStat(cp.PID())
		for _, f := range fleets {
			fmt.Fprintln(f.in, "start")
		}
		res := NationalResult{Offered: rate}
		sctx, stopSampling := context.WithCancel(ctx)
		defer stopSampling()
		sampled := make(chan []Sample, 1)
		if o.Sample > 0 {
			go func() { sampled <- sampleCenter(sctx, cp.PID(), cp.Ops, o.Sample) }()
		} else {
			sampled <- nil
		}
		for _, f := range fleets {
			var fr FleetReport
			if err := json.NewDecoder(f.out).Decode(&fr); err != nil {
				return nil, fmt.Errorf("loadtest: fleet %d-%d report: %w", f.args.From, f.args.To, err)
			}
			res.Report.Merge(&fr)
			f.cmd.Wait()
			f.cmd = nil
		}
		cpu1, _, _ := ProcStat(cp.PID())
		stopSampling()
		res.Samples = <-sampled
		res.CenterCPU = cpu1 - cpu0
		if res.Report.Elapsed > 0 {
			res.Throughput = float64(res.Report.Completed) / res.Report.Elapsed
		}
		n.Results = append(n.Results, res)
		logf("%.0f/s offered: %.0f/s completed, p99 %s, errors %v", rate, res.Throughput, res.Report.Issue.Quantile(0.99), res.Report.Errors)
	}
	if o.Restart {
		if err := startFleets(0); err != nil {
			return nil, err
		}
		logf("restarting the center under %d connected kiosks", n.Connected)
		cp.Kill(syscall.SIGKILL)
		t0 := time.Now()
		if err := cp.Restart(); err != nil {
			return nil, err
		}
		deadline := t0.Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			c, err := Metric(cp.Ops, "kioskcert_center_kiosks_connected")
			if err == nil && int(c) >= n.Connected {
				n.ReconnectSeconds, n.ReconnectDone = time.Since(t0).Seconds(), true
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !n.ReconnectDone {
			n.ReconnectSeconds = time.Since(t0).Seconds()
		}
		logf("kiosks back after %.1f s (all: %v)", n.ReconnectSeconds, n.ReconnectDone)
	}
	n.FloorCPU = CryptoFloor(2000)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		n.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return n, nil
}

// CryptoFloor measures, on one core, the cryptography one domestic
// issuance cannot avoid: two RSA-2048 verifications of the card data
// (the AP certificate and the data signature), one ECDSA P-256 signature
// of the SMART Health Card and one DEFLATE of its payload.
func CryptoFloor(iterations int) time.Duration {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	msg := sha256.Sum256([]byte("card data"))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, msg[:])
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d, err := demo.Load()
	if err != nil {
		return 0
	}
	r, _ := d.Resident("taro")
	c, err := certtest.FromRecord(d, r, "012041", certificate.Domestic)
	if err != nil {
		return 0
	}
	is, err := shc.NewIssuer("https://issuer.loadtest.invalid", ek, nil)
	if err != nil {
		return 0
	}
	p, err := is.Payload(c, time.Now())
	if err != nil {
		return 0
	}
	body, _ := json.Marshal(p)
	var mu sync.Mutex
	mu.Lock()
	defer mu.Unlock()
	start := time.Now()
	for range iterations {
		for range 2 {
			rsa.VerifyPKCS1v15(&rk.PublicKey, crypto.SHA256, msg[:], sig)
		}
		h := sha256.Sum256(body)
		ecdsa.SignASN1(rand.Reader, ek, h[:])
		shc.Deflate(body)
	}
	return time.Since(start) / time.Duration(iterations)
}
