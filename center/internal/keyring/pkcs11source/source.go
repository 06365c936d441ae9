//go:build pkcs11

package pkcs11source

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"fmt"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Supported reports whether this build can open PKCS#11 tokens.
const Supported = true

// Source is a keyring.KeySource on a PKCS#11 token.
type Source struct {
	cfg Config
	ctx *crypto11.Context
}

var _ keyring.KeySource = (*Source)(nil)

// Open loads the module, finds the token and logs in.
func Open(cfg Config) (*Source, error) {
	if cfg.Module == "" || cfg.TokenLabel == "" {
		return nil, fmt.Errorf("pkcs11source: a module path and a token label are required")
	}
	if cfg.Sessions == 0 {
		cfg.Sessions = DefaultSessions
	}
	if cfg.Sessions < 2 {
		return nil, fmt.Errorf("pkcs11source: sessions must be at least 2 (one stays logged in)")
	}
	c, err := crypto11.Configure(&crypto11.Config{
		Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: cfg.PIN, MaxSessions: cfg.Sessions,
		// A signer waiting longer than this for a session fails rather
		// than hanging the issuance past its deadline.
		PoolWaitTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11source: open token %q with %s: %w", cfg.TokenLabel, cfg.Module, err)
	}
	cfg.PIN = ""
	return &Source{cfg: cfg, ctx: c}, nil
}

func objectID(purpose store.KeyPurpose, label string) []byte {
	return []byte(string(purpose) + ":" + label)
}

// Generate implements keyring.KeySource: a P-256 key pair made inside the
// token, private half sensitive and not extractable.
func (s *Source) Generate(ctx context.Context, purpose store.KeyPurpose, label string) (crypto.Signer, error) {
	if err := keyring.CheckLabel(label); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	existing, err := s.ctx.FindKeyPairs(objectID(purpose, label), []byte(label))
	if err != nil {
		return nil, fmt.Errorf("pkcs11source: look up %s: %w", label, err)
	}
	if len(existing) > 0 {
		return nil, fmt.Errorf("pkcs11source: token %q already holds a key labelled %s; refusing to make another", s.cfg.TokenLabel, label)
	}
	pub, err := crypto11.NewAttributeSetWithIDAndLabel(objectID(purpose, label), []byte(label))
	if err != nil {
		return nil, err
	}
	priv := pub.Copy()
	// crypto11 sets CKA_SENSITIVE true and CKA_EXTRACTABLE false on the
	// private half; say so here too, so a change there cannot loosen it.
	if err := priv.Set(crypto11.CkaSensitive, true); err != nil {
		return nil, err
	}
	if err := priv.Set(crypto11.CkaExtractable, false); err != nil {
		return nil, err
	}
	signer, err := s.ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256())
	if err != nil {
		return nil, fmt.Errorf("pkcs11source: generate %s key %s in token %q: %w", purpose, label, s.cfg.TokenLabel, err)
	}
	return signer, nil
}

// Signer implements keyring.KeySource.
func (s *Source) Signer(ctx context.Context, purpose store.KeyPurpose, label string) (crypto.Signer, error) {
	if err := keyring.CheckLabel(label); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// FindKeyPairs, unlike FindKeyPair, tells "none" from a failure.
	found, err := s.ctx.FindKeyPairs(objectID(purpose, label), []byte(label))
	if err != nil {
		return nil, fmt.Errorf("pkcs11source: find %s key %s: %w", purpose, label, err)
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("%w: token %q has no %s key labelled %s", keyring.ErrKeyNotFound, s.cfg.TokenLabel, purpose, label)
	}
	return found[0], nil
}

// Describe implements keyring.KeySource.
func (s *Source) Describe() string {
	return fmt.Sprintf("pkcs11:%s token=%s", s.cfg.Module, s.cfg.TokenLabel)
}

// Close logs out and unloads the module once every user of it closed.
func (s *Source) Close() error { return s.ctx.Close() }

// Extractable reports the CKA_EXTRACTABLE and CKA_SENSITIVE attributes of
// a key's private half, for tests and the operator's check that the token
// keeps keys as configured.
func (s *Source) Extractable(signer crypto.Signer) (extractable, sensitive bool, err error) {
	attrs, err := s.ctx.GetAttributes(signer, []crypto11.AttributeType{crypto11.CkaExtractable, crypto11.CkaSensitive})
	if err != nil {
		return false, false, fmt.Errorf("pkcs11source: read key attributes: %w", err)
	}
	return isTrue(attrs[crypto11.CkaExtractable]), isTrue(attrs[crypto11.CkaSensitive]), nil
}

func isTrue(a *crypto11.Attribute) bool {
	return a != nil && len(a.Value) == 1 && a.Value[0] != 0
}
