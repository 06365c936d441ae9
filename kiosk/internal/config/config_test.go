package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// base is a valid configuration; each case changes one part of it.
const base = `{
  "centerUrl": "wss://center.example:8443/v1/kiosk",
  "certFile": "kiosk.pem", "keyFile": "kiosk.key", "centerCaFile": "ca.pem", "cardTrustFile": "trust.json",
  "reader": {"kind": "pcsc"},
  "printer": {"kind": "ipp", "url": "ipps://printer.local/ipp/print"}%s
}`

func load(t *testing.T, extra string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kiosk.json")
	if err := os.WriteFile(path, []byte(strings.Replace(base, "%s", extra, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestLoadIntegratorSettings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra string
		err   string // "" = valid
	}{
		{"no local server", ``, ""},
		{"listen only", `, "listen": "127.0.0.1:8800"`, ""},
		{"listen ipv6", `, "listen": "[::1]:8800"`, ""},
		{"listen localhost", `, "listen": "localhost:0"`, ""},
		{"listen on all interfaces", `, "listen": "0.0.0.0:8800"`, "loopback"},
		{"listen on a LAN address", `, "listen": "192.168.1.10:8800"`, "loopback"},
		{"listen without port", `, "listen": "127.0.0.1"`, "host:port"},
		{"terminal payment and printer", `, "listen": "127.0.0.1:8800", "payment": {"mode": "terminal"}, "integrator": {"tokenFile": "integrator.token"}`, ""},
		{"terminal printer", `, "listen": "127.0.0.1:8800", "integrator": {"tokenFile": "t", "start": "terminal", "ackTimeout": "3s"}`, ""},
		{"simulator payment", `, "payment": {"mode": "simulator"}`, ""},
		{"unknown payment mode", `, "payment": {"mode": "cash"}`, "payment.mode"},
		{"terminal payment without the API", `, "payment": {"mode": "terminal"}`, "integrator API"},
		{"integrator without listen", `, "integrator": {"tokenFile": "t"}`, "needs listen"},
		{"integrator without token file", `, "listen": "127.0.0.1:8800", "integrator": {}`, "tokenFile"},
		{"unknown start mode", `, "listen": "127.0.0.1:8800", "integrator": {"tokenFile": "t", "start": "button"}`, "integrator.start"},
		{"negative ack timeout", `, "listen": "127.0.0.1:8800", "integrator": {"tokenFile": "t", "ackTimeout": "-1s"}`, "ackTimeout"},
		{"inline token refused", `, "listen": "127.0.0.1:8800", "integrator": {"tokenFile": "t", "token": "secret"}`, "unknown field"},
		{"unknown payment field", `, "payment": {"mode": "simulator", "amount": 120}`, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.extra)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("got %v, want an error about %q", err, tc.err)
			}
		})
	}
}

// TestPrinterURL: the certificate PDF crosses the store network only over
// TLS, unless the development switch says otherwise.
func TestPrinterURL(t *testing.T) {
	const plainErr = "set printer.allowPlaintext"
	for _, tc := range []struct {
		name    string
		printer string
		err     string // "" = valid
	}{
		{"ipps", `{"kind": "ipp", "url": "ipps://printer.local/ipp/print"}`, ""},
		{"ipps with port and CA", `{"kind": "ipp", "url": "ipps://192.0.2.10:631/ipp/print", "caFile": "printer-ca.pem"}`, ""},
		{"https", `{"kind": "ipp", "url": "https://printer.local:443/ipp/print"}`, ""},
		{"plain ipp refused", `{"kind": "ipp", "url": "ipp://printer.local/ipp/print"}`, plainErr},
		{"plain http refused", `{"kind": "ipp", "url": "http://printer.local:631/ipp/print"}`, plainErr},
		{"plain ipp on loopback refused", `{"kind": "ipp", "url": "ipp://127.0.0.1:631/printers/kiosk"}`, plainErr},
		{"plain ipp with the development switch", `{"kind": "ipp", "url": "ipp://127.0.0.1:8631/ipp/print", "allowPlaintext": true}`, ""},
		{"switch off", `{"kind": "ipp", "url": "ipp://printer.local/ipp/print", "allowPlaintext": false}`, plainErr},
		{"other scheme", `{"kind": "ipp", "url": "lpd://printer.local/queue"}`, "ipps://host"},
		{"no host", `{"kind": "ipp", "url": "ipps:///ipp/print"}`, "ipps://host"},
		{"no URL", `{"kind": "ipp"}`, "ipps://host"},
		{"spool needs no URL", `{"kind": "spool", "spoolDir": "out"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kiosk.json")
			cfg := strings.Replace(strings.Replace(base, `{"kind": "ipp", "url": "ipps://printer.local/ipp/print"}`, tc.printer, 1), "%s", "", 1)
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("got %v, want an error about %q", err, tc.err)
			}
			if tc.err == plainErr && !strings.Contains(err.Error(), "ipps://") {
				t.Fatalf("the error does not name the fix: %v", err)
			}
		})
	}
}

func TestTerminalPrinterNeedsTheAPI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kiosk.json")
	cfg := strings.Replace(strings.Replace(base, `{"kind": "ipp", "url": "ipps://printer.local/ipp/print"}`, `{"kind": "terminal"}`, 1), "%s", "", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "integrator API") {
		t.Fatalf("terminal printer without the API: %v", err)
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	c, err := load(t, `, "listen": "127.0.0.1:8800", "payment": {"mode": "terminal"}, "integrator": {"tokenFile": "integrator.token", "start": "terminal", "ackTimeout": "4s"}`)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "again.json")
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	d, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if d.Payment != c.Payment || d.Listen != c.Listen || *d.Integrator != *c.Integrator || d.Integrator.AckTimeout.Seconds() != 4 {
		t.Errorf("round trip: %+v %+v, want %+v %+v", d.Payment, d.Integrator, c.Payment, c.Integrator)
	}
	if got := d.Path(d.Integrator.TokenFile); got != filepath.Join(filepath.Dir(path), "integrator.token") {
		t.Errorf("token file resolves to %s", got)
	}
}
