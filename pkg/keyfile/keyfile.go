// Package keyfile loads and writes the private keys kioskcert signs with,
// as PKCS#8 PEM files, and hands them out as crypto.Signer so that callers
// never depend on where a key lives (a file today, an HSM via PKCS#11
// later).
//
// Key files must not be readable by group or others: Load refuses a key
// whose permissions are looser than 0600, naming the file and the fix,
// rather than sign with a key that may already have leaked.
package keyfile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// ErrPermissions means a key file is readable by group or others.
var ErrPermissions = errors.New("keyfile: key file permissions too open")

const pemType = "PRIVATE KEY"

// Load reads a PKCS#8 PEM private key and returns it as a crypto.Signer.
func Load(path string) (crypto.Signer, error) {
	if err := checkPermissions(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: read %s: %w", path, err)
	}
	return Parse(b, path)
}

// Parse decodes a PKCS#8 PEM private key; name is used only in errors.
func Parse(pemData []byte, name string) (crypto.Signer, error) {
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != pemType {
		return nil, fmt.Errorf("keyfile: %s holds no %q PEM block", name, pemType)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", name, err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("keyfile: %s: unsupported key type %T", name, k)
	}
}

// Marshal encodes a private key as PKCS#8 PEM.
func Marshal(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keyfile: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// Write stores key at path with mode 0600, refusing to overwrite an
// existing file so that a re-run never silently replaces a key in use.
func Write(path string, key crypto.Signer) error {
	b, err := Marshal(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keyfile: create %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("keyfile: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keyfile: sync %s: %w", path, err)
	}
	return f.Close()
}

func checkPermissions(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	if runtime.GOOS == "windows" {
		return nil // ACLs, not mode bits, protect keys there
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o; run chmod 600 %s", ErrPermissions, path, fi.Mode().Perm(), path)
	}
	return nil
}
