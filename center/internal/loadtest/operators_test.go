package loadtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/records/recordsbench"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// TestOperatorCommandsUnderLoad: every operator command of issuance-center
// runs against the serving center while its kiosks issue — none needs a
// stop, and the kiosks' requests go on being answered correctly. (Not
// here: keys request and install, which need the offline authorities'
// signatures; center/internal/app's production test covers them.)
func TestOperatorCommandsUnderLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bin, err := BuildCenter(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	const kiosks = 40
	if err := SetupNational(ctx, dir, kiosks, nil); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "center", admin.ConfigFile)
	cp, err := StartCenter(bin, cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cp.Kill(syscall.SIGTERM) }()
	ks, err := LoadKioskRange(filepath.Join(dir, "kiosks"), "localhost", 0, kiosks-2)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := carddata.LoadAuthority(filepath.Join(dir, "authority"))
	if err != nil {
		t.Fatal(err)
	}
	ap := testAPKey(t)
	cards := make([][]Card, len(ks))
	for i := range ks {
		if cards[i], err = DemoCards(auth, ap, i, 1, []certificate.Kind{certificate.Domestic}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	ledger := filepath.Join(dir, "ledger.csv")
	var csv bytes.Buffer
	if _, err := d.WriteLedger(&csv, "011002"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ledger, csv.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	port := cp.Kiosk[strings.LastIndexByte(cp.Kiosk, ':')+1:]
	started := make(chan struct{})
	type result struct {
		rep *FleetReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := RunFleet(ctx, FleetConfig{Addr: "127.0.0.1:" + port, Kiosks: ks, Cards: cards, Rate: 25, Duration: 75 * time.Second,
			Timeout: 20 * time.Second, Seed: 7, OnConnected: func(int, float64) { close(started) }})
		done <- result{rep, err}
	}()
	<-started

	run := func(want string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append(args, "-config", cfgPath)...)
		// The operator is the one the init token belongs to.
		cmd.Env = append(os.Environ(), "KIOSKCERT_OPERATOR=")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("issuance-center %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// runIn is run with standard input (the My Number of the flag commands).
	runIn := func(stdin, want string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append(args, "-config", cfgPath)...)
		cmd.Env = append(os.Environ(), "KIOSKCERT_OPERATOR=")
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("issuance-center %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("municipality 131016", "municipality", "add", "-code", "131016", "-name-ja", "千代田区", "-name-en", "Chiyoda City", "-authority-ja", "千代田区長", "-authority-en", "Mayor of Chiyoda City")
	run("participating: true", "municipality", "enable", "-code", "131016")
	run("participating: false", "municipality", "disable", "-code", "131016")
	run("imported", "records", "import", "-municipality", "011002", "-file", ledger)
	run("011002", "records", "count")
	// A region of its own for the record commands, so that no kiosk of
	// the fleet meets a flag or a deletion.
	const chiyoda = "131016"
	var chiyodaCSV bytes.Buffer
	if _, err := recordsbench.Generate(&chiyodaCSV, chiyoda, 0, 20000, 1); err != nil {
		t.Fatal(err)
	}
	chiyodaFile := filepath.Join(dir, "ledger-"+chiyoda+".csv")
	if err := os.WriteFile(chiyodaFile, chiyodaCSV.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	run("imported 20000 persons", "records", "import", "-municipality", chiyoda, "-file", chiyodaFile, "-encoding", "utf-8")
	someone := recordsbench.Person(chiyoda, 7, 1).MyNumber
	runIn(someone+"\n", "flag counter_only set", "records", "flag-set", "-municipality", chiyoda, "-kind", "counter_only", "-reason", "staff_review")
	runIn(someone+"\n", "flag counter_only cleared", "records", "flag-clear", "-municipality", chiyoda, "-kind", "counter_only")
	// An import cancelled while its file is still arriving: the records
	// stay as they were.
	slow := exec.Command(bin, "records", "import", "-municipality", chiyoda, "-file", "-", "-config", cfgPath)
	slow.Env = append(os.Environ(), "KIOSKCERT_OPERATOR=")
	stdin, err := slow.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var slowOut bytes.Buffer
	slow.Stdout, slow.Stderr = &slowOut, &slowOut
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write(chiyodaCSV.Bytes()[:chiyodaCSV.Len()/2]); err != nil {
		t.Fatal(err)
	}
	var jobID string
	for deadline := time.Now().Add(time.Minute); jobID == "" && time.Now().Before(deadline); {
		for _, line := range strings.Split(run("", "records", "imports"), "\n") {
			if f := strings.Fields(line); len(f) > 5 && f[1] == chiyoda && f[3] == "running" && f[5] != "0" {
				jobID = f[0]
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if jobID == "" {
		t.Fatal("the import in progress is not listed as running with rows read")
	}
	run("is cancelled", "records", "import-cancel", "-id", jobID)
	stdin.Close()
	if err := slow.Wait(); err == nil || !strings.Contains(slowOut.String(), "cancel") {
		t.Errorf("the cancelled import's command: %v\n%s", err, slowOut.String())
	}
	if out := run(chiyoda, "records", "count"); !strings.Contains(out, chiyoda+" 20000") {
		t.Errorf("records after a cancelled import:\n%s", out)
	}
	run("deleted 20000 records", "records", "delete", "-municipality", chiyoda)
	run("131016", "municipality", "list")
	run("enrolled kiosk K-LIVE", "kiosk", "enroll", "-id", "K-LIVE", "-store-name", "店", "-store-code", "S-LIVE", "-chain", "LT", "-prefecture", "13", "-out", filepath.Join(dir, "k-live"))
	// NK-000039 is enrolled but not in the fleet (which uses the first 38).
	run("is suspended", "kiosk", "suspend", "-id", "NK-000039", "-reason", "inspection")
	run("is active", "kiosk", "activate", "-id", "NK-000039")
	run("is revoked", "kiosk", "revoke", "-id", "NK-000039", "-reason", "stolen")
	run("enrollment code for kiosk K-CODE", "kiosk", "enroll-code", "-id", "K-CODE", "-store-name", "店", "-store-code", "S-CODE", "-chain", "LT", "-prefecture", "13")
	run("operator op-script (viewer) created", "operator", "add", "-id", "op-script", "-role", "viewer", "-token-only")
	tokenOut := run("token ", "operator", "token", "-id", "op-script", "-label", "load", "-out", filepath.Join(dir, "op-script.token"))
	run("op-script", "operator", "list")
	run("disabled: true", "operator", "disable", "-id", "op-script")
	run("disabled: false", "operator", "enable", "-id", "op-script")
	if f := strings.Fields(tokenOut); len(f) > 1 {
		run("revoked", "operator", "revoke-token", "-token-id", f[1])
	}
	run("new active SMART Health Card key", "rotate-shc-key")
	run("revoked", "revoke", "-certificate-id", "4M41JFDVR4JS", "-kid", kidOf(t, run("", "rotate-shc-key")), "-reason", "misprint")
	run("K-LIVE", "kiosk", "list")
	run("municipality list:", "municipality", "import-list")
	run("audit log verified", "audit", "verify")
	select {
	case r := <-done:
		t.Error("the fleet stopped issuing before the last command; lengthen its Duration")
		done <- r
	default:
	}

	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	rep := res.rep
	t.Logf("under operator commands: offered %d, completed %d, errors %v, retried %v, p99 %s", rep.Offered, rep.Completed, rep.Errors, rep.Retried, rep.Issue.Quantile(0.99))
	if rep.Mismatches+rep.ReplayMismatches != 0 || len(rep.Errors) != 0 {
		t.Fatalf("requests failed while operators worked: %v (%d mismatches)", rep.Errors, rep.Mismatches+rep.ReplayMismatches)
	}
	if rep.Completed == 0 {
		t.Fatal("nothing was issued")
	}
}

// kidOf takes the key ID from rotate-shc-key's output.
func kidOf(t *testing.T, out string) string {
	t.Helper()
	f := strings.Fields(out)
	for i, w := range f {
		if w == "key" && i+1 < len(f) {
			return strings.TrimSuffix(f[i+1], ";")
		}
	}
	t.Fatalf("no key ID in %q", out)
	return ""
}
