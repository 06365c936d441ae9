package carddata

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"math/big"

	"github.com/kioskcert/kioskcert/pkg/mynumber"
	"github.com/kioskcert/kioskcert/pkg/tlv"
)

// Authority signs card certificates the way the card issuing authority does
// when it personalises a card. The project uses it only with test keys (the
// "J-LIS test CA") for the virtual card and for tests; real cards are
// personalised by J-LIS.
type Authority struct {
	KeyID  [KeyIDLen]byte
	Signer crypto.Signer // RSA-2048
}

// IssuerKey returns the trust anchor that verifies this authority's cards.
func (a Authority) IssuerKey() (IssuerKey, error) {
	pub, ok := a.Signer.Public().(*rsa.PublicKey)
	if !ok {
		return IssuerKey{}, fmt.Errorf("carddata: authority key is %T, want RSA", a.Signer.Public())
	}
	return IssuerKey{KeyID: a.KeyID, PublicKey: pub}, nil
}

// Personalize builds the four signed files of one card's input-assist
// application for the given identity, signing the data with apKey and
// certifying apKey with the authority's key. subjectKeyID names apKey.
func (a Authority) Personalize(number string, items FourItems, apKey crypto.Signer, subjectKeyID [KeyIDLen]byte) (Raw, error) {
	if err := mynumber.Validate(number); err != nil {
		return Raw{}, fmt.Errorf("carddata: personalize: %w", err)
	}
	apPub, ok := apKey.Public().(*rsa.PublicKey)
	if !ok || apPub.N.BitLen() != 2048 {
		return Raw{}, fmt.Errorf("carddata: personalize: AP key must be RSA-2048")
	}
	mn := EncodeMyNumber(number)
	fi, err := EncodeFourItems(items)
	if err != nil {
		return Raw{}, err
	}
	sig, err := signData(mn, fi, apKey)
	if err != nil {
		return Raw{}, err
	}
	cert, err := a.certify(apPub, subjectKeyID)
	if err != nil {
		return Raw{}, err
	}
	return Raw{MyNumber: mn, FourItems: fi, Signature: sig, Certificate: cert}, nil
}

// EncodeMyNumber encodes EF 0001: D0 0C and the 12 ASCII digits.
func EncodeMyNumber(number string) []byte {
	return tlv.Encode(TagMyNumber, []byte(number))
}

// EncodeFourItems encodes EF 0002. The DF 21 header holds four big-endian
// 16-bit offsets of the DF 22…DF 25 TLVs, counted from the start of the FF 20
// value. (Verify never relies on them: they are not signed.)
func EncodeFourItems(f FourItems) ([]byte, error) {
	if !f.Sex.valid() {
		return nil, fmt.Errorf("carddata: encode four items: sex %q is not an ISO/IEC 5218 code", byte(f.Sex))
	}
	if !validDate(f.BirthDate) {
		return nil, fmt.Errorf("carddata: encode four items: birth date must be YYYYMMDD")
	}
	items := [][]byte{
		tlv.Encode(TagName, []byte(f.Name)),
		tlv.Encode(TagAddress, []byte(f.Address)),
		tlv.Encode(TagBirthDate, []byte(f.BirthDate)),
		tlv.Encode(TagSex, []byte{byte(f.Sex)}),
	}
	header := make([]byte, 8)
	off := 2 + 1 + 8 // DF 21 08 <8 bytes>
	for i, it := range items {
		header[2*i], header[2*i+1] = byte(off>>8), byte(off)
		off += len(it)
	}
	value := tlv.Encode(TagOffsets, header)
	for _, it := range items {
		value = append(value, it...)
	}
	if len(value) > tlv.MaxLength {
		return nil, fmt.Errorf("carddata: encode four items: %d bytes is too long for the card", len(value))
	}
	return tlv.Encode(TagFourItems, value), nil
}

func signData(myNumberEF, fourItemsEF []byte, apKey crypto.Signer) ([]byte, error) {
	mn, err := myNumberTLV(myNumberEF)
	if err != nil {
		return nil, err
	}
	_, signed, err := fourItemsParts(fourItemsEF)
	if err != nil {
		return nil, err
	}
	h1 := sha256.Sum256(mn.Raw)
	h2 := sha256.Sum256(signed)
	value := append(tlv.Encode(TagMyNumberHash, h1[:]), tlv.Encode(TagFourItemsHash, h2[:])...)
	digest := sha256.Sum256(value)
	sig, err := apKey.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("carddata: sign card data: %w", err)
	}
	value = append(value, tlv.Encode(TagDataSignature, sig)...)
	return tlv.Encode(TagSignatureFile, value), nil
}

func (a Authority) certify(apPub *rsa.PublicKey, subjectKeyID [KeyIDLen]byte) ([]byte, error) {
	body := append([]byte(nil), a.KeyID[:]...)
	body = append(body, subjectKeyID[:]...)
	body = append(body, tlv.Encode(TagRSAExponent, big.NewInt(int64(apPub.E)).Bytes())...)
	body = append(body, tlv.Encode(TagRSAModulus, apPub.N.FillBytes(make([]byte, SignatureLen)))...)
	if len(body) != certBodyLen {
		return nil, fmt.Errorf("carddata: certificate body is %d bytes, want %d (exponent must be 3 bytes)", len(body), certBodyLen)
	}
	digest := sha256.Sum256(body)
	sig, err := a.Signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("carddata: sign card certificate: %w", err)
	}
	value := append(tlv.Encode(TagCertBody, body), tlv.Encode(TagCertSignature, sig)...)
	return tlv.Encode(TagCVCertificate, value), nil
}
