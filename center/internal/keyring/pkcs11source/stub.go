//go:build !pkcs11

package pkcs11source

import (
	"context"
	"crypto"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Supported reports whether this build can open PKCS#11 tokens.
const Supported = false

// Source is a keyring.KeySource on a PKCS#11 token; this build has none.
type Source struct{}

// Open fails: this build has no PKCS#11 support.
func Open(Config) (*Source, error) { return nil, ErrNotBuilt }

// Generate fails with ErrNotBuilt.
func (*Source) Generate(context.Context, store.KeyPurpose, string) (crypto.Signer, error) {
	return nil, ErrNotBuilt
}

// Signer fails with ErrNotBuilt.
func (*Source) Signer(context.Context, store.KeyPurpose, string) (crypto.Signer, error) {
	return nil, ErrNotBuilt
}

// Describe implements keyring.KeySource.
func (*Source) Describe() string { return "pkcs11 (not built)" }

// Close does nothing.
func (*Source) Close() error { return nil }
