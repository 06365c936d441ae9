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
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// TestOperatorCommandsUnderLoad: every operator command of issuance-center
// runs against the serving center while its kiosks issue — none needs a
// stop, and the kiosks' requests go on being answered correctly.
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
		rep, err := RunFleet(ctx, FleetConfig{Addr: "127.0.0.1:" + port, Kiosks: ks, Cards: cards, Rate: 25, Duration: 10 * time.Second,
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
	run("municipality 131016", "municipality", "add", "-code", "131016", "-name-ja", "千代田区", "-name-en", "Chiyoda City", "-authority-ja", "千代田区長", "-authority-en", "Mayor of Chiyoda City")
	run("participating: true", "municipality", "enable", "-code", "131016")
	run("participating: false", "municipality", "disable", "-code", "131016")
	run("imported", "records", "import", "-municipality", "011002", "-file", ledger)
	run("011002", "records", "count")
	run("enrolled kiosk K-LIVE", "kiosk", "enroll", "-id", "K-LIVE", "-store-name", "店", "-store-code", "S-LIVE", "-chain", "LT", "-prefecture", "13", "-out", filepath.Join(dir, "k-live"))
	// NK-000039 is enrolled but not in the fleet (which uses the first 38).
	run("is suspended", "kiosk", "suspend", "-id", "NK-000039", "-reason", "inspection")
	run("is active", "kiosk", "activate", "-id", "NK-000039")
	run("new active SMART Health Card key", "rotate-shc-key")
	run("revoked", "revoke", "-certificate-id", "4M41JFDVR4JS", "-kid", kidOf(t, run("", "rotate-shc-key")), "-reason", "misprint")
	run("K-LIVE", "kiosk", "list")
	run("audit log verified", "audit", "verify")

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
