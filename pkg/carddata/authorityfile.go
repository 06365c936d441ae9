package carddata

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kioskcert/kioskcert/pkg/keyfile"
)

// Files SaveAuthority writes under a directory (`cardsim keygen -dir`).
const (
	AuthorityKeyFile   = "jlis-test-ca.key" // the private key (PKCS#8 PEM, keyfile); 0600
	AuthorityTrustFile = "jlis-test-ca.pem" // the trust anchor the kiosk and the center configure
)

// ErrAuthorityMismatch means an authority's trust file does not hold the
// public half of its key file: the two come from different authorities.
var ErrAuthorityMismatch = errors.New("carddata: authority trust file does not match its key file")

// SaveAuthority writes a test card issuing authority into dir: its private
// key (AuthorityKeyFile, which must not exist yet) and its trust file
// (AuthorityTrustFile).
func SaveAuthority(dir string, a Authority) error {
	if err := keyfile.Write(filepath.Join(dir, AuthorityKeyFile), a.Signer); err != nil {
		return err
	}
	ik, err := a.IssuerKey()
	if err != nil {
		return err
	}
	trust, err := MarshalIssuerKey(ik)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, AuthorityTrustFile), trust, 0o644); err != nil {
		return fmt.Errorf("carddata: write authority trust file: %w", err)
	}
	return nil
}

// LoadAuthority reads an authority saved by SaveAuthority, with the key ID
// its trust file names. It returns ErrAuthorityMismatch if the trust file
// holds another key than the key file.
func LoadAuthority(dir string) (Authority, error) {
	signer, err := keyfile.Load(filepath.Join(dir, AuthorityKeyFile))
	if err != nil {
		return Authority{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, AuthorityTrustFile))
	if err != nil {
		return Authority{}, fmt.Errorf("carddata: read authority trust file: %w", err)
	}
	keys, err := ParseIssuerKeys(b)
	if err != nil {
		return Authority{}, err
	}
	pub, ok := signer.Public().(*rsa.PublicKey)
	if !ok || !pub.Equal(keys[0].PublicKey) {
		return Authority{}, fmt.Errorf("%w (%s, %s in %s)", ErrAuthorityMismatch, AuthorityTrustFile, AuthorityKeyFile, dir)
	}
	return Authority{KeyID: keys[0].KeyID, Signer: signer}, nil
}
