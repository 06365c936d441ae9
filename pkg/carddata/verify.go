package carddata

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// IssuerKey is one trust anchor: a public key of the card issuing authority
// (J-LIS) and the 16-byte key ID that card certificates name it by. Real
// cards have been issued under more than one key generation, so a Verifier
// holds several.
type IssuerKey struct {
	KeyID     [KeyIDLen]byte
	PublicKey *rsa.PublicKey
}

// Verifier checks card data against a fixed set of issuing-authority keys.
// It is safe for concurrent use.
type Verifier struct {
	keys map[[KeyIDLen]byte]*rsa.PublicKey
}

// NewVerifier returns a Verifier trusting exactly the given keys.
func NewVerifier(keys ...IssuerKey) (*Verifier, error) {
	v := &Verifier{keys: make(map[[KeyIDLen]byte]*rsa.PublicKey, len(keys))}
	for _, k := range keys {
		if k.PublicKey == nil || k.PublicKey.N.BitLen() != 2048 {
			return nil, fmt.Errorf("carddata: issuer key %X is not RSA-2048", k.KeyID)
		}
		if _, dup := v.keys[k.KeyID]; dup {
			return nil, fmt.Errorf("carddata: issuer key ID %X configured twice", k.KeyID)
		}
		v.keys[k.KeyID] = k.PublicKey
	}
	if len(v.keys) == 0 {
		return nil, errors.New("carddata: no issuing-authority keys configured; the verifier would trust nothing")
	}
	return v, nil
}

// Verify parses raw and checks the whole chain: the certificate against a
// trust anchor chosen by its issuer key ID, the data signature with the
// certified AP key, and both hashes against the data actually read. Only
// after every check passes are the parsed fields returned.
func (v *Verifier) Verify(raw Raw) (*Data, error) {
	// 1. The AP key must be certified by a trusted issuer. The issuer key ID
	//    only selects among anchors we already trust; it grants nothing itself.
	cert, err := ParseCertificate(raw.Certificate)
	if err != nil {
		return nil, err
	}
	issuer, ok := v.keys[cert.IssuerKeyID]
	if !ok {
		return nil, fmt.Errorf("%w: key ID %X", ErrUnknownIssuer, cert.IssuerKeyID)
	}
	bodyHash := sha256.Sum256(cert.Body)
	if err := rsa.VerifyPKCS1v15(issuer, crypto.SHA256, bodyHash[:], cert.Signature); err != nil {
		return nil, fmt.Errorf("%w (issuer key %X)", ErrCertificateSignature, cert.IssuerKeyID)
	}

	// 2. The hashes must be signed by that AP key.
	sf, err := ParseSignatureFile(raw.Signature)
	if err != nil {
		return nil, err
	}
	signedHash := sha256.Sum256(sf.Signed)
	if err := rsa.VerifyPKCS1v15(cert.PublicKey, crypto.SHA256, signedHash[:], sf.Signature); err != nil {
		return nil, ErrDataSignature
	}

	// 3. The data read must match the signed hashes.
	mn, err := myNumberTLV(raw.MyNumber)
	if err != nil {
		return nil, err
	}
	if h := sha256.Sum256(mn.Raw); subtle.ConstantTimeCompare(h[:], sf.MyNumberHash) != 1 {
		return nil, ErrMyNumberHash
	}
	_, signed, err := fourItemsParts(raw.FourItems)
	if err != nil {
		return nil, err
	}
	if h := sha256.Sum256(signed); subtle.ConstantTimeCompare(h[:], sf.FourItemsHash) != 1 {
		return nil, ErrFourItemsHash
	}

	// 4. Only now parse the fields for use.
	number, err := ParseMyNumber(raw.MyNumber)
	if err != nil {
		return nil, err
	}
	items, err := ParseFourItems(raw.FourItems)
	if err != nil {
		return nil, err
	}
	return &Data{MyNumber: number, FourItems: items, IssuerKeyID: cert.IssuerKeyID}, nil
}

// PEM block type and header used for issuing-authority keys in trust files.
const (
	PEMTypeIssuerKey = "PUBLIC KEY"
	PEMHeaderKeyID   = "Key-Id"
)

// ParseIssuerKeys reads trust anchors from PEM: one "PUBLIC KEY" block
// (PKIX) per key, each with a "Key-Id: <32 hex digits>" header.
func ParseIssuerKeys(pemData []byte) ([]IssuerKey, error) {
	var keys []IssuerKey
	rest := pemData
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != PEMTypeIssuerKey {
			return nil, fmt.Errorf("carddata: trust file holds a %q block; want %q", block.Type, PEMTypeIssuerKey)
		}
		id, err := hex.DecodeString(block.Headers[PEMHeaderKeyID])
		if err != nil || len(id) != KeyIDLen {
			return nil, fmt.Errorf("carddata: trust file key %d: header %s must be %d hex bytes", len(keys)+1, PEMHeaderKeyID, KeyIDLen)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("carddata: trust file key %X: %w", id, err)
		}
		rsaPub, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("carddata: trust file key %X is not RSA", id)
		}
		var k IssuerKey
		copy(k.KeyID[:], id)
		k.PublicKey = rsaPub
		keys = append(keys, k)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("carddata: trust file has trailing data that is not PEM")
	}
	if len(keys) == 0 {
		return nil, errors.New("carddata: trust file holds no keys")
	}
	return keys, nil
}

// MarshalIssuerKey encodes one trust anchor as PEM for a trust file.
func MarshalIssuerKey(k IssuerKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("carddata: encode issuer key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{
		Type:    PEMTypeIssuerKey,
		Headers: map[string]string{PEMHeaderKeyID: fmt.Sprintf("%X", k.KeyID)},
		Bytes:   der,
	}), nil
}
