package records

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// MasterKeySize is the size of the master key file: 32 random bytes.
const MasterKeySize = 32

// MasterKey wraps and unwraps the regions' keys. It keeps only the AES-GCM
// cipher and a non-secret identifier, not the raw key bytes.
type MasterKey struct {
	aead cipher.AEAD
	id   string
}

// NewMasterKey builds a master key from 32 bytes (the file's content).
func NewMasterKey(key []byte) (*MasterKey, error) {
	if len(key) != MasterKeySize {
		return nil, fmt.Errorf("%w: the master key must be exactly %d bytes, got %d", ErrMasterKeyFile, MasterKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("records: master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("records: master key: %w", err)
	}
	// The ID names the key in messages and the operations log without
	// revealing it: an HMAC under the key of a fixed label.
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("kioskcert/records/master-key-id/v1"))
	return &MasterKey{aead: aead, id: hex.EncodeToString(mac.Sum(nil)[:8])}, nil
}

// ID is a short, non-secret identifier of the key (16 hex digits), for
// messages, logs and the operations log.
func (k *MasterKey) ID() string { return k.id }

// LoadMasterKey reads the master key file. The file must be a regular file
// readable by its owner only (mode 0600 or 0400) and hold exactly 32 bytes;
// anything else is refused with ErrMasterKeyFile and says how to fix it.
func LoadMasterKey(path string) (*MasterKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMasterKeyFile, err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the checked file is the one read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMasterKeyFile, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrMasterKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; the master key must be readable by its owner only: run chmod 600 (or 400) on it", ErrMasterKeyFile, path, perm)
	}
	if fi.Size() != MasterKeySize {
		return nil, fmt.Errorf("%w: %s holds %d bytes; a master key file holds exactly %d random bytes (create one with GenerateMasterKeyFile)", ErrMasterKeyFile, path, fi.Size(), MasterKeySize)
	}
	key := make([]byte, MasterKeySize)
	if _, err := io.ReadFull(f, key); err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrMasterKeyFile, path, err)
	}
	defer clear(key)
	return NewMasterKey(key)
}

// GenerateMasterKeyFile writes a new random master key to path with mode
// 0600 and returns it. It refuses to overwrite an existing file: a lost
// master key makes every record unreadable.
func GenerateMasterKeyFile(path string) (*MasterKey, error) {
	key := make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("records: generating master key: %w", err)
	}
	defer clear(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("records: %s already exists; refusing to overwrite a master key", path)
	}
	if err != nil {
		return nil, fmt.Errorf("records: creating master key file: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("records: writing master key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("records: writing master key file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("records: writing master key file: %w", err)
	}
	return NewMasterKey(key)
}

// seal encrypts with a fresh random nonce: nonce ‖ ciphertext.
func seal(aead cipher.AEAD, plaintext, ad []byte) ([]byte, error) {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("records: nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, ad), nil
}

// open reverses seal.
func open(aead cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	n := aead.NonceSize()
	if len(sealed) < n+aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	return aead.Open(nil, sealed[:n], sealed[n:], ad)
}
