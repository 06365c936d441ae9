package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	s := Status{Label: "141003 staging", Done: 512 << 20, Total: 2 << 30, Unit: Bytes, Count: 2_891_234, CountOf: "rows",
		Rate: 120_503.4, Elapsed: 24*time.Second + 300*time.Millisecond, Remaining: 72 * time.Second, RemainingKnown: true}
	want := "141003 staging: 2,891,234 rows, 25% of 2.0 GiB, 120,503 rows/s, 24s elapsed, about 1m12s left"
	if got := s.Line(); got != want {
		t.Errorf("Line = %q\nwant   %q", got, want)
	}
	s.Finished = true
	if strings.Contains(s.Line(), "left") {
		t.Errorf("a finished status estimates time left: %q", s.Line())
	}
	items := Status{Label: "x ordering", Done: 3, Total: 12, Count: 7, CountOf: "rows", Elapsed: time.Second}
	if got := items.Line(); got != "x ordering: 7 rows, 25% of 12, 1s elapsed" {
		t.Errorf("Line = %q", got)
	}
}

// Lines mode writes a line when the label changes, when LineInterval has
// passed, and at the end; nothing in between.
func TestLines(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	r := New(&out, Options{Mode: Lines, LineInterval: 10 * time.Second, Now: func() time.Time { return now }})
	st := Status{Label: "a staging", Count: 1, CountOf: "rows"}
	r.Update(st) // first: written
	now = now.Add(time.Second)
	st.Count = 2
	r.Update(st) // too soon
	now = now.Add(10 * time.Second)
	st.Count = 3
	r.Update(st) // interval passed
	st.Label, st.Count = "a ordering", 4
	r.Update(st) // new label
	st.Finished = true
	r.Update(st) // final
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], ": 1 rows") || !strings.Contains(lines[1], ": 3 rows") || !strings.Contains(lines[2], "ordering") {
		t.Errorf("lines:\n%s", out.String())
	}
}

// Bar mode draws with progressbar; a new label finishes the previous bar.
func TestBar(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Options{Mode: Bar})
	r.Update(Status{Label: "a staging", Done: 50, Total: 100, Unit: Bytes, Count: 10, CountOf: "rows", Rate: 5})
	r.Update(Status{Label: "a ordering", Done: 10, Total: 40, Count: 10, CountOf: "rows"})
	r.Update(Status{Label: "a done", Count: 10, CountOf: "rows", Finished: true})
	got := out.String()
	for _, want := range []string{"a staging: 10 rows (5/s)", "a ordering: 10 rows", "a done: 10 rows"} {
		if !strings.Contains(got, want) {
			t.Errorf("bar output lacks %q:\n%q", want, got)
		}
	}
	if IsTerminal(&out) {
		t.Error("a buffer is a terminal")
	}
}

// Follow polls until stopped and draws the final status; stop waits for
// its goroutine.
func TestFollow(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Options{Mode: Lines, LineInterval: time.Hour})
	n := int64(0)
	done := make(chan struct{})
	stop := Follow(r, func() Status {
		select {
		case <-done:
		default:
			n++
		}
		return Status{Label: "x staging", Count: n, CountOf: "rows"}
	}, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	close(done)
	stop()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "x staging: ") || !strings.HasPrefix(lines[1], "x staging: ") {
		t.Errorf("output:\n%s", out.String())
	}
}
