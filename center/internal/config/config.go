// Package config is the issuance center's one configuration file: JSON,
// strict (unknown fields are errors), validated at start. Secrets are never
// inline: the file names key files, which must be mode 0600. Relative paths
// are relative to the directory holding the config file, so a whole center
// (config, keys, databases) can be moved as one folder.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/pkg/configfile"
)

// Duration is a time.Duration written as "15s".
type Duration = configfile.Duration

// Config is the center's configuration.
type Config struct {
	// IssuerURL is the SMART Health Card issuer (iss): https, no trailing
	// slash. Its JWKS must be reachable at IssuerURL/.well-known/jwks.json.
	IssuerURL string `json:"issuerUrl"`

	// Listeners.
	KioskListen  string `json:"kioskListen"`  // mutual TLS websocket for kiosks
	PublicListen string `json:"publicListen"` // JWKS and CRL (put a TLS terminator in front)
	OpsListen    string `json:"opsListen"`    // operations API and metrics; keep it private
	// ConsoleListen is the operations console's address (HTTPS, never the
	// kiosk endpoint); empty turns the console off.
	ConsoleListen string `json:"consoleListen,omitempty"`
	// MetricsListen, when set, serves /metrics alone on its own address
	// (for a Prometheus that should not reach the operations API); it is
	// always served on opsListen too.
	MetricsListen string `json:"metricsListen,omitempty"`

	// Files (relative to the config file's directory).
	StoreFile          string `json:"storeFile"`
	RecordsFile        string `json:"recordsFile"`
	MasterKeyFile      string `json:"masterKeyFile"`
	KeysDir            string `json:"keysDir"`
	KioskCAFile        string `json:"kioskCaFile"`
	KioskCAKeyFile     string `json:"kioskCaKeyFile"`
	ServerCertFile     string `json:"serverCertFile"`
	ServerKeyFile      string `json:"serverKeyFile"`
	CardIssuerKeysFile string `json:"cardIssuerKeysFile"`
	OpsTokenFile       string `json:"opsTokenFile"`
	// ConsoleCertFile and ConsoleKeyFile are the console's TLS certificate
	// and key: issued at init by the center's CA for the init hosts, or a
	// pair from the organisation's CA that browsers already trust.
	ConsoleCertFile string `json:"consoleCertFile,omitempty"`
	ConsoleKeyFile  string `json:"consoleKeyFile,omitempty"`
	// OperatorKeyFile seals the operators' second-factor secrets in the
	// store (created on first start when missing).
	OperatorKeyFile string `json:"operatorKeyFile,omitempty"`
	// ConsoleSessionIdle and ConsoleSessionMax end a console session after
	// that long without a request, and that long after login.
	ConsoleSessionIdle Duration `json:"consoleSessionIdle,omitzero"`
	ConsoleSessionMax  Duration `json:"consoleSessionMax,omitzero"`

	FeePerCopyYen int      `json:"feePerCopyYen"`
	Heartbeat     Duration `json:"heartbeat"`
	IssueTimeout  Duration `json:"issueTimeout"`
	LockTimeout   Duration `json:"lockTimeout"`
	// OverseasEnabled offers the overseas kind (needs the VDS-NC signer).
	OverseasEnabled bool `json:"overseasEnabled"`

	dir string
}

// Default returns a configuration with the standard file layout.
func Default() Config {
	return Config{
		IssuerURL:          "https://issuer.kioskcert.example",
		KioskListen:        "127.0.0.1:8443",
		PublicListen:       "127.0.0.1:8080",
		OpsListen:          "127.0.0.1:8081",
		StoreFile:          "center.db",
		RecordsFile:        "records.db",
		MasterKeyFile:      "keys/records-master.key",
		KeysDir:            "keys",
		KioskCAFile:        "pki/kiosk-ca.pem",
		KioskCAKeyFile:     "pki/kiosk-ca.key",
		ServerCertFile:     "pki/center.pem",
		ServerKeyFile:      "pki/center.key",
		CardIssuerKeysFile: "card-issuer-keys.pem",
		OpsTokenFile:       "keys/ops.token",
		ConsoleCertFile:    "pki/console.pem",
		ConsoleKeyFile:     "pki/console.key",
		OperatorKeyFile:    "keys/operators.key",
		ConsoleSessionIdle: Duration{Duration: 15 * time.Minute},
		ConsoleSessionMax:  Duration{Duration: 10 * time.Hour},
		FeePerCopyYen:      120,
		Heartbeat:          Duration{Duration: 15 * time.Second},
		IssueTimeout:       Duration{Duration: 10 * time.Second},
		LockTimeout:        Duration{Duration: 2 * time.Second},
		OverseasEnabled:    true,
	}
}

// Load reads and validates the configuration at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.dir = abs
	return c, nil
}

// Parse decodes and validates a configuration.
func Parse(b []byte) (*Config, error) {
	c := Default()
	if err := configfile.DecodeStrict(b, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks every field.
func (c *Config) Validate() error {
	u, err := url.Parse(c.IssuerURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || strings.HasSuffix(c.IssuerURL, "/") || u.RawQuery != "" {
		return fmt.Errorf("issuerUrl %q must be an https URL without a trailing slash", c.IssuerURL)
	}
	for name, v := range map[string]string{"kioskListen": c.KioskListen, "publicListen": c.PublicListen, "opsListen": c.OpsListen} {
		if v == "" || !strings.Contains(v, ":") {
			return fmt.Errorf("%s must be host:port", name)
		}
	}
	for name, v := range map[string]string{"consoleListen": c.ConsoleListen, "metricsListen": c.MetricsListen} {
		if v != "" && !strings.Contains(v, ":") {
			return fmt.Errorf("%s must be host:port (or empty)", name)
		}
	}
	if c.ConsoleListen != "" && (c.ConsoleCertFile == "" || c.ConsoleKeyFile == "") {
		return errors.New("consoleListen needs consoleCertFile and consoleKeyFile (the console serves only HTTPS)")
	}
	if c.ConsoleListen != "" && (c.ConsoleListen == c.KioskListen || c.ConsoleListen == c.OpsListen || c.ConsoleListen == c.PublicListen) && !strings.HasSuffix(c.ConsoleListen, ":0") {
		return errors.New("consoleListen must be an address of its own, never the kiosk, public or operations listener")
	}
	files := map[string]string{
		"storeFile": c.StoreFile, "recordsFile": c.RecordsFile, "masterKeyFile": c.MasterKeyFile, "keysDir": c.KeysDir,
		"kioskCaFile": c.KioskCAFile, "kioskCaKeyFile": c.KioskCAKeyFile, "serverCertFile": c.ServerCertFile,
		"serverKeyFile": c.ServerKeyFile, "cardIssuerKeysFile": c.CardIssuerKeysFile, "opsTokenFile": c.OpsTokenFile,
		"operatorKeyFile": c.OperatorKeyFile,
	}
	for name, v := range files {
		if v == "" {
			return fmt.Errorf("%s is required", name)
		}
	}
	switch {
	case c.FeePerCopyYen < 0:
		return errors.New("feePerCopyYen must not be negative")
	case c.Heartbeat.Duration < time.Second:
		return errors.New("heartbeat must be at least 1s")
	case c.IssueTimeout.Duration < 100*time.Millisecond:
		return errors.New("issueTimeout must be at least 100ms")
	case c.LockTimeout.Duration <= 0:
		return errors.New("lockTimeout must be positive (zero would wait forever for the database lock)")
	case c.ConsoleSessionIdle.Duration < time.Minute || c.ConsoleSessionMax.Duration < c.ConsoleSessionIdle.Duration:
		return errors.New("consoleSessionIdle must be at least 1m and consoleSessionMax at least consoleSessionIdle")
	}
	return nil
}

// Path resolves a configured file name against the config file's directory.
func (c *Config) Path(p string) string {
	if filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// SetDir sets the directory relative paths resolve against (for a config
// that was not loaded from a file).
func (c *Config) SetDir(dir string) { c.dir = dir }

// Write stores the configuration as indented JSON.
func (c *Config) Write(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}
