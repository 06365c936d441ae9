// Package progress shows the progress of long operator work (a ledger
// import, and whatever else takes minutes): a progress bar with the count,
// rate and time left when the output is a terminal, plain periodic lines
// when it is not (a log file, a pipe, CI).
//
// The work itself exposes a Status to poll; the renderer only draws it. So
// the same Status can be served by the operations API while a terminal
// shows the bar:
//
//	r := progress.New(os.Stderr, progress.Options{})
//	stop := progress.Follow(r, func() progress.Status { return job.Progress().Status() }, 0)
//	res, err := job.Commit(ctx)
//	stop() // draws the final status and waits for the drawing goroutine
//
// The bar is github.com/schollz/progressbar/v3. A Status holds counts,
// rates and labels only; callers must not put personal data in a label.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Unit says what Status.Done and Total count.
type Unit uint8

// Units.
const (
	Items Unit = iota // a plain count
	Bytes             // bytes: shown as kB, MB, GB
)

// Status is a snapshot of long work.
type Status struct {
	// Label names the work and its phase (e.g. "012041 staging"). A new
	// label starts a new bar.
	Label string
	// Done of Total is the work of the current phase, in Unit; Total 0
	// means unknown (the bar becomes a spinner).
	Done, Total int64
	Unit        Unit
	// Count is what the operator thinks in (rows), CountOf its name, Rate
	// Count per second.
	Count   int64
	CountOf string
	Rate    float64
	Elapsed time.Duration
	// Remaining is the estimated time left, when RemainingKnown.
	Remaining      time.Duration
	RemainingKnown bool
	// Finished is set on the last status.
	Finished bool
}

// Line is the status as one line of plain text.
func (s Status) Line() string {
	var b strings.Builder
	b.WriteString(s.Label)
	b.WriteString(": ")
	if s.CountOf != "" {
		fmt.Fprintf(&b, "%s %s", group(s.Count), s.CountOf)
	}
	if s.Total > 0 {
		pct := float64(s.Done) / float64(s.Total) * 100
		fmt.Fprintf(&b, ", %.0f%% of %s", pct, s.amount(s.Total))
	} else if s.Done > 0 {
		fmt.Fprintf(&b, ", %s", s.amount(s.Done))
	}
	if s.Rate > 0 && s.CountOf != "" {
		fmt.Fprintf(&b, ", %s %s/s", group(int64(s.Rate+0.5)), s.CountOf)
	}
	fmt.Fprintf(&b, ", %s elapsed", s.Elapsed.Round(time.Second))
	if s.RemainingKnown && !s.Finished {
		fmt.Fprintf(&b, ", about %s left", s.Remaining.Round(time.Second))
	}
	return b.String()
}

func (s Status) amount(n int64) string {
	if s.Unit != Bytes {
		return group(n)
	}
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// group writes n with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Mode chooses how a Renderer draws.
type Mode uint8

// Modes.
const (
	// Auto draws a bar when the writer is a terminal, lines otherwise.
	Auto Mode = iota
	Bar
	Lines
)

// DefaultLineInterval is how often Lines mode writes a line.
const DefaultLineInterval = 10 * time.Second

// Options tunes a Renderer.
type Options struct {
	Mode Mode
	// LineInterval is the least time between two plain lines (0:
	// DefaultLineInterval); a new label or the final status is always
	// written.
	LineInterval time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Renderer draws Status updates to a writer. Safe for concurrent use.
type Renderer struct {
	w     io.Writer
	bar   bool
	every time.Duration
	now   func() time.Time

	mu       sync.Mutex
	label    string
	lastLine time.Time
	lastText string
	finished bool
	pb       *progressbar.ProgressBar
}

// New returns a renderer writing to w.
func New(w io.Writer, opts Options) *Renderer {
	r := &Renderer{w: w, every: opts.LineInterval, now: opts.Now}
	if r.every <= 0 {
		r.every = DefaultLineInterval
	}
	if r.now == nil {
		r.now = time.Now
	}
	switch opts.Mode {
	case Bar:
		r.bar = true
	case Auto:
		r.bar = IsTerminal(w)
	}
	return r
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Update draws s: the bar moves, or a line is written if LineInterval has
// passed since the last one (or the label changed, or s is Finished).
func (r *Renderer) Update(s Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar {
		r.drawBar(s)
		return
	}
	now := r.now()
	if s.Label == r.label && !s.Finished && now.Sub(r.lastLine) < r.every {
		return
	}
	line := s.Line()
	if s.Finished && r.finished && line == r.lastText {
		return // a poll after the end repeats the final status
	}
	r.label, r.lastLine, r.lastText, r.finished = s.Label, now, line, s.Finished
	fmt.Fprintln(r.w, line)
}

func (r *Renderer) drawBar(s Status) {
	if r.pb == nil || s.Label != r.label {
		if r.pb != nil {
			r.pb.Finish()
			fmt.Fprintln(r.w)
		}
		r.label = s.Label
		max := s.Total
		if max <= 0 {
			max = -1
		}
		r.pb = progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(r.w),
			progressbar.OptionShowBytes(s.Unit == Bytes),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	desc := s.Label
	if s.CountOf != "" {
		desc = fmt.Sprintf("%s: %s %s", s.Label, group(s.Count), s.CountOf)
		if s.Rate > 0 {
			desc += fmt.Sprintf(" (%s/s)", group(int64(s.Rate+0.5)))
		}
	}
	r.pb.Describe(desc)
	if s.Total > 0 {
		r.pb.Set64(s.Done)
	} else {
		r.pb.Add64(0)
	}
	if s.Finished {
		r.pb.Finish()
		fmt.Fprintln(r.w)
		fmt.Fprintln(r.w, s.Line())
		r.pb, r.label = nil, ""
	}
}

// Follow polls poll every interval (0: one second) on a goroutine of its
// own and draws what it returns. The returned stop function draws the
// final poll as finished and waits for the goroutine to end; call it once.
func Follow(r *Renderer, poll func() Status, interval time.Duration) (stop func()) {
	if interval <= 0 {
		interval = time.Second
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.Update(poll())
			}
		}
	}()
	return func() {
		close(done)
		<-exited
		s := poll()
		s.Finished = true
		r.Update(s)
	}
}
