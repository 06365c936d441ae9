// Package vdsnc issues and verifies the ICAO Visible Digital Seal for
// non-constrained environments (VDS-NC) proof of vaccination: the second QR
// code on the overseas certificate, following ICAO's "Guidelines: Visible
// Digital Seals ('VDS-NC') for Travel-Related Public Health Proofs".
//
// # The document
//
//	{"data":{"hdr":{"t":"icao.vacc","v":1,"is":"JPN"},
//	         "msg":{"uvci":"…","pid":{"n":"SHIKEN HANAKO","dob":"1985-04-02","sex":"F","i":"TK1234567"},
//	                "ve":[{"des":"XM0GQ8","nam":"Comirnaty","dis":"RA01.0",
//	                       "vd":[{"dvc":"2021-06-14","seq":1,"ctr":"JPN","adm":"MHLW_Gov_of_Japan","lot":"FA5765"}]}]}},
//	 "sig":{"alg":"ES256","cer":"<padded base64url DER>","sigvl":"<padded base64url r‖s>"}}
//
// Build makes data from an overseas *certificate.Certificate: uvci is the
// certificate ID, pid.n the passport name in travel-document form (see
// TravelName), sex the ISO/IEC 5218 digit mapped to F, M or X, and one ve
// entry per product with its doses in order. Sign signs the RFC 8785 (JCS)
// canonical form of data with an ECDSA P-256 crypto.Signer and attaches the
// barcode signer's certificate. The output is ASCII: names must already be
// romanized, and anything else is refused.
//
// # Certificates
//
// A barcode signer certificate chains to a Country Signing CA (CSCA) and
// carries the extended key usage 2.23.136.1.1.14.2 and the ICAO document
// type list extension (2.23.136.1.1.6.2) naming "NV" (proof of vaccination).
// CreateCSCA and CreateBarcodeSigner make such certificates for the demo and
// the tests; production keys belong to the national PKI.
//
// # Verifying
//
// Verify parses the JSON, checks the header, decodes and chain-validates the
// signer certificate against trusted CSCAs at a given time (EKU and document
// type included), then checks the signature over JCS(data) exactly as it was
// received, so fields this package does not model still count.
//
// Everything in a document is personal data; nothing here logs, and error
// messages name fields, never values.
package vdsnc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
)

// Header values of a proof of vaccination.
const (
	TypeVaccination = "icao.vacc"
	Version         = 1
	// IssuingState is the ICAO 9303 code of the issuing state.
	IssuingState = "JPN"
	// AdministeringAuthority fills ve.vd.adm ("name/code of administering
	// centre or a health authority responsible for the vaccination event",
	// ≤ 20 characters). Japan's own certificates name the Ministry of
	// Health, Labour and Welfare there, as this value does.
	AdministeringAuthority = "MHLW_Gov_of_Japan"
)

// Field limits from the guidelines.
const (
	MaxUVCILen     = 12
	MaxNameLen     = 39
	MaxPassportLen = 11
	MaxAILen       = 24
	MaxAdmLen      = 20
	MaxLotLen      = 20
	// MaxDocumentSize bounds what Verify reads: a version 40 QR code holds
	// at most 2953 bytes.
	MaxDocumentSize = 2953
	// MaxQRBytes is what Sign accepts: the byte-mode capacity of a version 40
	// QR code at error correction M, the level the guidelines ask for.
	MaxQRBytes = 2331
)

// Errors, grouped by operation. Every error this package returns wraps one
// of them.
var (
	// Building and signing.
	ErrCertificate = errors.New("vdsnc: certificate cannot be expressed as a VDS-NC")
	ErrNotASCII    = errors.New("vdsnc: text must be ASCII (romanize names before issuing)")
	ErrKey         = errors.New("vdsnc: signing key must be an ECDSA P-256 crypto.Signer matching the signer certificate")
	ErrPKI         = errors.New("vdsnc: cannot create certificate")
	ErrTooLarge    = errors.New("vdsnc: document too large for one QR code at error correction M")

	// Verifying.
	ErrFormat      = errors.New("vdsnc: malformed document")
	ErrHeader      = errors.New("vdsnc: not an ICAO proof of vaccination (hdr)")
	ErrSignerCert  = errors.New("vdsnc: signer certificate not acceptable")
	ErrUntrusted   = errors.New("vdsnc: signer certificate does not chain to a trusted CSCA")
	ErrSignature   = errors.New("vdsnc: signature does not verify")
	ErrContentRule = errors.New("vdsnc: content breaks a VDS-NC field rule")
)

// Document is a complete VDS-NC: signed data and its signature.
type Document struct {
	Data Data      `json:"data"`
	Sig  Signature `json:"sig"`
}

// Data is the signed part.
type Data struct {
	Hdr Header  `json:"hdr"`
	Msg Message `json:"msg"`
}

// Header identifies the use case.
type Header struct {
	T  string `json:"t"`
	V  int    `json:"v"`
	Is string `json:"is"`
}

// Message is the proof of vaccination.
type Message struct {
	UVCI string        `json:"uvci"`
	Pid  Person        `json:"pid"`
	Ve   []Vaccination `json:"ve"`
}

// Person identifies the holder.
type Person struct {
	N   string `json:"n"`
	Dob string `json:"dob,omitempty"`
	Sex string `json:"sex,omitempty"`
	I   string `json:"i,omitempty"`
	Ai  string `json:"ai,omitempty"`
}

// Vaccination groups the doses of one product.
type Vaccination struct {
	Des string  `json:"des"`
	Nam string  `json:"nam"`
	Dis string  `json:"dis"`
	Vd  []Event `json:"vd"`
}

// Event is one dose.
type Event struct {
	Dvc string `json:"dvc"`
	Seq int    `json:"seq"`
	Ctr string `json:"ctr"`
	Adm string `json:"adm,omitempty"`
	Lot string `json:"lot"`
}

// Signature carries the algorithm, the signer certificate (base64url DER)
// and the signature value (base64url r ‖ s). Sign writes both padded;
// Verify accepts them with or without padding.
type Signature struct {
	Alg   string `json:"alg"`
	Cer   string `json:"cer"`
	Sigvl string `json:"sigvl"`
}

// b64 decodes (after the padding is trimmed); b64Padded encodes. The
// guidelines say base64url without saying whether to pad, and deployed
// verifiers split: PathCheck's vds-sdk turns cer back into a PEM block and
// refuses a body whose padding is missing, while every decoder accepts the
// padded form. So the signer pads.
var (
	b64       = base64.RawURLEncoding
	b64Padded = base64.URLEncoding
)

// Build makes the data of a proof of vaccination from an overseas
// certificate. Doses are grouped by product in the order the products first
// appear; each group keeps its doses in dose order.
func Build(c *certificate.Certificate) (*Data, error) {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s %s", ErrCertificate, field, why) }
	if c == nil || c.Kind != certificate.Overseas {
		return nil, bad("kind", "must be overseas")
	}
	if c.ID == "" || len(c.ID) > MaxUVCILen {
		return nil, bad("id", "must be 1-12 characters")
	}
	name, err := TravelName(c.Holder.RomanFamily, c.Holder.RomanGiven)
	if err != nil {
		return nil, err
	}
	sex, err := SexCode(c.Holder.Sex)
	if err != nil {
		return nil, err
	}
	if c.Holder.PassportNumber == "" || len(c.Holder.PassportNumber) > MaxPassportLen {
		return nil, bad("holder.passportNumber", "must be 1-11 characters")
	}
	if _, err := time.Parse(time.DateOnly, c.Holder.BirthDate); err != nil {
		return nil, bad("holder.birthDate", "must be YYYY-MM-DD")
	}
	if len(c.Doses) == 0 {
		return nil, bad("doses", "are empty")
	}
	d := &Data{
		Hdr: Header{T: TypeVaccination, V: Version, Is: IssuingState},
		Msg: Message{UVCI: c.ID, Pid: Person{N: name, Dob: c.Holder.BirthDate, Sex: sex, I: c.Holder.PassportNumber}},
	}
	group := map[string]int{}
	for i, dose := range c.Doses {
		p, err := vaccine.Lookup(dose.Product)
		if err != nil {
			return nil, fmt.Errorf("%w: doses[%d]: %w", ErrCertificate, i, err)
		}
		if _, err := time.Parse(time.DateOnly, dose.Date); err != nil {
			return nil, bad(fmt.Sprintf("doses[%d].date", i), "must be YYYY-MM-DD")
		}
		if dose.Lot == "" || len(dose.Lot) > MaxLotLen {
			return nil, bad(fmt.Sprintf("doses[%d].lot", i), "must be 1-20 characters")
		}
		if len(dose.Country) != 3 {
			return nil, bad(fmt.Sprintf("doses[%d].country", i), "must be a three-letter code")
		}
		g, ok := group[p.Code]
		if !ok {
			g = len(d.Msg.Ve)
			group[p.Code] = g
			d.Msg.Ve = append(d.Msg.Ve, Vaccination{Des: p.ICD11, Nam: p.Name, Dis: vaccine.DiseaseICD11})
		}
		d.Msg.Ve[g].Vd = append(d.Msg.Ve[g].Vd, Event{
			Dvc: dose.Date, Seq: dose.Number, Ctr: dose.Country, Adm: AdministeringAuthority, Lot: dose.Lot,
		})
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	return d, nil
}

// check enforces the field rules both Build and Verify rely on.
func (d *Data) check() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s %s", ErrContentRule, field, why) }
	m := d.Msg
	switch {
	case m.UVCI == "" || len(m.UVCI) > MaxUVCILen:
		return bad("msg.uvci", "must be 1-12 characters")
	case m.Pid.N == "" || len(m.Pid.N) > MaxNameLen:
		return bad("msg.pid.n", "must be 1-39 characters")
	case len(m.Pid.I) > MaxPassportLen:
		return bad("msg.pid.i", "must be at most 11 characters")
	case len(m.Pid.Ai) > MaxAILen:
		return bad("msg.pid.ai", "must be at most 24 characters")
	case m.Pid.Sex != "" && m.Pid.Sex != "F" && m.Pid.Sex != "M" && m.Pid.Sex != "X":
		return bad("msg.pid.sex", "must be F, M or X")
	case len(m.Ve) == 0:
		return bad("msg.ve", "must list at least one vaccination")
	}
	for i, v := range m.Ve {
		if v.Des == "" || len(v.Des) > 6 || v.Nam == "" || len(v.Vd) == 0 {
			return bad(fmt.Sprintf("msg.ve[%d]", i), "needs des (≤ 6), nam and at least one vd")
		}
		for j, e := range v.Vd {
			if e.Dvc == "" || e.Seq < 1 || len(e.Ctr) != 3 || len(e.Adm) > MaxAdmLen || e.Lot == "" || len(e.Lot) > MaxLotLen {
				return bad(fmt.Sprintf("msg.ve[%d].vd[%d]", i, j), "needs dvc, seq ≥ 1, 3-letter ctr, adm ≤ 20 and lot of 1-20")
			}
		}
	}
	return nil
}

// Signer signs documents with one barcode signer key and certificate.
type Signer struct {
	key  crypto.Signer
	pub  *ecdsa.PublicKey
	cert []byte
}

// NewSigner pairs a P-256 signing key with its barcode signer certificate
// (DER). The certificate's key must be the signer's key.
func NewSigner(key crypto.Signer, certDER []byte) (*Signer, error) {
	if key == nil {
		return nil, ErrKey
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, ErrKey
	}
	cert, err := parseSignerCert(certDER)
	if err != nil {
		return nil, err
	}
	if !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: the certificate is for another key", ErrKey)
	}
	return &Signer{key: key, pub: pub, cert: bytes.Clone(certDER)}, nil
}

// Sign returns the signed document as compact ASCII JSON.
func (s *Signer) Sign(d *Data) ([]byte, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	raw, err := marshal(d)
	if err != nil {
		return nil, err
	}
	canon, err := jcs.Transform(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: canonicalizing: %w", ErrCertificate, err)
	}
	digest := sha256.Sum256(canon)
	der, err := s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("vdsnc: signing: %w", err)
	}
	rawSig, err := rawSignature(der)
	if err != nil {
		return nil, err
	}
	// Check our own signature: a signer whose key differs from the
	// certificate's fails here, not at a border.
	if err := verifyRaw(s.pub, digest[:], rawSig); err != nil {
		return nil, fmt.Errorf("%w: the signature does not verify with the certificate's key", ErrKey)
	}
	doc, err := marshal(&Document{Data: *d, Sig: Signature{
		Alg: "ES256", Cer: b64Padded.EncodeToString(s.cert), Sigvl: b64Padded.EncodeToString(rawSig),
	}})
	if err != nil {
		return nil, err
	}
	if len(doc) > MaxQRBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(doc), MaxQRBytes)
	}
	return doc, nil
}

// marshal writes compact JSON and refuses anything that is not ASCII.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	for _, c := range out {
		if c >= 0x80 {
			return nil, ErrNotASCII
		}
	}
	return out, nil
}

// rawSignature converts the ASN.1 signature a crypto.Signer returns into
// the 64-byte r ‖ s the VDS-NC carries.
func rawSignature(der []byte) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R == nil || sig.S == nil ||
		sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || sig.R.BitLen() > 256 || sig.S.BitLen() > 256 {
		return nil, fmt.Errorf("%w: signer returned a malformed ECDSA signature", ErrKey)
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}

func verifyRaw(pub *ecdsa.PublicKey, digest, sig []byte) error {
	if len(sig) != 64 {
		return ErrSignature
	}
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest, r, s) {
		return ErrSignature
	}
	return nil
}
