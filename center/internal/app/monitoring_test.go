package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// monitoringDir holds the alerting rules and the dashboard.
var monitoringDir = filepath.Join("..", "..", "..", "docs", "monitoring")

func promtool(t *testing.T) string {
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run `make deps` (.ci/install-deps installs Debian's prometheus package)")
	}
	return p
}

// TestMetricsLint scrapes a center that has issued a certificate on its
// own metrics listener and lints the exposition with promtool.
func TestMetricsLint(t *testing.T) {
	tool := promtool(t)
	tc := startCenter(t, func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" })
	k, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	req, m := k.issue("012041", certificate.Domestic, tc.card(t, "hanako", ""))
	if _, ok := m.(protocol.CertificateResponse); !ok {
		t.Fatalf("issue: %#v", m)
	}
	k.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1})
	k.read()
	k.sendRaw([]byte(`{"v":1,"type":"nonsense","body":{}}`)) // a bad frame, counted by code
	k.read()

	resp, err := http.Get("http://" + tc.center.Addr("metrics") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"kioskcert_center_kiosks_connected 1", "kioskcert_center_issue_seconds_bucket",
		"kioskcert_center_audit_write_failures_total 0", `kioskcert_center_signing_key_not_after_timestamp_seconds{kid=`,
		`kioskcert_center_certificate_not_after_timestamp_seconds{certificate="center_tls"}`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The metrics listener serves nothing else.
	if r, err := http.Get("http://" + tc.center.Addr("metrics") + "/ops/kiosks"); err == nil {
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("metrics listener answers /ops/kiosks with %d", r.StatusCode)
		}
	}
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	// Every metric the rules and the dashboard name is exported.
	exported := map[string]bool{"up": true}
	for _, line := range strings.Split(string(body), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(name)
			exported[f[0]] = true
			if f[1] == "histogram" {
				exported[f[0]+"_bucket"], exported[f[0]+"_sum"], exported[f[0]+"_count"] = true, true, true
			}
		}
	}
	names := regexp.MustCompile(`\b(kioskcert_[a-z_]+|up)\b`)
	for _, file := range []string{"kioskcert-alerts.yml", "grafana-dashboard.json"} {
		b, err := os.ReadFile(filepath.Join(monitoringDir, file))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(file, ".json") && !json.Valid(b) {
			t.Errorf("%s is not JSON", file)
		}
		for _, n := range names.FindAllString(string(b), -1) {
			if strings.HasPrefix(n, "kioskcert_") && !exported[n] {
				t.Errorf("%s names %s, which the center does not export", file, n)
			}
		}
	}
}

// TestAlertRules checks the rules and runs their unit tests.
func TestAlertRules(t *testing.T) {
	tool := promtool(t)
	for _, args := range [][]string{{"check", "rules", "kioskcert-alerts.yml"}, {"test", "rules", "kioskcert-alerts_test.yml"}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = monitoringDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
