package demo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Where the demo center's signing keys live: "file" (PKCS#8 files in the
// center's directory) or "softhsm" (a SoftHSM2 token made for the demo,
// outside the center's directory, used through PKCS#11 as a production
// center uses its HSM). "auto" picks SoftHSM2 when it is installed and the
// center binary can use it.
const (
	KeysAuto    = "auto"
	KeysSoftHSM = "softhsm"
	KeysFile    = "file"
)

// softHSMModules are where Debian and others install the SoftHSM2 module.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// SoftHSMInstalled returns the SoftHSM2 module and whether softhsm2-util
// and the module are both installed.
func SoftHSMInstalled() (string, bool) {
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return "", false
	}
	for _, m := range softHSMModules {
		if _, err := os.Stat(m); err == nil {
			return m, true
		}
	}
	return "", false
}

// ChooseKeys resolves keys (auto, softhsm, file; "" is auto) to softhsm or
// file, given whether the center binary has PKCS#11 support, and says why.
func ChooseKeys(keys string, centerHasPKCS11 bool) (string, string, error) {
	_, installed := SoftHSMInstalled()
	switch keys {
	case KeysFile:
		return KeysFile, "asked for", nil
	case KeysSoftHSM:
		if !installed {
			return "", "", errors.New("demo: -keys softhsm: SoftHSM2 is not installed (Debian package softhsm2: make deps-demo)")
		}
		if !centerHasPKCS11 {
			return "", "", errors.New("demo: -keys softhsm: the issuance-center binary has no PKCS#11 support (make build-center-pkcs11, then -center bin/pkcs11/issuance-center)")
		}
		return KeysSoftHSM, "asked for", nil
	case KeysAuto, "":
		switch {
		case !installed:
			return KeysFile, "SoftHSM2 is not installed", nil
		case !centerHasPKCS11:
			return KeysFile, "the center binary has no PKCS#11 support", nil
		}
		return KeysSoftHSM, "SoftHSM2 is installed", nil
	}
	return "", "", fmt.Errorf("demo: keys %q: want auto, softhsm or file", keys)
}

// SoftHSMToken is a SoftHSM2 token made for a demo center.
type SoftHSMToken struct {
	Module, Label string
	// Conf is the SOFTHSM2_CONF file every center process is given.
	Conf string
	// PINFile holds the user PIN (mode 0600); the center reads it there.
	PINFile string
	Dir     string
}

// NewSoftHSMToken initialises a token labelled label with a random PIN in
// dir (its own configuration and token directory, so the machine's tokens
// are left alone).
func NewSoftHSMToken(dir, label string) (*SoftHSMToken, error) {
	module, ok := SoftHSMInstalled()
	if !ok {
		return nil, errors.New("demo: SoftHSM2 is not installed (Debian package softhsm2: make deps-demo)")
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, err
	}
	tok := &SoftHSMToken{Module: module, Label: label, Dir: dir,
		Conf: filepath.Join(dir, "softhsm2.conf"), PINFile: filepath.Join(dir, "token.pin")}
	conf := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(tok.Conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	pin, so := randomPIN(), randomPIN()
	if err := os.WriteFile(tok.PINFile, []byte(pin+"\n"), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so)
	cmd.Env = tok.Env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("demo: softhsm2-util --init-token: %w: %s", err, out)
	}
	return tok, nil
}

// Env is the environment of a process using the token.
func (t *SoftHSMToken) Env() []string {
	return append(os.Environ(), "SOFTHSM2_CONF="+t.Conf)
}

// initArgs are the center's init flags for the token.
func (t *SoftHSMToken) initArgs() []string {
	return []string{"-key-source", "pkcs11", "-pkcs11-module", t.Module, "-pkcs11-token", t.Label, "-pkcs11-pin-file", t.PINFile}
}

func randomPIN() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// CenterHasPKCS11 reports whether the issuance-center binary at bin was
// built with PKCS#11 support (the pkcs11 build tag; make build-center-pkcs11).
func CenterHasPKCS11(bin string) bool {
	out, err := exec.Command(bin, "version").CombinedOutput()
	return err == nil && strings.Contains(string(out), "pkcs11=yes")
}

// DefaultCenter returns the issuance-center binary beside the program at
// self: the PKCS#11 build (pkcs11/issuance-center, from make
// build-center-pkcs11) unless keys is "file" or there is none, else the
// plain one.
func DefaultCenter(self, keys string) string {
	dir := filepath.Dir(self)
	if keys != KeysFile {
		p := filepath.Join(dir, "pkcs11", "issuance-center")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join(dir, "issuance-center")
}

// SetupKeys chooses where the demo center's signing keys live (ChooseKeys
// for the center binary), makes the SoftHSM2 token in dir when that is
// the choice, and says which on w ("signing keys: …"). A nil token means
// key files.
func SetupKeys(keys, centerBin, dir string, w io.Writer) (*SoftHSMToken, error) {
	choice, why, err := ChooseKeys(keys, CenterHasPKCS11(centerBin))
	if err != nil {
		return nil, err
	}
	if choice == KeysFile {
		fmt.Fprintf(w, "signing keys: files in the demo center's directory (%s)\n", why)
		return nil, nil
	}
	tok, err := NewSoftHSMToken(dir, "kioskcert-demo")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "signing keys: SoftHSM2 token %q in %s through PKCS#11 (%s; -keys file for key files)\n", tok.Label, tok.Dir, why)
	return tok, nil
}
