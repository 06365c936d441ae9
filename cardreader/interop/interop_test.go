package interop

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/cardreader/pcsctest"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

var daemon *pcsctest.Daemon

// TestMain starts this test binary's private pcscd. Without pcscd the test
// fails; it does not skip.
func TestMain(m *testing.M) {
	var err error
	if daemon, err = pcsctest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	daemon.Stop()
	os.Exit(code)
}

// python is Debian's interpreter, which has Debian's python3-pyscard (a
// python3 earlier in PATH, e.g. pyenv's, may not).
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			if exec.Command(path, "-c", "import smartcard.System").Run() == nil {
				return path
			}
		}
	}
	t.Fatal("python3 with pyscard not found; run `make deps` (Debian package python3-pyscard)")
	return ""
}

// client runs one mynaclient command against the card in the daemon's
// reader. pcsctest has pointed PCSCLITE_CSOCK_NAME at the private daemon's
// socket; the child inherits it and so talks to the same pcscd.
func client(t *testing.T, py, pin, command string, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("testdata", "mynaclient.py"), "--reader", pcsctest.ReaderName, "--pin", pin, command)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("mynaclient %s: %v: %s", command, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("mynaclient %s printed %q: %v", command, b, err)
	}
	return nil
}

func TestRealCardClient(t *testing.T) {
	py := python(t)
	a, err := virtualcard.GenerateAuthority("JLIS-TEST")
	if err != nil {
		t.Fatal(err)
	}
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	// takasaki's four items exceed 256 bytes: the client reads them in chunks.
	for _, id := range []string{"hanako", "takasaki"} {
		t.Run(id, func(t *testing.T) {
			r, err := d.Resident(id)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := virtualcard.Personalize(a, r)
			if err != nil {
				t.Fatal(err)
			}
			card, err := virtualcard.New(raw, r.PIN, virtualcard.Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			conn, err := daemon.Insert(ctx, card)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := daemon.Remove(ctx, conn); err != nil {
					t.Error(err)
				}
			})
			checkCard(t, py, r, raw, card)
		})
	}
}

func checkCard(t *testing.T, py string, r demo.Resident, raw carddata.Raw, card *virtualcard.Card) {
	var check struct{ Token string }
	if err := client(t, py, "", "check", &check); err != nil || check.Token != "JPKIAPICCTOKEN2" {
		t.Fatalf("check card: %+v, %v", check, err)
	}

	var mn struct{ MyNumber string }
	if err := client(t, py, r.PIN, "mynumber", &mn); err != nil || mn.MyNumber != r.MyNumber {
		t.Errorf("text mynumber: %v (number matches: %v)", err, mn.MyNumber == r.MyNumber)
	}

	var attrs struct{ Header, Name, Address, Birth, Sex string }
	if err := client(t, py, r.PIN, "attrs", &attrs); err != nil {
		t.Error(err)
	} else if attrs.Name != r.Name || attrs.Address != r.Address || attrs.Birth != strings.ReplaceAll(r.BirthDate, "-", "") || attrs.Sex != r.Sex[:1] || len(attrs.Header) != 16 {
		t.Error("text attrs: the four items read by the client differ from the resident's")
	}

	var sig struct{ MyNumberHash, AttrsHash, Signature string }
	if err := client(t, py, r.PIN, "signature", &sig); err != nil {
		t.Error(err)
	} else if want, _ := carddata.ParseSignatureFile(raw.Signature); sig.MyNumberHash != hex.EncodeToString(want.MyNumberHash) ||
		sig.AttrsHash != hex.EncodeToString(want.FourItemsHash) || sig.Signature != hex.EncodeToString(want.Signature) {
		t.Error("text signature: the client read a different signature file")
	}

	var cert struct {
		IssuerKeyID, SubjectKeyID string
		SignatureLen              int
	}
	want, _ := carddata.ParseCertificate(raw.Certificate)
	if err := client(t, py, "", "cert", &cert); err != nil {
		t.Error(err)
	} else if cert.IssuerKeyID != hex.EncodeToString(want.IssuerKeyID[:]) || cert.SubjectKeyID != hex.EncodeToString(want.SubjectKeyID[:]) || cert.SignatureLen != 256 {
		t.Errorf("text cert: %+v", cert)
	}

	var info struct{ APID, PublicKeyID string }
	if err := client(t, py, "", "info", &info); err != nil {
		t.Error(err)
	} else if info.PublicKeyID != hex.EncodeToString(want.SubjectKeyID[:]) || !strings.HasPrefix(info.APID, "0001") {
		t.Errorf("text info: APID %s, public key ID %s (want %x)", info.APID, info.PublicKeyID, want.SubjectKeyID)
	}

	var pins map[string]int
	if err := client(t, py, "", "pinstatus", &pins); err != nil {
		t.Error(err)
	} else {
		wantPins := map[string]int{"text-0011": 3, "text-0014": 10, "text-0015": 10, "surface-0013": 10, "surface-0012": 10, "jpki-0018": 3, "jpki-001B": 5}
		for k, v := range wantPins {
			if pins[k] != v {
				t.Errorf("pin status %s = %d, want %d", k, pins[k], v)
			}
		}
	}

	var certs map[string]int
	if err := client(t, py, "", "jpki-certs", &certs); err != nil || len(certs) != 3 {
		t.Errorf("jpki certificates: %v, %v", certs, err)
	}

	var re struct{ SW string }
	if err := client(t, py, r.PIN, "reselect", &re); err != nil || re.SW != "6982" {
		t.Errorf("read after re-selecting the application: %+v, %v; a real card answers 6982", re, err)
	}

	// A wrong PIN through the client: myna's messages for 63 Cx.
	wrong := "0000"
	if wrong == r.PIN {
		wrong = "9999"
	}
	if err := client(t, py, wrong, "mynumber", &mn); err == nil || !strings.Contains(err.Error(), "2 tries left") {
		t.Errorf("wrong PIN: %v", err)
	}
	if card.TriesLeft() != 2 {
		t.Errorf("tries left %d after one wrong PIN", card.TriesLeft())
	}
}
