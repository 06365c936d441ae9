// Package softhsmtest makes a fresh SoftHSM2 token for one test: its own
// token directory and configuration file (SOFTHSM2_CONF is set for the
// test), a random user PIN. SoftHSM2 is Debian's softhsm2 package, which
// .ci/install-deps installs; a missing one fails the test, it never skips.
package softhsmtest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Modules are where Debian and others install the SoftHSM2 module.
var Modules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// Module returns the SoftHSM2 module path, or "" when it is not installed.
func Module() string {
	for _, m := range Modules {
		if _, err := os.Stat(m); err == nil {
			return m
		}
	}
	return ""
}

// Token is an initialised SoftHSM2 token.
type Token struct {
	Module string
	Label  string
	PIN    string
	// Dir holds the token's files (outside any center's directory).
	Dir string
	// Conf is the SOFTHSM2_CONF file.
	Conf string
}

// New initialises a token labelled label in a directory of its own and
// points SOFTHSM2_CONF at it for the rest of the test.
func New(t testing.TB, label string) Token {
	t.Helper()
	tok, err := Init(t.TempDir(), label)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	return tok
}

// Init initialises a token in dir (for tools outside tests: the demo).
// The caller sets SOFTHSM2_CONF=tok.Conf for every process using it.
func Init(dir, label string) (Token, error) {
	module := Module()
	util, err := exec.LookPath("softhsm2-util")
	if module == "" || err != nil {
		return Token{}, errNotInstalled
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return Token{}, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"), 0o600); err != nil {
		return Token{}, err
	}
	pin, so := random(), random()
	cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Token{}, &initError{out: string(out), err: err}
	}
	return Token{Module: module, Label: label, PIN: pin, Dir: dir, Conf: conf}, nil
}

func random() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type initError struct {
	out string
	err error
}

func (e *initError) Error() string {
	return "softhsmtest: softhsm2-util --init-token: " + e.err.Error() + ": " + e.out
}

type notInstalled struct{}

func (notInstalled) Error() string {
	return "softhsmtest: SoftHSM2 is not installed (Debian package softhsm2; run make deps)"
}

var errNotInstalled error = notInstalled{}
