package carddata

import (
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestAuthorityFiles(t *testing.T) {
	g1 := Authority{KeyID: keyID("JLIS-TEST-CA-G1"), Signer: testKey(t, "issuer-g1.pem")}
	g2 := Authority{KeyID: keyID("JLIS-TEST-CA-G2"), Signer: testKey(t, "issuer-g2.pem")}
	dir := t.TempDir()
	if err := SaveAuthority(dir, g1); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, AuthorityKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	// Verifiers configure the trust file alone.
	trust, err := os.ReadFile(filepath.Join(dir, AuthorityTrustFile))
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := ParseIssuerKeys(trust); err != nil || len(keys) != 1 || keys[0].KeyID != g1.KeyID {
		t.Fatalf("trust file: %v, %v", keys, err)
	}
	got, err := LoadAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.KeyID != g1.KeyID || !g1.Signer.(*rsa.PrivateKey).PublicKey.Equal(got.Signer.Public()) {
		t.Fatal("loaded authority differs from the saved one")
	}
	if err := SaveAuthority(dir, g2); err == nil {
		t.Fatal("SaveAuthority overwrote an existing key file")
	}

	// A trust file of another authority next to the key is refused.
	other := t.TempDir()
	if err := SaveAuthority(other, g2); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(other, AuthorityTrustFile), filepath.Join(dir, AuthorityTrustFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAuthority(dir); !errors.Is(err, ErrAuthorityMismatch) {
		t.Fatalf("mismatched files: %v, want ErrAuthorityMismatch", err)
	}
	if _, err := LoadAuthority(t.TempDir()); err == nil {
		t.Fatal("LoadAuthority of an empty directory succeeded")
	}
}
