package opauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// TokenPrefix starts every API token, so a leaked one is easy to find
// in a repository or a log.
const TokenPrefix = "kcop_"

// NewToken returns a new API token (the secret, shown once), its ID and
// its SHA-256, which is all the store keeps.
func NewToken() (token, id, sha256Hex string, err error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", "", err
	}
	var idb [6]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", "", err
	}
	token = TokenPrefix + hex.EncodeToString(b[:])
	return token, "tok-" + hex.EncodeToString(idb[:]), HashToken(token), nil
}

// HashToken returns the SHA-256 of a token in lowercase hex. Tokens carry
// 192 random bits, so a plain hash is enough (no password hashing).
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
