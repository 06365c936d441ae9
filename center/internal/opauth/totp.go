package opauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters: what every authenticator app understands.
const (
	TOTPPeriod = 30 * time.Second
	TOTPDigits = otp.DigitsSix
	TOTPSkew   = 1 // steps accepted either side of now
)

// Issuer names the center in authenticator apps.
const Issuer = "kioskcert"

// Enrolment is a new second factor: the secret (base32, for typing in)
// and the otpauth:// URI (for a QR code).
type Enrolment struct {
	Secret string
	URI    string
}

// NewTOTP makes a second factor for an operator.
func NewTOTP(operatorID string) (Enrolment, error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: Issuer, AccountName: operatorID, Period: uint(TOTPPeriod / time.Second),
		SecretSize: 20, Digits: TOTPDigits, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return Enrolment{}, fmt.Errorf("opauth: TOTP secret: %w", err)
	}
	return Enrolment{Secret: k.Secret(), URI: k.URL()}, nil
}

// Code returns the TOTP code for secret at t (for tests and the demo).
func Code(secret string, t time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret, t, validateOpts)
}

var validateOpts = totp.ValidateOpts{Period: uint(TOTPPeriod / time.Second), Digits: TOTPDigits, Algorithm: otp.AlgorithmSHA1}

// checkCode returns the time step whose code matches, trying now and
// TOTPSkew steps either side, and only steps after lastStep (a code is
// used once).
func checkCode(secret, code string, now time.Time, lastStep int64) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	step := now.Unix() / int64(TOTPPeriod/time.Second)
	for d := int64(-TOTPSkew); d <= TOTPSkew; d++ {
		s := step + d
		if s <= lastStep {
			continue
		}
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*int64(TOTPPeriod/time.Second), 0), validateOpts)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return s, true
		}
	}
	return 0, false
}

// Sealer seals second-factor secrets under the center's operator key.
type Sealer struct{ aead cipher.AEAD }

// OperatorKeyFile is the default name of the operator key in the keys
// directory.
const OperatorKeyFile = "operators.key"

// LoadOrCreateSealer reads the 32-byte key (hex) at path, creating it
// (mode 0600) when the file does not exist: a center made before the
// console gets one on first start.
func LoadOrCreateSealer(path string) (*Sealer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return LoadOrCreateSealer(path) // made meanwhile by another process
		}
		if err != nil {
			return nil, fmt.Errorf("opauth: create operator key: %w", err)
		}
		_, werr := f.WriteString(hex.EncodeToString(key) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("opauth: write operator key: %w", werr)
		}
		return NewSealer(key)
	}
	if err != nil {
		return nil, fmt.Errorf("opauth: operator key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("opauth: %s has mode %04o; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("opauth: %s must hold 64 hex digits (a 256-bit key)", path)
	}
	return NewSealer(key)
}

// NewSealer returns a sealer with a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("opauth: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts an operator's TOTP secret, bound to the operator ID.
func (s *Sealer) Seal(operatorID, secret string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, []byte(secret), []byte("kioskcert-totp:"+operatorID)), nil
}

// Open decrypts a sealed TOTP secret of the operator.
func (s *Sealer) Open(operatorID string, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("opauth: sealed second factor is truncated")
	}
	pt, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte("kioskcert-totp:"+operatorID))
	if err != nil {
		return "", errors.New("opauth: the second factor does not open with this center's operator key (keys/operators.key replaced?)")
	}
	return string(pt), nil
}
