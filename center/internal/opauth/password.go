package opauth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are Argon2id parameters.
type Params struct {
	Time    uint32 // passes
	Memory  uint32 // KiB
	Threads uint8  // lanes
	SaltLen int
	KeyLen  uint32
}

// DefaultParams is RFC 9106's second recommended option (§4): t=3,
// m=64 MiB, p=4.
var DefaultParams = Params{Time: 3, Memory: 64 << 10, Threads: 4, SaltLen: 16, KeyLen: 32}

// Limits on parameters read from a stored hash, so a tampered store cannot
// make a login allocate gigabytes.
const (
	maxMemory = 1 << 20 // KiB (1 GiB)
	maxTime   = 16
)

// MinPasswordLen is the shortest password accepted (NIST SP 800-63B: at
// least 8; the operations team holds the keys to a national service).
const MinPasswordLen = 12

// ErrWeakPassword means a new password is too short or too long.
var ErrWeakPassword = fmt.Errorf("opauth: a password must be %d to 128 characters", MinPasswordLen)

// CheckPassword checks a new password's length.
func CheckPassword(pw string) error {
	if n := len([]rune(pw)); n < MinPasswordLen || len(pw) > 128 {
		return ErrWeakPassword
	}
	return nil
}

// HashPassword hashes pw with p and a fresh salt, in PHC string format.
func HashPassword(pw string, p Params) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	hashSlots <- struct{}{}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	<-hashSlots
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// MaxConcurrentHashes bounds the Argon2id computations running at once.
const MaxConcurrentHashes = 2

var hashSlots = make(chan struct{}, MaxConcurrentHashes)

var errBadHash = errors.New("opauth: stored password hash is not an argon2id PHC string")

// VerifyPassword reports whether pw matches the encoded hash.
func VerifyPassword(encoded, pw string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, errBadHash
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return false, errBadHash
	}
	if p.Memory == 0 || p.Memory > maxMemory || p.Time == 0 || p.Time > maxTime || p.Threads == 0 {
		return false, errBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, errBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errBadHash
	}
	hashSlots <- struct{}{}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	<-hashSlots
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
