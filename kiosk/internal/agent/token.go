package agent

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// ErrTokenFilePermissions is returned when the integrator token file can be
// read by others than its owner (and, on Windows, SYSTEM and the
// Administrators group): anyone who can read it can take the terminal's
// money and its residents' certificates.
var ErrTokenFilePermissions = errors.New("agent: the integrator token file is readable by others: restrict it to the terminal's user (chmod 600 on Linux; see docs/INTEGRATION.md for the Windows ACL)")

// minTokenLen is the shortest token accepted from a file an operator
// wrote: 32 characters of a random token carry at least 128 bits.
const minTokenLen = 32

// LoadToken reads the integrator API's bearer token from path. If the file
// does not exist it is created, readable and writable by the agent's user
// only, with 32 random bytes (base64url). A file others can read is
// refused (ErrTokenFilePermissions), as is one holding a short token.
func LoadToken(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createToken(path); err != nil {
			return "", err
		}
		f, err = os.Open(path)
	}
	if err != nil {
		return "", fmt.Errorf("agent: integrator token file: %w", err)
	}
	defer f.Close()
	// Check the file opened, not the name, so it cannot be swapped between
	// the check and the read.
	if err := checkTokenFile(f); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("agent: integrator token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minTokenLen || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("agent: integrator token file %s must hold one token of at least %d characters without spaces (delete it to have a new one made)", path, minTokenLen)
	}
	return tok, nil
}

// createToken writes a new random token to path, which must not exist.
func createToken(path string) error {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	f, err := createPrivate(path)
	if err != nil {
		return fmt.Errorf("agent: creating the integrator token file: %w", err)
	}
	_, werr := f.WriteString(tok + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return fmt.Errorf("agent: writing the integrator token file: %w", err)
	}
	return nil
}
