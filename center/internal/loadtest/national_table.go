package loadtest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// WriteTable prints a national run as one table.
func (n *National) WriteTable(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "kiosks connected        %d of %d (in %.1f s)\n", n.Connected, n.Kiosks, n.ConnectSeconds)
	fmt.Fprintf(w, "center memory per conn  RSS %.1f KB, Go heap in use %.1f KB (idle, heartbeats only; RSS %.0f MB → %.0f MB)\n",
		n.IdleRSSPerConn/1024, n.IdleHeapPC/1024, float64(n.BaseRSS)/(1<<20), float64(n.ConnRSS)/(1<<20))
	fmt.Fprintf(w, "crypto floor            %s ms CPU per domestic issuance (2 RSA-2048 verifications, 1 ECDSA P-256 signature, 1 DEFLATE)\n", ms(n.FloorCPU))
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%9s %10s %8s %8s %8s %8s %8s %9s %6s  %s\n", "offered/s", "completed/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "mismatch", "CPU ms/is", "×floor", "errors (by code)")
	for _, r := range n.Results {
		h := &r.Report.Issue
		cpuPer := 0.0
		if r.Report.Completed > 0 {
			cpuPer = r.CenterCPU / float64(r.Report.Completed) * 1000
		}
		ratio := 0.0
		if n.FloorCPU > 0 {
			ratio = cpuPer / (float64(n.FloorCPU) / float64(time.Millisecond))
		}
		errs := "none"
		if len(r.Report.Errors) > 0 || r.Report.NoKiosk > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(r.Report.Errors)) {
				parts = append(parts, fmt.Sprintf("%s=%d", k, r.Report.Errors[k]))
			}
			if r.Report.NoKiosk > 0 {
				parts = append(parts, fmt.Sprintf("no_idle_kiosk=%d", r.Report.NoKiosk))
			}
			errs = strings.Join(parts, " ")
		}
		if len(r.Report.Retried) > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(r.Report.Retried)) {
				parts = append(parts, fmt.Sprintf("%s=%d", k, r.Report.Retried[k]))
			}
			errs += "; retried " + strings.Join(parts, " ")
		}
		fmt.Fprintf(w, "%9.0f %10.0f %8s %8s %8s %8s %8d %9.3f %6.2f  %s\n", r.Offered, r.Throughput,
			ms(h.Quantile(0.5)), ms(h.Quantile(0.9)), ms(h.Quantile(0.99)), ms(h.Max()),
			r.Report.Mismatches+r.Report.ReplayMismatches, cpuPer, ratio, errs)
	}
	for _, r := range n.Results {
		if len(r.Samples) > 0 {
			fmt.Fprintf(w, "\ncenter resources at %.0f/s offered:", r.Offered)
			WriteSamples(w, r.Samples, time.Minute)
		}
	}
	if n.ReconnectSeconds > 0 {
		state := "all back"
		if !n.ReconnectDone {
			state = "NOT all back"
		}
		fmt.Fprintf(w, "\nreconnect after SIGKILL %.1f s (%s)\n", n.ReconnectSeconds, state)
	}
	fmt.Fprintf(w, "load average            %s\n", n.LoadAverage)
}
