//go:build pkcs11

package pkcs11source_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/keyring/pkcs11source"
	"github.com/kioskcert/kioskcert/center/internal/keyring/pkcs11source/softhsmtest"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

func open(t testing.TB, sessions int) *pkcs11source.Source {
	t.Helper()
	tok := softhsmtest.New(t, "unit")
	src, err := pkcs11source.Open(pkcs11source.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Sessions: sessions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func TestSource(t *testing.T) {
	ctx := context.Background()
	src := open(t, 4)
	var _ keyring.KeySource = src
	signer, err := src.Generate(ctx, store.PurposeSHC, "shc-0001")
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("payload"))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() || !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatal("the token's signature does not verify with its public key")
	}
	extractable, sensitive, err := src.Extractable(signer)
	if err != nil || extractable || !sensitive {
		t.Fatalf("private key extractable=%v sensitive=%v (%v)", extractable, sensitive, err)
	}
	again, err := src.Signer(ctx, store.PurposeSHC, "shc-0001")
	if err != nil || !again.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatalf("Signer found another key: %v", err)
	}
	if _, err := src.Generate(ctx, store.PurposeSHC, "shc-0001"); err == nil {
		t.Fatal("a second key under a label in use")
	}
	// The purpose is part of the key's identity: no cross-purpose opening.
	if _, err := src.Signer(ctx, store.PurposeVDSNC, "shc-0001"); !errors.Is(err, keyring.ErrKeyNotFound) {
		t.Fatalf("opened an SHC key as a VDS-NC key: %v", err)
	}
	if _, err := src.Signer(ctx, store.PurposeSHC, "missing"); !errors.Is(err, keyring.ErrKeyNotFound) {
		t.Fatalf("missing key: %v, want ErrKeyNotFound", err)
	}
	if _, err := src.Generate(ctx, store.PurposeSHC, "../escape"); err == nil {
		t.Fatal("accepted a label with a path")
	}
}

func TestOpenErrors(t *testing.T) {
	tok := softhsmtest.New(t, "errors")
	for name, cfg := range map[string]pkcs11source.Config{
		"wrong PIN":    {Module: tok.Module, TokenLabel: tok.Label, PIN: "0000"},
		"no token":     {Module: tok.Module, TokenLabel: "absent", PIN: tok.PIN},
		"no module":    {Module: "/nonexistent/libpkcs11.so", TokenLabel: tok.Label, PIN: tok.PIN},
		"one session":  {Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Sessions: 1},
		"empty config": {},
	} {
		if src, err := pkcs11source.Open(cfg); err == nil {
			src.Close()
			t.Errorf("%s: opened", name)
		}
	}
}

// BenchmarkSign compares an ES256 signature in SoftHSM2 (through crypto11's
// session pool) with one by an in-memory key, serially and in parallel.
func BenchmarkSign(b *testing.B) {
	digest := sha256.Sum256([]byte("a SMART Health Card payload"))
	mem, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	src := open(b, 8)
	hsm, err := src.Generate(context.Background(), store.PurposeSHC, "shc-bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range []struct {
		name   string
		signer crypto.Signer
	}{{"memory", mem}, {"softhsm2", hsm}} {
		b.Run(k.name+"/serial", func(b *testing.B) {
			for b.Loop() {
				if _, err := k.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(k.name+"/parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
