// Package pkcs11source keeps the center's signing keys in a PKCS#11 token
// (a network HSM, a cloud KMS through its PKCS#11 module, or SoftHSM2 for
// tests and the demo) and hands them out as crypto.Signer: it implements
// keyring.KeySource.
//
// Keys are generated inside the token as P-256 key pairs whose private
// half is sensitive and not extractable (CKA_SENSITIVE true,
// CKA_EXTRACTABLE false, CKA_TOKEN true): the center never sees the
// private key, only signatures. Each key pair carries the keyring's label
// as CKA_LABEL and "<purpose>:<label>" as CKA_ID, so a key of one purpose
// is never opened for another.
//
// PKCS#11 modules are C libraries loaded with dlopen through
// github.com/miekg/pkcs11, which needs cgo. The center's default build has
// no cgo, so this package's implementation is behind the build tag
// "pkcs11"; without it Open returns ErrNotBuilt. Build the PKCS#11 center
// with `make build-center-pkcs11` (CGO_ENABLED=1 go build -tags pkcs11).
//
// Signing goes through crypto11's pool of token sessions, so concurrent
// issuances sign in parallel up to Config.Sessions (one more session stays
// logged in to keep the login alive).
package pkcs11source

import "errors"

// ErrNotBuilt means this binary was built without PKCS#11 support.
var ErrNotBuilt = errors.New("pkcs11source: this build has no PKCS#11 support; build with -tags pkcs11 (make build-center-pkcs11, needs cgo)")

// Config names the token and how to use it.
type Config struct {
	// Module is the path of the PKCS#11 library
	// (/usr/lib/softhsm/libsofthsm2.so).
	Module string
	// TokenLabel selects the token.
	TokenLabel string
	// PIN is the user PIN, read by the caller from a file or the
	// environment (never a command-line argument).
	PIN string
	// Sessions is the most token sessions open at once (default 8,
	// minimum 2); the token may allow fewer.
	Sessions int
}

// DefaultSessions is the session pool size when Config.Sessions is zero.
const DefaultSessions = 8
