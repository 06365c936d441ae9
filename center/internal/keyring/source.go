package keyring

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/keyfile"
)

// KeySource holds the private halves of the center's signing keys and hands
// them out only as crypto.Signer. The keyring decides what a key is for and
// publishes its public half; the source decides where the private half
// lives: a file (FileSource) or, where keys must not be copied, a token
// behind PKCS#11. Labels are chosen by the keyring and recorded in the
// store (store.SigningKey.KeyLabel), so any instance can open the key.
type KeySource interface {
	// Generate creates a new P-256 key for purpose under label, inside the
	// source, and returns its signer. A label already in use is an error.
	Generate(ctx context.Context, purpose store.KeyPurpose, label string) (crypto.Signer, error)
	// Signer opens the key of purpose under label.
	Signer(ctx context.Context, purpose store.KeyPurpose, label string) (crypto.Signer, error)
	// Describe names the source for logs and operators ("file:/srv/keys").
	Describe() string
}

// ErrKeyNotFound means the source holds no key under the label asked for.
var ErrKeyNotFound = errors.New("keyring: key not found in the key source")

// FileSource keeps each private key as a PKCS#8 file, mode 0600, at
// DIR/<purpose>/<label>.key.
type FileSource struct {
	Dir string
}

func (f FileSource) path(purpose store.KeyPurpose, label string) string {
	return filepath.Join(f.Dir, string(purpose), label+".key")
}

// Generate implements KeySource.
func (f FileSource) Generate(ctx context.Context, purpose store.KeyPurpose, label string) (crypto.Signer, error) {
	if err := CheckLabel(label); err != nil {
		return nil, err
	}
	path := f.path(purpose, label)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("keyring: %s exists; refusing to overwrite a key", path)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keyring: generate %s key: %w", purpose, err)
	}
	if err := keyfile.Write(path, key); err != nil {
		return nil, err
	}
	return key, nil
}

// Signer implements KeySource.
func (f FileSource) Signer(ctx context.Context, purpose store.KeyPurpose, label string) (crypto.Signer, error) {
	if err := CheckLabel(label); err != nil {
		return nil, err
	}
	path := f.path(purpose, label)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no file %s", ErrKeyNotFound, path)
	}
	return keyfile.Load(path)
}

// Describe implements KeySource.
func (f FileSource) Describe() string { return "file:" + f.Dir }

// CheckLabel keeps labels to names that are safe as file names and token
// labels alike.
func CheckLabel(label string) error {
	if label == "" || len(label) > 128 {
		return fmt.Errorf("keyring: key label must be 1-128 characters")
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') || (i == 0 && c == '.') {
			return fmt.Errorf("keyring: key label must be characters of [A-Za-z0-9._-], not starting with a dot")
		}
	}
	return nil
}
