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
	"strconv"
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

	// Store names the database of the center's store: "bolt:PATH" (the
	// embedded default: a bbolt file, PATH relative to the config file's
	// directory) or "postgres://…" (PostgreSQL, shared by several center
	// instances; docs/DEPLOYMENT.md). Empty means "bolt:" + StoreFile, so
	// configurations written before this field keep working. A PostgreSQL
	// URL never holds a password: name a file with passfile=PATH, or use
	// client certificates (sslcert=, sslkey=).
	Store string `json:"store,omitempty"`
	// Records names the database of the encrypted vaccination records:
	// empty follows the store (a bolt store keeps the records in the bbolt
	// file RecordsFile, a PostgreSQL store in the same database);
	// "bolt" (RecordsFile) or "bolt:PATH"; "postgres" (the store's
	// database) or a postgres:// URL of their own. Several instances need
	// the records on PostgreSQL to share them (docs/DEPLOYMENT.md).
	Records string `json:"records,omitempty"`
	// InstanceID names this center instance in the operations views,
	// logs and metrics (kioskcert_center_instance_info{center_instance}):
	// 1-64 of [A-Za-z0-9._:-].
	// Empty: the host name and the kiosk listener's port.
	InstanceID string `json:"instanceId,omitempty"`

	// Files (relative to the config file's directory).
	StoreFile          string `json:"storeFile"`
	RecordsFile        string `json:"recordsFile"`
	MasterKeyFile      string `json:"masterKeyFile"`
	KeysDir            string `json:"keysDir"`
	KioskCAFile        string `json:"kioskCaFile"`
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
	// Limits on what kiosks may do; zero values take the defaults
	// documented in docs/PROTOCOL.md.
	Limits Limits `json:"limits,omitzero"`
	// Faults injects failures for fault tests (never in production; the
	// center logs a warning at start when any is set).
	Faults Faults `json:"faults,omitzero"`

	// KeySource is where the private halves of the signing keys and of
	// the kiosk issuing CA live: "file" (keysDir) or a PKCS#11 token.
	KeySource KeySource `json:"keySource,omitzero"`
	// EnrollListen is the kiosk enrollment endpoint (TLS with the center's
	// certificate, no client certificate): kiosks without a certificate
	// send their CSR and one-time code there.
	EnrollListen string `json:"enrollListen"`
	// Demo marks a demo or test center whose offline authorities (CSCA,
	// kiosk CA) were made in its own directory (authorities/) by init, and
	// which may enroll a kiosk with a key made at the center. Never set in
	// production, where the authorities are offline and kiosks make their
	// own keys (docs/KEYS.md).
	Demo bool `json:"demo,omitempty"`

	dir string
}

// Faults are failures the fault tests inject into a real center process.
type Faults struct {
	// SlowLookupEvery makes every n-th record lookup take SlowLookupDelay
	// (past the issue deadline, when longer than issueTimeout).
	SlowLookupEvery int      `json:"slowLookupEvery,omitempty"`
	SlowLookupDelay Duration `json:"slowLookupDelay,omitzero"`
}

// Limits are the kiosk endpoint's limits (server.Config documents each).
type Limits struct {
	MaxConns                 int     `json:"maxConns,omitempty"`
	MaxConnsPerKiosk         int     `json:"maxConnsPerKiosk,omitempty"`
	MaxHandshakes            int     `json:"maxHandshakes,omitempty"`
	MaxIssuing               int     `json:"maxIssuing,omitempty"`
	FrameRate                float64 `json:"frameRate,omitempty"`
	FrameBurst               int     `json:"frameBurst,omitempty"`
	KioskIssueRate           float64 `json:"kioskIssueRate,omitempty"`
	KioskIssueBurst          int     `json:"kioskIssueBurst,omitempty"`
	DistinctResidentsPerHour int     `json:"distinctResidentsPerHour,omitempty"`
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
		EnrollListen:       "127.0.0.1:8444",
	}
}

// KeySource configures the key source. The PIN comes from a file or an
// environment variable, never from the configuration or the command line.
type KeySource struct {
	// Type is "file" (the default: PKCS#8 files under keysDir) or "pkcs11".
	Type string `json:"type,omitempty"`
	// Module is the PKCS#11 library path.
	Module string `json:"module,omitempty"`
	// TokenLabel selects the token.
	TokenLabel string `json:"tokenLabel,omitempty"`
	// PINFile holds the user PIN (mode 0600).
	PINFile string `json:"pinFile,omitempty"`
	// PINEnv names the environment variable holding the user PIN, when
	// there is no PINFile.
	PINEnv string `json:"pinEnv,omitempty"`
	// Sessions caps the token sessions open at once (default 8): the
	// issuance path signs in parallel up to this many.
	Sessions int `json:"sessions,omitempty"`
}

// IsPKCS11 reports whether keys live in a PKCS#11 token.
func (k KeySource) IsPKCS11() bool { return k.Type == "pkcs11" }

func (k KeySource) validate() error {
	switch k.Type {
	case "", "file":
		if k.Module != "" || k.TokenLabel != "" || k.PINFile != "" || k.PINEnv != "" {
			return errors.New(`keySource: module, tokenLabel, pinFile and pinEnv belong to type "pkcs11"`)
		}
	case "pkcs11":
		switch {
		case k.Module == "" || k.TokenLabel == "":
			return errors.New("keySource: module and tokenLabel are required for pkcs11")
		case (k.PINFile == "") == (k.PINEnv == ""):
			return errors.New("keySource: give the PIN as exactly one of pinFile or pinEnv")
		case k.Sessions != 0 && k.Sessions < 2:
			return errors.New("keySource: sessions must be at least 2")
		}
	default:
		return fmt.Errorf("keySource.type %q: want file or pkcs11", k.Type)
	}
	return nil
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
	if err := c.KeySource.validate(); err != nil {
		return err
	}
	for name, v := range map[string]string{"kioskListen": c.KioskListen, "publicListen": c.PublicListen, "opsListen": c.OpsListen, "enrollListen": c.EnrollListen} {
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
		"kioskCaFile": c.KioskCAFile, "serverCertFile": c.ServerCertFile,
		"serverKeyFile": c.ServerKeyFile, "cardIssuerKeysFile": c.CardIssuerKeysFile, "opsTokenFile": c.OpsTokenFile,
		"operatorKeyFile": c.OperatorKeyFile,
	}
	for name, v := range files {
		if v == "" {
			return fmt.Errorf("%s is required", name)
		}
	}
	if err := c.validateStore(); err != nil {
		return err
	}
	if err := c.validateRecords(); err != nil {
		return err
	}
	if c.InstanceID != "" && !isIdent(c.InstanceID, 64) {
		return errors.New("instanceId must be 1-64 characters of [A-Za-z0-9._:-]")
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
	case c.Limits.MaxConns < 0 || c.Limits.MaxConnsPerKiosk < 0 || c.Limits.MaxHandshakes < 0 || c.Limits.MaxIssuing < 0 ||
		c.Limits.FrameRate < 0 || c.Limits.FrameBurst < 0 || c.Limits.KioskIssueRate < 0 || c.Limits.KioskIssueBurst < 0 ||
		c.Limits.DistinctResidentsPerHour < 0:
		return errors.New("limits must not be negative (zero takes the default)")
	}
	return nil
}

// Store kinds StoreURL returns.
const (
	StoreBolt     = "bolt"
	StorePostgres = "postgres"
)

func (c *Config) validateStore() error {
	switch kind, rest := c.storeKind(); kind {
	case StoreBolt:
		if rest == "" {
			return errors.New("store \"bolt:\" needs a path (bolt:center.db)")
		}
	case StorePostgres:
		u, err := url.Parse(c.Store)
		if err != nil {
			return errors.New("store is not a valid postgres:// URL")
		}
		if _, has := u.User.Password(); has || u.Query().Has("password") {
			return errors.New("store URL holds a password; put it in a file named by passfile=PATH (mode 0600), or use client certificates (sslcert=, sslkey=)")
		}
	default:
		return errors.New("store must be bolt:PATH or a postgres:// URL")
	}
	return nil
}

func (c *Config) validateRecords() error {
	switch {
	case c.Records == "" || c.Records == "bolt":
	case strings.HasPrefix(c.Records, "bolt:"):
		if c.Records == "bolt:" {
			return errors.New("records \"bolt:\" needs a path (bolt:records.db), or say just \"bolt\" for recordsFile")
		}
	case c.Records == StorePostgres:
		if kind, _ := c.storeKind(); kind != StorePostgres {
			return errors.New("records \"postgres\" means the store's PostgreSQL database, but the store is a bbolt file; give the records a postgres:// URL of their own, or a PostgreSQL store")
		}
	case strings.HasPrefix(c.Records, "postgres://"), strings.HasPrefix(c.Records, "postgresql://"):
		u, err := url.Parse(c.Records)
		if err != nil {
			return errors.New("records is not a valid postgres:// URL")
		}
		if _, has := u.User.Password(); has || u.Query().Has("password") {
			return errors.New("records URL holds a password; put it in a file named by passfile=PATH (mode 0600), or use client certificates (sslcert=, sslkey=)")
		}
	default:
		return errors.New("records must be empty (follow the store), bolt, bolt:PATH, postgres (the store's database) or a postgres:// URL")
	}
	return nil
}

// RecordsLocation returns the records' kind (StoreBolt or StorePostgres)
// and where they are: the bbolt file's resolved path, or the PostgreSQL
// URL. Empty Records follows the store.
func (c *Config) RecordsLocation() (kind, location string) {
	storeKind, storeURL := c.storeKind()
	switch {
	case c.Records == "" && storeKind == StorePostgres, c.Records == StorePostgres:
		return StorePostgres, storeURL
	case c.Records == "", c.Records == "bolt":
		return StoreBolt, c.Path(c.RecordsFile)
	case strings.HasPrefix(c.Records, "bolt:"):
		return StoreBolt, c.Path(strings.TrimPrefix(c.Records, "bolt:"))
	}
	return StorePostgres, c.Records
}

func (c *Config) storeKind() (kind, rest string) {
	switch {
	case c.Store == "":
		return StoreBolt, c.StoreFile
	case strings.HasPrefix(c.Store, "bolt:"):
		return StoreBolt, strings.TrimPrefix(c.Store, "bolt:")
	case strings.HasPrefix(c.Store, "postgres://"), strings.HasPrefix(c.Store, "postgresql://"):
		return StorePostgres, c.Store
	}
	return "", ""
}

// StoreLocation returns the store's kind (StoreBolt or StorePostgres) and
// where it is: the bbolt file's resolved path, or the PostgreSQL URL.
func (c *Config) StoreLocation() (kind, location string) {
	kind, rest := c.storeKind()
	if kind == StoreBolt {
		return kind, c.Path(rest)
	}
	return kind, rest
}

// Instance returns InstanceID, or the host name and the kiosk listener's
// port when it is empty.
func (c *Config) Instance() string {
	if c.InstanceID != "" {
		return c.InstanceID
	}
	host, _ := os.Hostname()
	port := c.KioskListen[strings.LastIndex(c.KioskListen, ":")+1:]
	if port == "0" || port == "" {
		port = strconv.Itoa(os.Getpid())
	}
	var b strings.Builder
	for _, r := range host + "-" + port {
		if r < 0x80 && isIdent(string(r), 1) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	id := b.String()
	if len(id) > 64 {
		id = id[len(id)-64:]
	}
	return id
}

func isIdent(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
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
