package opsclient_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/demodata"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/opsclient"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/recordsbench"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// slowReader hands its data over in small pieces with a pause between
// them, as a file arrives over a slow link.
type slowReader struct {
	r     io.Reader
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	return s.r.Read(p[:min(len(p), 8<<10)])
}

func countOf(t *testing.T, c *opsclient.Client, code string) int {
	t.Helper()
	counts, err := c.RecordCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range counts {
		if rc.Municipality == code {
			return rc.Records
		}
	}
	return 0
}

// TestImportJobs runs import jobs through the HTTP API: one per
// municipality at a time, progress while the file streams, cancellation
// (waiting and running) that leaves the records as they were, a rejected
// file's problems by row, a complete import, and the audit of each step.
func TestImportJobs(t *testing.T) {
	srv, token := newAPI(t)
	c := &opsclient.Client{BaseURL: srv.URL, Token: token, Operator: "op-remote"}
	ctx := context.Background()
	op := admin.Actor{Operator: "op-remote"}
	if _, err := demodata.Load(ctx, c, op); err != nil {
		t.Fatal(err)
	}
	const code = "012041"
	before := countOf(t, c, code)
	if before == 0 {
		t.Fatal("the demo data holds no records of", code)
	}
	var ledger bytes.Buffer
	const persons = 6000
	if _, err := recordsbench.Generate(&ledger, code, 0, persons, 1); err != nil {
		t.Fatal(err)
	}

	// A waiting job holds the municipality; a second is refused; cancelled,
	// it frees it.
	j, err := c.StartImport(ctx, op, admin.ImportStart{Municipality: code, Size: int64(ledger.Len())})
	if err != nil || j.State != admin.ImportWaiting || j.ID == "" || j.Mode != records.ModeFull {
		t.Fatalf("start: %+v, %v", j, err)
	}
	var ae *opsclient.APIError
	if _, err := c.StartImport(ctx, op, admin.ImportStart{Municipality: code}); !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "import_running" || !errors.Is(err, admin.ErrImportRunning) {
		t.Fatalf("second start: %v", err)
	}
	for _, bad := range []admin.ImportStart{
		{Municipality: "12345"},
		{Municipality: "011002", ImportOptions: admin.ImportOptions{Mode: "partial"}},
		{Municipality: "011002", ImportOptions: admin.ImportOptions{Encoding: "latin1"}},
	} {
		if _, err := c.StartImport(ctx, op, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("start %+v: %v, want invalid", bad, err)
		}
	}
	if got, err := c.CancelImport(ctx, op, j.ID); err != nil || got.State != admin.ImportCancelled {
		t.Fatalf("cancel a waiting job: %+v, %v", got, err)
	}
	if _, err := c.CancelImport(ctx, op, j.ID); !errors.Is(err, admin.ErrImportState) {
		t.Fatalf("cancel twice: %v", err)
	}
	if _, err := c.UploadImport(ctx, op, j.ID, strings.NewReader("x")); !errors.Is(err, admin.ErrImportState) {
		t.Fatalf("file for a cancelled job: %v", err)
	}
	if _, err := c.ImportJobStatus(ctx, "imp-none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
	if _, err := c.ImportJobStatus(ctx, "imp-0123456789abcdef.center-elsewhere"); !errors.Is(err, admin.ErrImportElsewhere) || !strings.Contains(err.Error(), "center-elsewhere") {
		t.Fatalf("status of another instance's job: %v", err)
	}

	// A running job shows its progress and stops when cancelled.
	j, err = c.StartImport(ctx, op, admin.ImportStart{Municipality: code, Size: int64(ledger.Len())})
	if err != nil {
		t.Fatal(err)
	}
	uploaded := make(chan error, 1)
	go func() {
		_, err := c.UploadImport(ctx, op, j.ID, &slowReader{bytes.NewReader(ledger.Bytes()), 10 * time.Millisecond})
		uploaded <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := c.ImportJobStatus(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == admin.ImportRunning && got.Progress != nil && got.Progress.Rows > 0 {
			if got.Progress.TotalBytes != int64(ledger.Len()) || got.Progress.Bytes == 0 || got.RowsPerSecond <= 0 {
				t.Errorf("progress while running: %+v (rate %f)", got.Progress, got.RowsPerSecond)
			}
			break
		}
		if got.State.Finished() || time.Now().After(deadline) {
			t.Fatalf("no progress while the file streams: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if js, err := c.ImportJobs(ctx); err != nil || len(js) < 2 || js[0].ID != j.ID || js[0].State != admin.ImportRunning {
		t.Fatalf("jobs while one runs: %+v, %v", js, err)
	}
	got, err := c.CancelImport(ctx, op, j.ID)
	if err != nil || got.State != admin.ImportCancelled {
		t.Fatalf("cancel a running job: %+v, %v", got, err)
	}
	if err := <-uploaded; !errors.As(err, &ae) || ae.Code != "import_cancelled" {
		t.Fatalf("upload of a cancelled job: %v", err)
	}
	if n := countOf(t, c, code); n != before {
		t.Fatalf("after a cancelled import %d records, want the %d before", n, before)
	}

	// A sender that stops sending does not hold a cancellation up.
	j, err = c.StartImport(ctx, op, admin.ImportStart{Municipality: code})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		_, err := c.UploadImport(ctx, op, j.ID, pr)
		uploaded <- err
	}()
	half := ledger.Bytes()[:ledger.Len()/2]
	if _, err := pw.Write(half); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := c.ImportJobStatus(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Progress != nil && got.Progress.Rows > 0 {
			break
		}
		if got.State.Finished() || time.Now().After(deadline) {
			t.Fatalf("no progress from half a file: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	got, err = c.CancelImport(cctx, op, j.ID)
	cancel()
	if err != nil || got.State != admin.ImportCancelled {
		t.Fatalf("cancel while the sender is silent: %+v, %v", got, err)
	}
	if err := <-uploaded; !errors.As(err, &ae) || ae.Code != "import_cancelled" {
		t.Fatalf("upload of a cancelled job: %v", err)
	}

	// A rejected file: nothing imported, its problems by row.
	j, err = c.StartImport(ctx, op, admin.ImportStart{Municipality: code})
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(ledger.String(), ",comirnaty,", ",no-such-vaccine,", 1)
	if _, err := c.UploadImport(ctx, op, j.ID, strings.NewReader(bad)); !errors.As(err, &ae) || ae.Code != "invalid_file" || len(ae.Problems) != 1 {
		t.Fatalf("rejected file: %v", err)
	}
	if got, err := c.ImportJobStatus(ctx, j.ID); err != nil || got.State != admin.ImportFailed || len(got.Problems) != 1 || got.Problems[0].Row == 0 {
		t.Fatalf("rejected job: %+v, %v", got, err)
	}

	// The whole file.
	j, err = c.StartImport(ctx, op, admin.ImportStart{Municipality: code, Size: int64(ledger.Len())})
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.UploadImport(ctx, op, j.ID, bytes.NewReader(ledger.Bytes()))
	if err != nil || done.State != admin.ImportDone || done.Result == nil || done.Result.Persons != persons || done.Progress == nil || done.Progress.Phase != records.PhaseDone {
		t.Fatalf("import: %+v, %v", done, err)
	}
	if n := countOf(t, c, code); n != persons {
		t.Fatalf("after the import %d records, want %d", n, persons)
	}
	if st := done.Status(); !st.Finished || st.Count == 0 {
		t.Errorf("final status %+v", st)
	}

	// A viewer watches imports but neither starts nor cancels one.
	if _, err := c.AddOperator(ctx, op, admin.NewOperator{ID: "op-viewer", Role: store.RoleViewer, TokenOnly: true}); err != nil {
		t.Fatal(err)
	}
	vt, err := c.IssueAPIToken(ctx, op, "op-viewer", "watch", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	viewer := &opsclient.Client{BaseURL: srv.URL, Token: vt.Token}
	if js, err := viewer.ImportJobs(ctx); err != nil || len(js) == 0 {
		t.Errorf("viewer lists imports: %d, %v", len(js), err)
	}
	if _, err := viewer.StartImport(ctx, admin.Actor{}, admin.ImportStart{Municipality: code}); !errors.Is(err, opauth.ErrNoPermission) {
		t.Errorf("viewer starts an import: %v", err)
	}
	if _, err := viewer.CancelImport(ctx, admin.Actor{}, j.ID); !errors.Is(err, opauth.ErrNoPermission) {
		t.Errorf("viewer cancels an import: %v", err)
	}

	// Each step audited with the operator and the job.
	evs, err := c.Audit(ctx, store.EventQuery{Municipality: code, Operator: "op-remote"})
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range evs {
		if strings.HasPrefix(string(e.Type), "records_import") {
			if e.Object == "" || e.Source != "127.0.0.1" {
				t.Errorf("event %+v without its job or source", e)
			}
			steps = append(steps, string(e.Type)+":"+e.Result)
		}
	}
	// The demo data's import first.
	want := "records_import_started:full records_imported:ok " +
		"records_import_started:full records_import_cancel:requested records_import_ended:cancelled " +
		"records_import_started:full records_import_cancel:requested records_import_ended:cancelled " +
		"records_import_started:full records_import_cancel:requested records_import_ended:cancelled " +
		"records_import_started:full records_import_ended:failed records_import_started:full records_imported:ok"
	if strings.Join(steps, " ") != want {
		t.Errorf("audited\n%s\nwant\n%s", strings.Join(steps, " "), want)
	}
}
