package loadtest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Percentiles summarise a set of latencies.
type Percentiles struct {
	N                        int
	Mean, P50, P95, P99, Max time.Duration
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	at := func(q float64) time.Duration {
		// Nearest rank: the smallest value with at least q of the values at or below it.
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Percentiles{N: len(s), Mean: sum / time.Duration(len(s)), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: s[len(s)-1]}
}

func (p Percentiles) String() string {
	r := func(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s  mean %s  (n=%d)", r(p.P50), r(p.P95), r(p.P99), r(p.Max), r(p.Mean), p.N)
}

// Report is the outcome of a run.
type Report struct {
	Kiosks  int
	Elapsed time.Duration
	// Requests is the number of requests sent; Completed those that ended
	// with an Ack for the printed outcome.
	Requests, Completed int
	// Faults counts the injected disconnects by kind; Replays the accepted
	// answers that were replays.
	Faults  map[Fault]int
	Replays int
	// Errors counts failed requests by code; Retries the retryable errors
	// that a repeat of the request then overcame.
	Errors  map[string]int
	Retries map[string]int
	// Issue is Issue → accepted certificate; Cycle is Issue → Ack. Both
	// over completed requests.
	Issue, Cycle Percentiles
	Results      []Result
}

func newReport(kiosks int, elapsed time.Duration, results [][]Result) *Report {
	r := &Report{Kiosks: kiosks, Elapsed: elapsed, Faults: map[Fault]int{}, Errors: map[string]int{}, Retries: map[string]int{}}
	var issue, cycle []time.Duration
	for _, rs := range results {
		for _, res := range rs {
			r.Results = append(r.Results, res)
			r.Requests++
			if res.Fault != NoFault {
				r.Faults[res.Fault]++
			}
			for _, c := range res.Retries {
				r.Retries[c]++
			}
			if res.Err != "" {
				r.Errors[res.Err]++
				continue
			}
			if res.Replayed {
				r.Replays++
			}
			if res.Acked {
				r.Completed++
				issue = append(issue, res.Issue)
				cycle = append(cycle, res.Cycle)
			}
		}
	}
	r.Issue, r.Cycle = percentiles(issue), percentiles(cycle)
	return r
}

// Throughput is completed requests (issue → ack) per second.
func (r *Report) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Completed) / r.Elapsed.Seconds()
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "kiosks %d, requests %d, completed %d in %s: %.1f issuances/s\n",
		r.Kiosks, r.Requests, r.Completed, r.Elapsed.Round(time.Millisecond), r.Throughput())
	fmt.Fprintf(&b, "issue → certificate  %s\n", r.Issue)
	fmt.Fprintf(&b, "issue → ack          %s\n", r.Cycle)
	fmt.Fprintf(&b, "disconnects injected %d (before the answer %d, after it %d); answers replayed %d\n",
		r.Faults[BeforeResponse]+r.Faults[AfterResponse], r.Faults[BeforeResponse], r.Faults[AfterResponse], r.Replays)
	fmt.Fprintf(&b, "errors               %s\n", counts(r.Errors))
	fmt.Fprintf(&b, "retried              %s\n", counts(r.Retries))
	_, err := io.WriteString(w, b.String())
	return err
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// AuditCheck compares the center's audit log with what the kiosks saw.
type AuditCheck struct {
	// Issued is the number of "issued" events of the run's kiosks;
	// Requests the distinct request IDs among them; Certificates the
	// certificates the kiosks accepted; Printed the "printed" events.
	Issued, Requests, Certificates, Printed int
	// Problems lists every disagreement; empty means none.
	Problems []string
}

// OK reports whether the audit log agrees with the kiosks.
func (a AuditCheck) OK() bool { return len(a.Problems) == 0 }

func (a AuditCheck) String() string {
	s := fmt.Sprintf("audit: %d issued events for %d requests (%d certificates received), %d printed events",
		a.Issued, a.Requests, a.Certificates, a.Printed)
	if a.OK() {
		return s + ": consistent"
	}
	return s + ": " + strings.Join(a.Problems, "; ")
}

// CheckAudit checks events (the audit log since the run started) against
// the report: every certificate a kiosk accepted has exactly one "issued"
// event, under the request that received it; no request has an "issued"
// event for a certificate no kiosk received (a double issue); no
// certificate ID repeats; every acknowledged outcome has one "printed"
// event. Events of kiosks not in the run are ignored.
func CheckAudit(events []store.Event, rep *Report) AuditCheck {
	var a AuditCheck
	problem := func(format string, args ...any) {
		if len(a.Problems) < 20 {
			a.Problems = append(a.Problems, fmt.Sprintf(format, args...))
		} else if len(a.Problems) == 20 {
			a.Problems = append(a.Problems, "…")
		}
	}
	kiosks := map[string]bool{}
	received := map[string][]string{} // request ID → certificate IDs accepted
	acked := map[string]bool{}
	for _, r := range rep.Results {
		kiosks[r.KioskID] = true
		if len(r.CertificateIDs) > 0 {
			received[r.RequestID] = r.CertificateIDs
			a.Certificates += len(r.CertificateIDs)
		}
		if r.Acked {
			acked[r.RequestID] = true
		}
	}
	issued := map[string][]string{}
	printed := map[string]int{}
	certs := map[string]string{}
	for _, e := range events {
		if !kiosks[e.KioskID] {
			continue
		}
		switch e.Type {
		case store.EventIssued:
			a.Issued++
			issued[e.RequestID] = append(issued[e.RequestID], e.CertificateID)
			if other, dup := certs[e.CertificateID]; dup {
				problem("certificate ID %s issued for requests %s and %s", e.CertificateID, other, e.RequestID)
			}
			certs[e.CertificateID] = e.RequestID
		case store.EventPrinted:
			a.Printed++
			printed[e.RequestID]++
		}
	}
	a.Requests = len(issued)
	for id, got := range received {
		ev := issued[id]
		if len(ev) != len(got) {
			problem("request %s: %d issued events for %d certificates received", id, len(ev), len(got))
			continue
		}
		if !slices.Equal(slices.Sorted(slices.Values(ev)), slices.Sorted(slices.Values(got))) {
			problem("request %s: issued %v, received %v", id, ev, got)
		}
	}
	for id, ev := range issued {
		if _, ok := received[id]; !ok {
			problem("request %s: %d certificates issued that no kiosk accepted", id, len(ev))
		}
	}
	for id := range acked {
		if printed[id] != 1 {
			problem("request %s: acknowledged, %d printed events", id, printed[id])
		}
	}
	for id, n := range printed {
		if !acked[id] && n > 1 {
			problem("request %s: %d printed events", id, n)
		}
	}
	return a
}
