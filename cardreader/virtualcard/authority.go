package virtualcard

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/pkg/carddata"
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
		Name:      r.NameOnCard(),
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
