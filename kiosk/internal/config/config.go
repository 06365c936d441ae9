// Package config is the kiosk agent's one configuration file: JSON, strict
// (unknown fields are errors), validated at start. It names files (the
// kiosk's key and certificate, the pinned center CA, the card
// issuing-authority trust anchors); it never holds a secret inline.
// Relative paths are relative to the config file's directory.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"

	"github.com/kioskcert/kioskcert/pkg/configfile"
)

// Duration is a time.Duration written as "15s".
type Duration = configfile.Duration

// Reader selects the card reader.
type Reader struct {
	// Kind is "pcsc" (a real reader through PC/SC) or "virtual" (the
	// in-process virtual card, for demos and tests).
	Kind string `json:"kind"`
	// Name is a PC/SC reader name or part of one; empty picks the first
	// reader with a card.
	Name string `json:"name,omitempty"`
	// Extended is "auto", "on" or "off" (extended-length APDUs).
	Extended string `json:"extended,omitempty"`
}

// Printer selects the printer.
type Printer struct {
	// Kind is "ipp" (print through an IPP printer or CUPS queue), "spool"
	// (write each job as a PDF file into SpoolDir, for the demo) or
	// "terminal" (the store terminal's software fetches each job's PDF
	// through the integrator API and prints it; needs Listen and
	// Integrator.TokenFile).
	Kind     string `json:"kind"`
	URL      string `json:"url,omitempty"`
	SpoolDir string `json:"spoolDir,omitempty"`
}

// Payment selects the cash register.
type Payment struct {
	// Mode is "simulator" (approves every fee and collects nothing; the
	// default, for demos and tests) or "terminal" (the store terminal's
	// software collects the fee through the integrator API; needs Listen
	// and Integrator.TokenFile).
	Mode string `json:"mode,omitempty"`
}

// Integrator configures the store terminal's integrator API
// (docs/INTEGRATION.md) on the local server.
type Integrator struct {
	// TokenFile holds the API's bearer token. The agent creates it (owner
	// read/write only) if it is missing and refuses to start if others can
	// read it. The terminal software reads the token from it.
	TokenFile string `json:"tokenFile"`
	// Start is "card" (a card placed on the reader starts a session; the
	// default) or "terminal" (a session starts only after the terminal
	// hands over the screen with POST /api/v1/integrator/session/start).
	Start string `json:"start,omitempty"`
	// AckTimeout bounds how long the kiosk waits for the terminal to
	// acknowledge a capture or void before going on (it stays pending);
	// default 5s.
	AckTimeout Duration `json:"ackTimeout,omitzero"`
}

// Config is the kiosk agent's configuration.
type Config struct {
	// CenterURL is wss://host:port/v1/kiosk.
	CenterURL string `json:"centerUrl"`
	// CenterServerName is the name in the center's certificate, when the
	// URL's host differs (e.g. an IP address).
	CenterServerName string `json:"centerServerName,omitempty"`
	CertFile         string `json:"certFile"`
	KeyFile          string `json:"keyFile"`
	// TPM is the TPM 2.0 holding the kiosk's key when keyFile is a TPM key
	// blob (/dev/tpmrm0; a swtpm socket in tests). Empty: a key file.
	TPM          string `json:"tpm,omitempty"`
	CenterCAFile string `json:"centerCaFile"`
	// CardTrustFile holds the card issuing authority's keys, for the
	// kiosk's local check of the card data.
	CardTrustFile string  `json:"cardTrustFile"`
	Reader        Reader  `json:"reader"`
	Printer       Printer `json:"printer"`
	Payment       Payment `json:"payment,omitzero"`
	// Listen is the local server's loopback address (127.0.0.1:8800): the
	// touch screen and the integrator API. Empty: no local server.
	Listen         string      `json:"listen,omitempty"`
	Integrator     *Integrator `json:"integrator,omitempty"`
	InputTimeout   Duration    `json:"inputTimeout,omitzero"`
	RequestTimeout Duration    `json:"requestTimeout,omitzero"`

	dir string
}

// Load reads and validates the configuration at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var c Config
	if err := configfile.DecodeStrict(b, &c); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if c.dir, err = filepath.Abs(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the fields.
func (c *Config) Validate() error {
	u, err := url.Parse(c.CenterURL)
	if err != nil || u.Scheme != "wss" || u.Host == "" {
		return fmt.Errorf("centerUrl %q must be wss://host:port/v1/kiosk", c.CenterURL)
	}
	if c.CertFile == "" || c.KeyFile == "" || c.CenterCAFile == "" || c.CardTrustFile == "" {
		return errors.New("certFile, keyFile, centerCaFile and cardTrustFile are required")
	}
	switch c.Reader.Kind {
	case "pcsc", "virtual":
	default:
		return fmt.Errorf("reader.kind %q: want pcsc or virtual", c.Reader.Kind)
	}
	switch c.Reader.Extended {
	case "", "auto", "on", "off":
	default:
		return fmt.Errorf("reader.extended %q: want auto, on or off", c.Reader.Extended)
	}
	switch c.Printer.Kind {
	case "ipp":
		if pu, err := url.Parse(c.Printer.URL); err != nil || (pu.Scheme != "ipp" && pu.Scheme != "ipps" && pu.Scheme != "http" && pu.Scheme != "https") {
			return fmt.Errorf("printer.url %q must be an ipp://, ipps://, http:// or https:// URL", c.Printer.URL)
		}
	case "spool":
		if c.Printer.SpoolDir == "" {
			return errors.New("printer.spoolDir is required for a spool printer")
		}
	case "terminal":
	default:
		return fmt.Errorf("printer.kind %q: want ipp, spool or terminal", c.Printer.Kind)
	}
	switch c.Payment.Mode {
	case "", "simulator", "terminal":
	default:
		return fmt.Errorf("payment.mode %q: want simulator or terminal", c.Payment.Mode)
	}
	if c.Listen != "" {
		host, port, err := net.SplitHostPort(c.Listen)
		if err != nil || port == "" {
			return fmt.Errorf("listen %q must be host:port", c.Listen)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("listen %q must be a loopback address (127.0.0.1, [::1] or localhost): the local API must not be reachable from the network", c.Listen)
		}
	}
	if in := c.Integrator; in != nil {
		if in.TokenFile == "" {
			return errors.New("integrator.tokenFile is required")
		}
		switch in.Start {
		case "", "card", "terminal":
		default:
			return fmt.Errorf("integrator.start %q: want card or terminal", in.Start)
		}
		if in.AckTimeout.Duration < 0 {
			return errors.New("integrator.ackTimeout must not be negative")
		}
		if c.Listen == "" {
			return errors.New("integrator needs listen (the local server's loopback address)")
		}
	}
	if c.UsesTerminal() && c.Integrator == nil {
		return errors.New(`payment.mode "terminal", printer.kind "terminal" need the integrator API: set listen and integrator.tokenFile`)
	}
	return nil
}

// UsesTerminal reports whether the store terminal's software is the
// payment or the printer.
func (c *Config) UsesTerminal() bool {
	return c.Payment.Mode == "terminal" || c.Printer.Kind == "terminal"
}

// Path resolves a configured file name against the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Write stores the configuration as indented JSON.
func (c *Config) Write(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}
