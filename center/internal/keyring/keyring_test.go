package keyring

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/kioskcert/kioskcert/pkg/keyfile"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

var t0 = time.Date(2024, 4, 1, 9, 0, 0, 0, time.UTC)

func newKeyring(t *testing.T) Keyring {
	t.Helper()
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys := filepath.Join(dir, "keys")
	return Keyring{Source: FileSource{Dir: keys}, Store: st, Dir: keys}
}

// keyPath is the file the file source keeps a key's private half in.
func keyPath(t *testing.T, k Keyring, kid string) string {
	t.Helper()
	sk, err := k.Store.SigningKey(context.Background(), kid)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(k.Dir, string(sk.Purpose), sk.Label()+".key")
}

func statuses(t *testing.T, k Keyring) map[string]store.KeyStatus {
	t.Helper()
	keys, err := k.Store.ListSigningKeys(context.Background(), store.PurposeSHC)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.KeyStatus{}
	for _, sk := range keys {
		out[sk.KID] = sk.Status
	}
	return out
}

func TestRotateSHC(t *testing.T) {
	k := newKeyring(t)
	ctx := context.Background()
	if _, _, err := k.ActiveSHC(ctx); !errors.Is(err, ErrNoActiveKey) {
		t.Fatalf("ActiveSHC before any key: %v, want ErrNoActiveKey", err)
	}
	kid1, err := k.RotateSHC(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	secret1, err := k.RidSecret()
	if err != nil {
		t.Fatal(err)
	}
	kid2, err := k.RotateSHC(ctx, t0.Add(300*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if kid1 == kid2 {
		t.Fatal("rotation kept the key ID")
	}

	// The new key signs; the old one is retired but still published.
	signer, kid, err := k.ActiveSHC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kid != kid2 {
		t.Fatalf("active key %s, want the new %s", kid, kid2)
	}
	if got, _ := shc.Thumbprint(signer.Public().(*ecdsa.PublicKey)); got != kid2 {
		t.Fatalf("active signer is key %s", got)
	}
	st := statuses(t, k)
	if st[kid1] != store.KeyRetired || st[kid2] != store.KeyActive || len(st) != 2 {
		t.Fatalf("statuses %v; want %s retired, %s active", st, kid1, kid2)
	}
	jwks, err := k.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{kid1, kid2} {
		if _, jwk, err := jwks.Key(want); err != nil || jwk.Use != "sig" || jwk.Alg != "ES256" {
			t.Errorf("JWKS key %s: %+v, %v", want, jwk, err)
		}
	}
	b, err := json.Marshal(jwks)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`"d"`)) {
		t.Fatal("JWKS carries a private key")
	}

	// Cards signed before the rotation still verify against the JWKS.
	old, err := keyfile.Load(keyPath(t, k, kid1))
	if err != nil {
		t.Fatal(err)
	}
	secret2, err := k.RidSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(secret1, secret2) {
		t.Fatal("rotation replaced the revocation secret (old cards' rids would change)")
	}
	is, err := shc.NewIssuer("https://issuer.test", old, secret2)
	if err != nil {
		t.Fatal(err)
	}
	qr, err := is.Issue(certtest.Resident(t, "hanako", certificate.Domestic), t0)
	if err != nil {
		t.Fatal(err)
	}
	if card, err := shc.Verify(qr, shc.VerifyOptions{Keys: jwks, Issuer: "https://issuer.test", Now: t0.Add(time.Hour)}); err != nil || card.KeyID != kid1 {
		t.Fatalf("card signed with the retired key: %v", err)
	}

	// Every key file is private.
	for _, kid := range []string{kid1, kid2} {
		fi, err := os.Stat(keyPath(t, k, kid))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("key file %s has mode %04o", kid, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(k.RidSecretPath()); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("rid secret has mode %04o", fi.Mode().Perm())
	}

	// A withdrawn key leaves the JWKS.
	if err := k.Store.SetSigningKeyStatus(ctx, kid1, store.KeyWithdrawn, t0.Add(400*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	jwks, err = k.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := jwks.Key(kid1); err == nil {
		t.Error("withdrawn key still published")
	}
	if _, _, err := jwks.Key(kid2); err != nil {
		t.Error("active key not published")
	}
}

func TestActiveSHCRefusesMismatchedKeyFile(t *testing.T) {
	k := newKeyring(t)
	ctx := context.Background()
	kid, err := k.RotateSHC(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  func() any // written in place of the key file
		want string
	}{
		{"another P-256 key", func() any {
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return other
		}, "holds key"},
		{"a P-384 key", func() any {
			other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			return other
		}, "keyring: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := keyPath(t, k, kid)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := keyfile.Write(path, tt.key().(*ecdsa.PrivateKey)); err != nil {
				t.Fatal(err)
			}
			_, _, err := k.ActiveSHC(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ActiveSHC with a swapped key file: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// A missing key file is an error too, not a silent fallback.
	if err := os.Remove(keyPath(t, k, kid)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.ActiveSHC(ctx); err == nil {
		t.Fatal("ActiveSHC without its key file succeeded")
	}
}

func TestActiveSHCRefusesReadableKeyFile(t *testing.T) {
	k := newKeyring(t)
	kid, err := k.RotateSHC(context.Background(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyPath(t, k, kid), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.ActiveSHC(context.Background()); !errors.Is(err, keyfile.ErrPermissions) {
		t.Fatalf("ActiveSHC with a group-readable key: %v", err)
	}
}

func TestRidSecret(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string // "" for success
	}{
		{"private and long enough", bytes.Repeat([]byte{7}, shc.MinRIDSecretLen), 0o600, ""},
		{"read-only owner", bytes.Repeat([]byte{7}, shc.MinRIDSecretLen), 0o400, ""},
		{"group readable", bytes.Repeat([]byte{7}, shc.MinRIDSecretLen), 0o640, "chmod 600"},
		{"world readable", bytes.Repeat([]byte{7}, shc.MinRIDSecretLen), 0o604, "chmod 600"},
		{"too short", bytes.Repeat([]byte{7}, shc.MinRIDSecretLen-1), 0o600, "shorter than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := Keyring{Dir: t.TempDir()}
			path := k.RidSecretPath()
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := k.RidSecret()
			if tt.want == "" {
				if err != nil || !bytes.Equal(got, tt.content) {
					t.Fatalf("RidSecret = %x, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "keyring: ") {
				t.Fatalf("RidSecret: %v, want an error containing %q", err, tt.want)
			}
			if got != nil {
				t.Fatal("a refused secret was returned")
			}
		})
	}
	if _, err := (Keyring{Dir: t.TempDir()}).RidSecret(); err == nil {
		t.Fatal("RidSecret without a file succeeded")
	}
}

func TestCreateVDS(t *testing.T) {
	k := newKeyring(t)
	ctx := context.Background()
	now := time.Now()
	if err := k.CreateVDS(ctx, now); err != nil {
		t.Fatal(err)
	}
	signer, err := k.VDSSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := certtest.Resident(t, "hanako", certificate.Overseas)
	d, err := vdsnc.Build(c)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := signer.Sign(d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(k.CSCAPath())
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	csca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vdsnc.Verify(doc, vdsnc.VerifyOptions{CSCAs: []*x509.Certificate{csca}, Now: now}); err != nil {
		t.Fatalf("VDS-NC signed with the created signer does not verify: %v", err)
	}
	keys, err := k.Store.ListSigningKeys(ctx, store.PurposeVDSNC)
	if err != nil || len(keys) != 1 || keys[0].Status != store.KeyActive || keys[0].Format != store.FormatPEM {
		t.Fatalf("recorded VDS-NC keys %+v, %v", keys, err)
	}
	if fi, err := os.Stat(keyPath(t, k, keys[0].KID)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("signer key file: %v", err)
	}
	// No authority key is left behind, and the request was consumed.
	if _, err := os.Stat(filepath.Join(k.Dir, "vdsnc", "csca.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a CSCA key was written: %v", err)
	}
	if left, _ := os.ReadDir(k.RequestsDir()); len(left) != 0 {
		t.Errorf("requests left after installing: %v", left)
	}
	// The barcode signer certificate is not a private key: the store
	// refused nothing, and holds no private part.
	if bytes.Contains(keys[0].PublicKey, []byte("PRIVATE")) {
		t.Fatal("store holds a private key")
	}
}

// TestSignersPickUpRotation: a rotation recorded in the store (by this
// instance or another) reaches the signers on their next refresh, without
// a restart; cards signed before and after both verify.
func TestSignersPickUpRotation(t *testing.T) {
	k := newKeyring(t)
	ctx := context.Background()
	kid1, err := k.RotateSHC(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.CreateVDS(ctx, t0); err != nil {
		t.Fatal(err)
	}
	s, err := k.NewSigners(ctx, "https://issuer.test", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.SHCKeyID() != kid1 {
		t.Fatalf("signing with %s, want %s", s.SHCKeyID(), kid1)
	}
	c := certtest.Resident(t, "hanako", certificate.Domestic)
	before, err := s.Issue(c, t0)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Refresh(ctx); err != nil || changed {
		t.Fatalf("Refresh without a rotation: changed=%v, %v", changed, err)
	}
	// Another instance rotates: a second keyring on the same store and source.
	other := Keyring{Source: k.Source, Store: k.Store, Dir: k.Dir}
	kid2, err := other.RotateSHC(ctx, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Refresh(ctx); err != nil || !changed || s.SHCKeyID() != kid2 {
		t.Fatalf("Refresh after a rotation: changed=%v, kid %s, %v; want %s", changed, s.SHCKeyID(), err, kid2)
	}
	after, err := s.Issue(c, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := k.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for qr, want := range map[string]string{before: kid1, after: kid2} {
		card, err := shc.Verify(qr, shc.VerifyOptions{Keys: jwks, Issuer: "https://issuer.test", Now: t0.Add(3 * time.Hour)})
		if err != nil || card.KeyID != want {
			t.Errorf("card verifies as %v, %v; want key %s", card, err, want)
		}
	}
	d, err := vdsnc.Build(certtest.Resident(t, "hanako", certificate.Overseas))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.VDS().Sign(d); err != nil {
		t.Fatalf("VDS-NC signer: %v", err)
	}
}
