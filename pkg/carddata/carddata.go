// Package carddata holds the data of the My Number card's card-info
// input-assist application (券面事項入力補助AP): the raw elementary files as
// read from the chip, their parsed fields, and the verification of the
// issuing authority's signatures over them.
//
// Both sides use it: the kiosk verifies locally for a fast rejection, and the
// issuance center verifies again, authoritatively, because it cannot trust a
// kiosk's word. The center builds without cgo, so nothing here touches PC/SC.
//
// # What is signed (the interpretation this project fixes)
//
// Public readers agree on the layout but are silent on a few bytes. This
// project fixes them here, in one place, and the virtual card signs exactly
// what Verify checks:
//
//   - EF 0001 (My Number) holds the TLV D0 0C <12 ASCII digits>, possibly
//     followed by padding. DF 31 in EF 0003 is SHA-256 over that TLV's
//     complete encoding (tag, length and the 12 digits: 14 bytes), without
//     padding.
//   - EF 0002 (four items) holds FF 20 <len> { DF 21 <8-byte offsets header>,
//     DF 22 name, DF 23 address, DF 24 birth date, DF 25 sex }. DF 32 is
//     SHA-256 over the bytes after the DF 21 element up to the end of the
//     FF 20 value, i.e. the concatenated DF 22…DF 25 TLVs. The DF 21 header is
//     not covered by any signature, so it is never used to locate the items:
//     they are found by tag.
//   - EF 0003 holds FF 30 <len> { DF 31 <32>, DF 32 <32>, DF 33 <256> }. DF 33
//     is an RSA PKCS#1 v1.5 SHA-256 signature, by the card's AP key, over the
//     first 70 bytes of the FF 30 value: the complete DF 31 and DF 32 TLVs.
//   - EF 0004 holds the card-verifiable certificate 7F 21 <len> { 5F 4E <297>,
//     5F 37 <256> }. The 5F 4E value is a 16-byte issuer key ID, a 16-byte
//     subject key ID, then the AP public key as TLVs 10 (public exponent) and
//     11 (modulus). 5F 37 is an RSA PKCS#1 v1.5 SHA-256 signature by the
//     issuing authority (J-LIS) over the 5F 4E value (the 297 bytes, without
//     tag and length).
//
// A change to any byte of My Number or of the four items therefore changes a
// hash; a change to a hash breaks DF 33; a change to the AP key breaks 5F 37;
// and the issuer key is chosen only among configured trust anchors.
//
// What this does not prove: that the card is present. Static data can be
// copied; the card's internal authentication is a planned hardening step.
package carddata

import (
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"unicode/utf8"

	"github.com/kioskcert/kioskcert/pkg/mynumber"
	"github.com/kioskcert/kioskcert/pkg/tlv"
)

// AID is the application identifier of the card-info input-assist
// application (券面事項入力補助AP).
var AID = []byte{0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08}

// Elementary file identifiers inside the input-assist application.
const (
	EFMyNumber    uint16 = 0x0001 // My Number (PIN-protected)
	EFFourItems   uint16 = 0x0002 // name, address, birth date, sex (PIN-protected)
	EFSignature   uint16 = 0x0003 // hashes and the AP key's signature (PIN-protected)
	EFCertificate uint16 = 0x0004 // card-verifiable certificate of the AP key
	EFAPInfo      uint16 = 0x0005 // application information
	EFPIN         uint16 = 0x0011 // the 4-digit PIN's reference data
)

// TLV tags of the input-assist application's files.
const (
	TagMyNumber      tlv.Tag = 0xD0
	TagFourItems     tlv.Tag = 0xFF20
	TagOffsets       tlv.Tag = 0xDF21
	TagName          tlv.Tag = 0xDF22
	TagAddress       tlv.Tag = 0xDF23
	TagBirthDate     tlv.Tag = 0xDF24
	TagSex           tlv.Tag = 0xDF25
	TagSignatureFile tlv.Tag = 0xFF30
	TagMyNumberHash  tlv.Tag = 0xDF31
	TagFourItemsHash tlv.Tag = 0xDF32
	TagDataSignature tlv.Tag = 0xDF33
	TagCVCertificate tlv.Tag = 0x7F21
	TagCertBody      tlv.Tag = 0x5F4E
	TagCertSignature tlv.Tag = 0x5F37
	TagRSAExponent   tlv.Tag = 0x10
	TagRSAModulus    tlv.Tag = 0x11
)

// Sizes fixed by the card's layout.
const (
	KeyIDLen     = 16
	HashLen      = sha256.Size
	SignatureLen = 256 // RSA-2048
	certBodyLen  = 297
	signedLen    = 70 // DF 31 and DF 32 TLVs at the start of the FF 30 value
)

// Sex is the ISO/IEC 5218 code stored in DF 25.
type Sex byte

// ISO/IEC 5218 codes.
const (
	SexNotKnown      Sex = '0'
	SexMale          Sex = '1'
	SexFemale        Sex = '2'
	SexNotApplicable Sex = '9'
)

func (s Sex) valid() bool {
	return s == SexNotKnown || s == SexMale || s == SexFemale || s == SexNotApplicable
}

// Raw holds the input-assist application's files exactly as read from the
// chip. It is what the kiosk sends to the center: the center re-parses and
// re-verifies these bytes rather than trusting parsed fields.
type Raw struct {
	MyNumber    []byte `json:"myNumber"`    // EF 0001
	FourItems   []byte `json:"fourItems"`   // EF 0002
	Signature   []byte `json:"signature"`   // EF 0003
	Certificate []byte `json:"certificate"` // EF 0004
}

// Digest is SHA-256 over the four files, each prefixed by its 4-byte
// big-endian length, in EF order. It names one card read without carrying
// personal data, and binds a certificate to the card data that asked for it.
func (r Raw) Digest() [32]byte {
	h := sha256.New()
	for _, b := range [][]byte{r.MyNumber, r.FourItems, r.Signature, r.Certificate} {
		n := len(b)
		h.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		h.Write(b)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Wipe overwrites the raw bytes in place so that no copy of personal data
// outlives the session that read it.
func (r *Raw) Wipe() {
	for _, b := range [][]byte{r.MyNumber, r.FourItems, r.Signature, r.Certificate} {
		clear(b)
	}
	*r = Raw{}
}

// FourItems are the four basic items (基本4情報) printed on the card.
type FourItems struct {
	Name      string // DF 22, UTF-8
	Address   string // DF 23, UTF-8
	BirthDate string // DF 24, YYYYMMDD
	Sex       Sex    // DF 25, ISO/IEC 5218
}

// Data is the verified content of one card read.
type Data struct {
	MyNumber  string
	FourItems FourItems
	// IssuerKeyID names the trust anchor that vouched for the card's AP key.
	IssuerKeyID [KeyIDLen]byte
}

// Parse and verification errors. Verify wraps them with detail; test with errors.Is.
var (
	// ErrMalformed means a file does not have the layout of the input-assist AP.
	ErrMalformed = errors.New("carddata: malformed card data")
	// ErrMyNumberHash means the My Number read does not match DF 31.
	ErrMyNumberHash = errors.New("carddata: My Number does not match its signed hash")
	// ErrFourItemsHash means the four items read do not match DF 32.
	ErrFourItemsHash = errors.New("carddata: four items do not match their signed hash")
	// ErrUnknownIssuer means the certificate names an issuer key that is not a configured trust anchor.
	ErrUnknownIssuer = errors.New("carddata: certificate issuer key is not trusted")
	// ErrCertificateSignature means the issuing authority's signature over the AP key is invalid.
	ErrCertificateSignature = errors.New("carddata: certificate signature is invalid")
	// ErrDataSignature means the AP key's signature over the hashes is invalid.
	ErrDataSignature = errors.New("carddata: data signature is invalid")
)

// ParseMyNumber extracts the 12 digits from EF 0001. It checks the format and
// the check digit; errors never contain the number.
func ParseMyNumber(ef []byte) (string, error) {
	e, err := myNumberTLV(ef)
	if err != nil {
		return "", err
	}
	n := string(e.Value)
	if err := mynumber.Validate(n); err != nil {
		return "", fmt.Errorf("%w: EF 0001: %w", ErrMalformed, err)
	}
	return n, nil
}

func myNumberTLV(ef []byte) (tlv.Element, error) {
	e, err := tlv.ParseOne(ef)
	if err != nil {
		return tlv.Element{}, fmt.Errorf("%w: EF 0001: %w", ErrMalformed, err)
	}
	if e.Tag != TagMyNumber || len(e.Value) != 12 {
		return tlv.Element{}, fmt.Errorf("%w: EF 0001: want %s with 12 bytes, got %s with %d", ErrMalformed, TagMyNumber, e.Tag, len(e.Value))
	}
	return e, nil
}

// ParseFourItems extracts the four items from EF 0002.
func ParseFourItems(ef []byte) (FourItems, error) {
	_, signed, err := fourItemsParts(ef)
	if err != nil {
		return FourItems{}, err
	}
	els, err := tlv.ParseAll(signed)
	if err != nil {
		return FourItems{}, fmt.Errorf("%w: EF 0002: %w", ErrMalformed, err)
	}
	want := []tlv.Tag{TagName, TagAddress, TagBirthDate, TagSex}
	if len(els) != len(want) {
		return FourItems{}, fmt.Errorf("%w: EF 0002: want 4 items after DF 21, got %d", ErrMalformed, len(els))
	}
	for i, e := range els {
		if e.Tag != want[i] {
			return FourItems{}, fmt.Errorf("%w: EF 0002: item %d is %s, want %s", ErrMalformed, i+1, e.Tag, want[i])
		}
	}
	f := FourItems{
		Name:      string(els[0].Value),
		Address:   string(els[1].Value),
		BirthDate: string(els[2].Value),
	}
	if !utf8.ValidString(f.Name) || f.Name == "" {
		return FourItems{}, fmt.Errorf("%w: EF 0002: name is empty or not UTF-8", ErrMalformed)
	}
	if !utf8.ValidString(f.Address) {
		return FourItems{}, fmt.Errorf("%w: EF 0002: address is not UTF-8", ErrMalformed)
	}
	if !validDate(f.BirthDate) {
		return FourItems{}, fmt.Errorf("%w: EF 0002: birth date is not YYYYMMDD", ErrMalformed)
	}
	if len(els[3].Value) != 1 || !Sex(els[3].Value[0]).valid() {
		return FourItems{}, fmt.Errorf("%w: EF 0002: sex is not an ISO/IEC 5218 code", ErrMalformed)
	}
	f.Sex = Sex(els[3].Value[0])
	return f, nil
}

// fourItemsParts splits EF 0002 into the DF 21 element and the signed bytes after it.
func fourItemsParts(ef []byte) (header tlv.Element, signed []byte, err error) {
	outer, err := tlv.ParseOne(ef)
	if err != nil {
		return tlv.Element{}, nil, fmt.Errorf("%w: EF 0002: %w", ErrMalformed, err)
	}
	if outer.Tag != TagFourItems {
		return tlv.Element{}, nil, fmt.Errorf("%w: EF 0002: want %s, got %s", ErrMalformed, TagFourItems, outer.Tag)
	}
	header, rest, err := tlv.Next(outer.Value)
	if err != nil {
		return tlv.Element{}, nil, fmt.Errorf("%w: EF 0002: %w", ErrMalformed, err)
	}
	if header.Tag != TagOffsets || len(header.Value) != 8 {
		return tlv.Element{}, nil, fmt.Errorf("%w: EF 0002: want %s with 8 bytes first", ErrMalformed, TagOffsets)
	}
	return header, rest, nil
}

func validDate(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < 8; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	m := int(s[4]-'0')*10 + int(s[5]-'0')
	d := int(s[6]-'0')*10 + int(s[7]-'0')
	return m >= 1 && m <= 12 && d >= 1 && d <= 31
}

// SignatureFile is the parsed EF 0003.
type SignatureFile struct {
	MyNumberHash  []byte
	FourItemsHash []byte
	Signature     []byte
	// Signed is the 70 bytes DF 33 covers: the DF 31 and DF 32 TLVs.
	Signed []byte
}

// ParseSignatureFile parses EF 0003.
func ParseSignatureFile(ef []byte) (SignatureFile, error) {
	outer, err := tlv.ParseOne(ef)
	if err != nil {
		return SignatureFile{}, fmt.Errorf("%w: EF 0003: %w", ErrMalformed, err)
	}
	if outer.Tag != TagSignatureFile {
		return SignatureFile{}, fmt.Errorf("%w: EF 0003: want %s, got %s", ErrMalformed, TagSignatureFile, outer.Tag)
	}
	els, err := tlv.ParseAll(outer.Value)
	if err != nil {
		return SignatureFile{}, fmt.Errorf("%w: EF 0003: %w", ErrMalformed, err)
	}
	if len(els) != 3 || els[0].Tag != TagMyNumberHash || els[1].Tag != TagFourItemsHash || els[2].Tag != TagDataSignature {
		return SignatureFile{}, fmt.Errorf("%w: EF 0003: want DF 31, DF 32, DF 33", ErrMalformed)
	}
	if len(els[0].Value) != HashLen || len(els[1].Value) != HashLen || len(els[2].Value) != SignatureLen {
		return SignatureFile{}, fmt.Errorf("%w: EF 0003: wrong hash or signature size", ErrMalformed)
	}
	return SignatureFile{
		MyNumberHash:  els[0].Value,
		FourItemsHash: els[1].Value,
		Signature:     els[2].Value,
		Signed:        outer.Value[:signedLen],
	}, nil
}

// Certificate is the parsed card-verifiable certificate of EF 0004.
type Certificate struct {
	IssuerKeyID  [KeyIDLen]byte
	SubjectKeyID [KeyIDLen]byte
	PublicKey    *rsa.PublicKey
	// Body is the 5F 4E value the issuer's signature covers.
	Body      []byte
	Signature []byte
}

// ParseCertificate parses EF 0004.
func ParseCertificate(ef []byte) (Certificate, error) {
	outer, err := tlv.ParseOne(ef)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: EF 0004: %w", ErrMalformed, err)
	}
	if outer.Tag != TagCVCertificate {
		return Certificate{}, fmt.Errorf("%w: EF 0004: want %s, got %s", ErrMalformed, TagCVCertificate, outer.Tag)
	}
	els, err := tlv.ParseAll(outer.Value)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: EF 0004: %w", ErrMalformed, err)
	}
	if len(els) != 2 || els[0].Tag != TagCertBody || els[1].Tag != TagCertSignature {
		return Certificate{}, fmt.Errorf("%w: EF 0004: want 5F 4E then 5F 37", ErrMalformed)
	}
	body, sig := els[0].Value, els[1].Value
	if len(body) != certBodyLen || len(sig) != SignatureLen {
		return Certificate{}, fmt.Errorf("%w: EF 0004: body %d bytes, signature %d bytes", ErrMalformed, len(body), len(sig))
	}
	var c Certificate
	copy(c.IssuerKeyID[:], body[:KeyIDLen])
	copy(c.SubjectKeyID[:], body[KeyIDLen:2*KeyIDLen])
	keyEls, err := tlv.ParseAll(body[2*KeyIDLen:])
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: EF 0004 public key: %w", ErrMalformed, err)
	}
	exp, err1 := tlv.Find(keyEls, TagRSAExponent)
	mod, err2 := tlv.Find(keyEls, TagRSAModulus)
	if err1 != nil || err2 != nil || len(keyEls) != 2 {
		return Certificate{}, fmt.Errorf("%w: EF 0004: public key needs exactly tags 10 and 11", ErrMalformed)
	}
	pub, err := rsaKey(exp.Value, mod.Value)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: EF 0004: %w", ErrMalformed, err)
	}
	c.PublicKey, c.Body, c.Signature = pub, body, sig
	return c, nil
}

func rsaKey(exp, mod []byte) (*rsa.PublicKey, error) {
	if len(mod) != SignatureLen || mod[0] == 0 {
		return nil, errors.New("modulus is not 2048 bits")
	}
	if len(exp) == 0 || len(exp) > 4 || exp[0] == 0 {
		return nil, errors.New("exponent has a bad size")
	}
	e := 0
	for _, b := range exp {
		e = e<<8 | int(b)
	}
	if e < 3 || e%2 == 0 {
		return nil, errors.New("exponent is not an odd value of at least 3")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(mod), E: e}, nil
}
