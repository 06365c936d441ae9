package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/pkg/childproc"
)

// startSWTPM starts Debian's swtpm, a software TPM 2.0, on a Unix socket
// of its own (state in a temporary directory) and stops it at the end of
// the test. swtpm is installed by .ci/install-deps; a missing one fails.
func startSWTPM(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Fatal("swtpm is not installed (Debian package swtpm; run make deps)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")
	cmd.Stderr = os.Stderr
	if err := childproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return sock
		}
	}
	t.Fatal("swtpm did not open its socket within 10 s")
	return ""
}

func checkSigns(t *testing.T, k crypto.Signer) {
	t.Helper()
	digest := sha256.Sum256([]byte("TLS 1.3 CertificateVerify"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("signature does not verify with the key's public half")
	}
}

// The kiosk's key is made in the TPM; the file holds only the wrapped
// blob; the key reopens from it, signs, and is useless with another TPM.
func TestTPMKey(t *testing.T) {
	sock := startSWTPM(t)
	path := filepath.Join(t.TempDir(), "kiosk.key")
	k, err := CreateTPMKey(sock, path)
	if err != nil {
		t.Fatal(err)
	}
	checkSigns(t, k)
	pub := k.Public().(*ecdsa.PublicKey)
	k.Close()
	if _, err := CreateTPMKey(sock, path); err == nil {
		t.Fatal("overwrote the kiosk's key")
	}
	b, _ := os.ReadFile(path)
	if _, err := x509.ParsePKCS8PrivateKey(b); err == nil {
		t.Fatal("the key file holds a plain private key")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o", fi.Mode().Perm())
	}
	again, err := OpenKey(path, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !again.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("reopened another key")
	}
	checkSigns(t, again)
	csr, err := Request(again, "K-TPM")
	if err != nil {
		t.Fatal(err)
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil || req.CheckSignature() != nil || req.Subject.CommonName != "K-TPM" {
		t.Fatalf("CSR signed in the TPM: %v", err)
	}
	// Another TPM cannot load the blob: the key is bound to its TPM.
	other := startSWTPM(t)
	if k, err := OpenKey(path, other); err == nil {
		k.Close()
		t.Fatal("another TPM loaded the kiosk's key")
	}
	if _, err := OpenKey(path, ""); err == nil {
		t.Fatal("opened a TPM key without a TPM")
	}
}

func TestFileKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id", "kiosk.key")
	k, err := CreateFileKey(path)
	if err != nil {
		t.Fatal(err)
	}
	checkSigns(t, k)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	if _, err := CreateFileKey(path); err == nil {
		t.Fatal("overwrote the kiosk's key")
	}
	again, err := OpenKey(path, "")
	if err != nil || !again.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatalf("OpenKey: %v", err)
	}
}

func TestNeedsRenewal(t *testing.T) {
	start := time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: start, NotAfter: start.Add(300 * 24 * time.Hour)}
	for _, tt := range []struct {
		at   time.Time
		want bool
	}{
		{start, false},
		{start.Add(199 * 24 * time.Hour), false},
		{start.Add(201 * 24 * time.Hour), true},
		{start.Add(400 * 24 * time.Hour), true},
	} {
		if got := NeedsRenewal(leaf, tt.at); got != tt.want {
			t.Errorf("NeedsRenewal at %s = %v, want %v", tt.at, got, tt.want)
		}
	}
}
