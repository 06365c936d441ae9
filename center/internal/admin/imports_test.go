package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// TestImportJobRegistry: a job that waits too long for its file is
// cancelled (and frees its municipality), only the last
// MaxFinishedImports finished jobs are kept, and each job's status names
// its state until the import reports a phase.
func TestImportJobRegistry(t *testing.T) {
	s := local(t, initCenter(t))
	ctx := context.Background()
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	s.cfg.Now = func() time.Time { return now }

	j, err := s.StartImport(ctx, op, ImportStart{Municipality: "012041", Size: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if st := j.Status(); st.Label != "012041 waiting" || st.Finished {
		t.Errorf("waiting job's status %+v", st)
	}
	if _, err := s.StartImport(ctx, op, ImportStart{Municipality: "012041"}); !errors.Is(err, ErrImportRunning) || !errors.Is(err, records.ErrImportRunning) {
		t.Fatalf("second job while one waits: %v", err)
	}
	now = now.Add(ImportFileWait + time.Second)
	if _, err := s.StartImport(ctx, op, ImportStart{Municipality: "012041"}); err != nil {
		t.Fatalf("a job after the first waited too long: %v", err)
	}
	got, err := s.ImportJobStatus(ctx, j.ID)
	if err != nil || got.State != ImportCancelled || !strings.Contains(got.Error, "no file arrived") {
		t.Fatalf("the job that waited too long: %+v, %v", got, err)
	}
	if st := got.Status(); !st.Finished {
		t.Errorf("cancelled job's status %+v", st)
	}
	evs, err := s.cfg.Store.Events(ctx, store.EventQuery{Type: store.EventRecordsImportEnded})
	if err != nil || len(evs) != 1 || evs[0].Result != "cancelled" || evs[0].Object != j.ID || evs[0].Operator != op.Operator {
		t.Fatalf("expiry audited as %+v, %v", evs, err)
	}

	// Finished jobs beyond the limit are forgotten, oldest first.
	first := ""
	for i := range MaxFinishedImports + 5 {
		five := fmt.Sprintf("%05d", 13101+i)
		d, err := lgcode.CheckDigit(five)
		if err != nil {
			t.Fatal(err)
		}
		code := five + string(d)
		j, err := s.StartImport(ctx, op, ImportStart{Municipality: code})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = j.ID
		}
		if _, err := s.CancelImport(ctx, op, j.ID); err != nil {
			t.Fatal(err)
		}
	}
	js, err := s.ImportJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finished := 0
	for _, j := range js {
		if j.State.Finished() {
			finished++
		}
		if j.ID == first {
			t.Errorf("the oldest finished job %s is still kept", first)
		}
	}
	// The job of 012041 still waits (its clock stands still).
	if finished != MaxFinishedImports || len(js) != MaxFinishedImports+1 {
		t.Errorf("%d finished jobs kept of %d listed, want %d", finished, len(js), MaxFinishedImports)
	}
}

// TestImportJobOnAnotherInstance: a job's ID names the instance that runs
// it, and another instance (reached through the same load balancer) says
// where the job is instead of "not found".
func TestImportJobOnAnotherInstance(t *testing.T) {
	s := local(t, initCenter(t))
	ctx := context.Background()
	c := config.Config{}
	if s.cfg.Center != nil {
		c = *s.cfg.Center
	}
	c.InstanceID = "center-1"
	s.cfg.Center = &c

	j, err := s.StartImport(ctx, op, ImportStart{Municipality: "012041"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(j.ID, "imp-") || !strings.HasSuffix(j.ID, ".center-1") {
		t.Fatalf("job ID %q does not name its instance", j.ID)
	}
	if got, err := s.ImportJobStatus(ctx, j.ID); err != nil || got.ID != j.ID {
		t.Fatalf("own job: %+v, %v", got, err)
	}
	other := strings.TrimSuffix(j.ID, "center-1") + "center-2"
	for name, call := range map[string]func() error{
		"status": func() error { _, err := s.ImportJobStatus(ctx, other); return err },
		"file":   func() error { _, err := s.UploadImport(ctx, op, other, strings.NewReader("")); return err },
		"cancel": func() error { _, err := s.CancelImport(ctx, op, other); return err },
	} {
		if err := call(); !errors.Is(err, ErrImportElsewhere) || !strings.Contains(err.Error(), "instance center-2") {
			t.Errorf("%s of another instance's job: %v", name, err)
		}
	}
	for _, id := range []string{"imp-none", strings.TrimSuffix(j.ID, ".center-1") + "0.center-1"} {
		if _, err := s.ImportJobStatus(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown job %s: %v", id, err)
		}
	}
	if _, err := s.CancelImport(ctx, op, j.ID); err != nil {
		t.Fatal(err)
	}
}
