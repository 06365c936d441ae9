package virtualcard

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/keyfile"
)

// Files written by SaveAuthority under a directory.
const (
	AuthorityKeyFile   = "jlis-test-ca.key" // private; 0600
	AuthorityTrustFile = "jlis-test-ca.pem" // the trust anchor verifiers configure
)

// GenerateAuthority makes a new test card issuing authority ("J-LIS test
// CA"): an RSA-2048 key and a 16-byte key ID. name becomes the readable part
// of the key ID so that logs can tell generations apart.
func GenerateAuthority(name string) (carddata.Authority, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return carddata.Authority{}, fmt.Errorf("virtualcard: generate authority key: %w", err)
	}
	var id [carddata.KeyIDLen]byte
	copy(id[:], name)
	if len(name) < carddata.KeyIDLen {
		// Fill the rest from the key so that two authorities with the same name differ.
		h := sha256.Sum256(k.N.Bytes())
		copy(id[len(name):], h[:])
	}
	return carddata.Authority{KeyID: id, Signer: k}, nil
}

// SaveAuthority writes the authority's private key and its trust file into dir.
func SaveAuthority(dir string, a carddata.Authority) error {
	if err := keyfile.Write(filepath.Join(dir, AuthorityKeyFile), a.Signer); err != nil {
		return err
	}
	ik, err := a.IssuerKey()
	if err != nil {
		return err
	}
	trust, err := carddata.MarshalIssuerKey(ik)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, AuthorityTrustFile), trust, 0o644)
}

// LoadAuthority reads an authority saved by SaveAuthority.
func LoadAuthority(dir string) (carddata.Authority, error) {
	signer, err := keyfile.Load(filepath.Join(dir, AuthorityKeyFile))
	if err != nil {
		return carddata.Authority{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, AuthorityTrustFile))
	if err != nil {
		return carddata.Authority{}, fmt.Errorf("virtualcard: %w", err)
	}
	keys, err := carddata.ParseIssuerKeys(b)
	if err != nil {
		return carddata.Authority{}, err
	}
	pub, ok := signer.Public().(*rsa.PublicKey)
	if !ok || !pub.Equal(keys[0].PublicKey) {
		return carddata.Authority{}, fmt.Errorf("virtualcard: %s does not match the key in %s", AuthorityTrustFile, AuthorityKeyFile)
	}
	return carddata.Authority{KeyID: keys[0].KeyID, Signer: signer}, nil
}

// Personalize makes the signed card files for a demo resident, with a fresh
// RSA-2048 AP key as each real card has its own.
func Personalize(a carddata.Authority, r demo.Resident) (carddata.Raw, error) {
	ap, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return carddata.Raw{}, fmt.Errorf("virtualcard: generate AP key: %w", err)
	}
	var subject [carddata.KeyIDLen]byte
	h := sha256.Sum256(ap.N.Bytes())
	copy(subject[:], h[:])
	items := carddata.FourItems{
		Name:      r.Name,
		Address:   r.Address,
		BirthDate: strings.ReplaceAll(r.BirthDate, "-", ""),
		Sex:       carddata.Sex(r.Sex[0]),
	}
	return a.Personalize(r.MyNumber, items, ap, subject)
}

// NewResidentCard personalises a card for a demo resident with the
// resident's PIN.
func NewResidentCard(a carddata.Authority, r demo.Resident, opts Options) (*Card, error) {
	raw, err := Personalize(a, r)
	if err != nil {
		return nil, err
	}
	return New(raw, r.PIN, opts)
}
