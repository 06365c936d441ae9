package ipptest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestStart starts printers in parallel (as several test packages do) and
// checks the helper's view of them: idle with no reasons, then an empty
// tray reported as media-empty once the paper level is 0.
func TestStart(t *testing.T) {
	for _, name := range []string{"a", "b", "c"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := Start(t, Options{})
			if !strings.HasPrefix(p.URI, "ipp://127.0.0.1:") {
				t.Errorf("URI %q", p.URI)
			}
			if r := p.StateReasons(t); !slices.Equal(r, []string{"none"}) {
				t.Errorf("fresh printer reasons %v, want [none]", r)
			}
			p.SetPaperLevel(t, 0)
			if r := p.StateReasons(t); len(r) != 1 || !strings.HasPrefix(r[0], "media-empty") {
				t.Errorf("empty tray reasons %v, want media-empty", r)
			}
			if len(p.JobStates(t)) != 0 || len(p.Documents(t)) != 0 {
				t.Error("fresh printer has jobs")
			}
			p.Stop()
			p.Stop() // idempotent
		})
	}
}

// TestStartTLS: a printer started with a CA answers ipps with a
// certificate that CA issued, and the helpers still reach it.
func TestStartTLS(t *testing.T) {
	ca, err := NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := Start(t, Options{TLS: ca})
	if !strings.HasPrefix(p.URI, "ipps://127.0.0.1:") {
		t.Fatalf("URI %q", p.URI)
	}
	b, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	conn, err := tls.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(p.URI, "ipps://"), "/ipp/print"), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS handshake with the printer: %v", err)
	}
	conn.Close()
	if r := p.StateReasons(t); !slices.Equal(r, []string{"none"}) {
		t.Errorf("reasons %v, want [none]", r)
	}
}
