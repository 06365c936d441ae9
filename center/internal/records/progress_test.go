package records_test

import (
	"slices"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/progress"
)

// An import reports its phases, in order, to OnProgress and to Progress.
func TestImportProgress(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	clock := fixedNow
	records.SetClock(v, func() time.Time { clock = clock.Add(10 * time.Millisecond); return clock })
	var phases []records.Phase
	var last records.Progress
	opts := full()
	opts.RunBytes = 16 << 10
	opts.ProgressInterval = time.Nanosecond
	opts.OnProgress = func(p records.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
		last = p
	}
	job, err := v.BeginImport(ctx, asahikawa, opts)
	if err != nil {
		t.Fatal(err)
	}
	entries := syntheticEntries(t, 0, 2000)
	for i, e := range entries {
		if err := job.Add(ctx, e, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
		if i == 999 {
			job.SetInput(3000, 500_000, 1_000_000)
			p := job.Progress()
			if p.Phase != records.PhaseStaging || p.Rows != 3000 || p.Bytes != 500_000 || p.Persons < 512 {
				t.Errorf("mid-staging progress %+v", p)
			}
			if d, ok := p.Remaining(); !ok || d < 0 {
				t.Errorf("Remaining = %v, %v; want an estimate", d, ok)
			}
			if p.Rate() <= 0 {
				t.Error("no rate")
			}
			s := p.Status()
			if s.Unit != progress.Bytes || s.Total != 1_000_000 || s.Done != 500_000 || s.Count != 3000 || s.Finished {
				t.Errorf("Status = %+v", s)
			}
		}
	}
	res, err := job.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []records.Phase{records.PhaseStaging, records.PhaseOrdering, records.PhasePublishing, records.PhaseDone}
	if !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
	if last.Phase != records.PhaseDone || last.Result == nil || *last.Result != res || last.Persons != 2000 || last.Doses != 6000 {
		t.Errorf("final progress %+v", last)
	}
	if p := job.Progress(); p.Phase != records.PhaseDone || !p.Status().Finished {
		t.Errorf("Progress after Commit %+v", p)
	}

	// A rejected import ends in PhaseFailed with the (value-free) reason.
	job, _ = v.BeginImport(ctx, asahikawa, full())
	for i, e := range append(entries[:3:3], entries[0]) {
		job.Add(ctx, e, uint64(i+1))
	}
	if _, err := job.Commit(ctx); err == nil {
		t.Fatal("Commit of a duplicate person succeeded")
	}
	if p := job.Progress(); p.Phase != records.PhaseFailed || p.Err == "" {
		t.Errorf("progress after a rejection %+v", p)
	}
}
