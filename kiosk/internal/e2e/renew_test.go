package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/clocktest"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/identity"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/ipptest"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/childproc"
)

// leafOf reads the kiosk certificate in a PEM file.
func leafOf(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s holds no PEM certificate", path)
		return nil
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// liveSerial is the certificate serial the center's live view shows for
// a kiosk's latest connection, and whether it is connected.
func liveSerial(t testing.TB, id string) (string, bool) {
	t.Helper()
	b, err := env.opsGet("/ops/kiosks")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Live []struct {
			KioskID    string `json:"kioskId"`
			Connected  bool   `json:"connected"`
			CertSerial string `json:"certSerial"`
		} `json:"live"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, l := range v.Live {
		if l.KioskID == id {
			return l.CertSerial, l.Connected
		}
	}
	return "", false
}

// moveToRenewal moves clock to just past the point where leaf is due for renewal.
func moveToRenewal(clock *clocktest.Clock, leaf *x509.Certificate) {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	clock.Advance(time.Until(leaf.NotAfter.Add(-life/3 + 24*time.Hour)))
}

// TestRenewalOverConnection: the kiosk's clock reaches the renewal point;
// the agent renews its certificate over its open connection with a CSR for
// the same key, keeps the old certificate as kiosk.pem.previous, connects
// again with the new one (the center's live view shows its serial) and
// issues a certificate end to end. Both key kinds: a key file, and a key
// made in a TPM (swtpm) by a kiosk enrolled with a one-time code.
func TestRenewalOverConnection(t *testing.T) {
	env.ensureCenter(t)
	p := startPrinter(t, ipptest.Options{})
	for _, tt := range []struct {
		name string
		id   string
		tpm  func(t *testing.T) string // enrolls the kiosk; returns its TPM
	}{
		{name: "key_file", id: kioskRenew},
		{name: "tpm", id: "E2E-TPM", tpm: enrollTPMKiosk},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var tpm string
			if tt.tpm != nil {
				tpm = tt.tpm(t)
			}
			dir := env.center.KioskDir(tt.id)
			certFile := filepath.Join(dir, "kiosk.pem")
			old := leafOf(t, certFile)
			oldPEM, _ := os.ReadFile(certFile)
			clock := &clocktest.Clock{}
			k := startKiosk(t, kioskOptions{id: tt.id, printerURI: p.URI, clock: clock, tpm: tpm})
			if s, _ := liveSerial(t, tt.id); s != old.SerialNumber.Text(16) {
				t.Fatalf("live view shows serial %q, want the enrolled %s", s, old.SerialNumber.Text(16))
			}
			if _, err := os.Stat(certFile + ".previous"); err == nil {
				t.Fatal("renewed before the certificate was due")
			}

			moveToRenewal(clock, old)
			if !waitFor(30*time.Second, func() bool {
				b, _ := os.ReadFile(certFile)
				return !bytes.Equal(b, oldPEM)
			}) {
				t.Fatalf("the kiosk did not renew its certificate within 30 s; log: %q", kioskLog(tt.id))
			}
			renewed := leafOf(t, certFile)
			if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 || renewed.Subject.CommonName != tt.id {
				t.Fatalf("renewed certificate: serial %s, subject %q", renewed.SerialNumber.Text(16), renewed.Subject.CommonName)
			}
			if !renewed.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(old.PublicKey) {
				t.Fatal("the renewed certificate is for another key: the key must stay on the kiosk")
			}
			if prev, err := os.ReadFile(certFile + ".previous"); err != nil || !bytes.Equal(prev, oldPEM) {
				t.Fatalf("kiosk.pem.previous does not hold the old certificate: %v", err)
			}
			if !waitFor(30*time.Second, func() bool {
				s, up := liveSerial(t, tt.id)
				return up && s == renewed.SerialNumber.Text(16)
			}) {
				t.Fatal("the kiosk did not connect with its renewed certificate")
			}
			if k.Identity.Leaf().SerialNumber.Cmp(renewed.SerialNumber) != 0 {
				t.Fatal("the agent does not use the stored certificate")
			}
			if n := countEvents(env.audit(t, tt.id), "kiosk_certificate_renewed", ""); n != 1 {
				t.Fatalf("%d kiosk_certificate_renewed events, want 1 (renewed again after reconnecting?)", n)
			}

			card, r := demoCard(t, "hanako")
			res := play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
			if err := res.Must(); err != nil {
				t.Fatal(err)
			}
			req, paid := onlyRequest(t, k.pay)
			checkPaidOnce(t, paid)
			checkSettledOnce(t, tt.id, req, 1)
			if docs := printedFor(t, p, req); len(docs) != 1 {
				t.Fatalf("printed %d documents, want 1", len(docs))
			}
		})
	}
	env.checkNoPersonalData(t)
}

// TestSuspendedKioskCannotRenew: a suspended kiosk whose certificate is
// due gets no new one — the center cuts its connection and refuses its
// handshakes, so there is no connection to renew over — and its files
// stay as they were. Once reactivated it renews at its first connection.
// (A renewal that reaches the center from a kiosk suspended meanwhile is
// refused with kiosk_not_allowed: center/internal/server TestRenewRefusals.)
func TestSuspendedKioskCannotRenew(t *testing.T) {
	env.ensureCenter(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := env.center.KioskDir(kioskSuspend)
	certFile := filepath.Join(dir, "kiosk.pem")
	old := leafOf(t, certFile)
	oldPEM, _ := os.ReadFile(certFile)
	clock := &clocktest.Clock{}
	p := startPrinter(t, ipptest.Options{})
	k := startKiosk(t, kioskOptions{id: kioskSuspend, printerURI: p.URI, clock: clock})

	if _, err := env.center.Command(ctx, "kiosk", "suspend", "-id", kioskSuspend, "-reason", "e2e: renewal while suspended"); err != nil {
		t.Fatal(err)
	}
	reactivated := false
	defer func() {
		if !reactivated {
			env.center.Command(context.Background(), "kiosk", "activate", "-id", kioskSuspend)
		}
	}()
	if !waitFor(10*time.Second, func() bool { return !k.Client.Connected() }) {
		t.Fatal("the suspended kiosk is still connected")
	}
	moveToRenewal(clock, old)
	// Long enough for the reconnection attempts (backoff from 250 ms) to
	// be refused several times.
	time.Sleep(3 * time.Second)
	if b, _ := os.ReadFile(certFile); !bytes.Equal(b, oldPEM) {
		t.Fatal("a suspended kiosk got a new certificate")
	}
	if _, err := os.Stat(certFile + ".previous"); err == nil {
		t.Fatal("a suspended kiosk replaced its certificate")
	}
	if k.Client.Connected() {
		t.Fatal("a suspended kiosk connected")
	}
	if n := countEvents(env.audit(t, kioskSuspend), "kiosk_certificate_renewed", ""); n != 0 {
		t.Fatalf("%d renewals audited for a suspended kiosk", n)
	}

	if _, err := env.center.Command(ctx, "kiosk", "activate", "-id", kioskSuspend); err != nil {
		t.Fatal(err)
	}
	reactivated = true
	if !waitFor(60*time.Second, func() bool {
		b, _ := os.ReadFile(certFile)
		return !bytes.Equal(b, oldPEM)
	}) {
		t.Fatal("the reactivated kiosk did not renew at its first connection")
	}
	if n := countEvents(env.audit(t, kioskSuspend), "kiosk_certificate_renewed", ""); n != 1 {
		t.Fatalf("%d renewals audited, want 1", n)
	}
}

// enrollTPMKiosk enrolls kiosk E2E-TPM as a store would: the operator
// makes a one-time code, the kiosk makes its key in its TPM (a swtpm
// started for the test) and sends a CSR with the code. It returns the
// TPM's socket.
func enrollTPMKiosk(t *testing.T) string {
	const id = "E2E-TPM"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sock := startSWTPM(t)
	dir := env.center.KioskDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	codeFile := filepath.Join(t.TempDir(), "code")
	if _, err := env.center.Command(ctx, "kiosk", "enroll-code", "-id", id, "-store-name", "デモ店 TPM", "-store-code", "DEMO-TPM",
		"-chain", "DEMO", "-prefecture", "01", "-region", "hokkaido", "-out", codeFile); err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(codeFile)
	if err != nil {
		t.Fatal(err)
	}
	// The center CA every kiosk pins is delivered with the agent.
	ca, err := os.ReadFile(filepath.Join(env.center.KioskDir(kioskGood), "center-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.CreateTPMKey(sock, filepath.Join(dir, "kiosk.key"))
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	resp, err := identity.Enroll(ctx, key, identity.EnrollOptions{URL: "https://" + env.center.EnrollAddr + "/v1/enroll",
		CenterCA: ca, ServerName: "localhost", KioskID: id, Code: string(bytes.TrimSpace(code))})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]string{"kiosk.pem": resp.Chain, "center-ca.pem": resp.CenterCA} {
		if err := identity.WriteFileAtomic(filepath.Join(dir, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sock
}

// startSWTPM starts Debian's swtpm, a software TPM 2.0, on a Unix socket
// until the test ends. A missing swtpm fails the test (make deps installs it).
func startSWTPM(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Fatal("swtpm is not installed (Debian package swtpm; run make deps)")
	}
	dir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")
	if err := childproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !waitFor(10*time.Second, func() bool {
		fi, err := os.Stat(sock)
		return err == nil && fi.Mode()&os.ModeSocket != 0
	}) {
		t.Fatal("swtpm did not open its socket within 10 s")
	}
	return sock
}
