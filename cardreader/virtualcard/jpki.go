package virtualcard

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"sync"
	"time"
)

// The public-key application's certificates. Outside tools that check for
// a My Number card (jpki/myna) select the JPKI application, read its token
// and its certificates, so the virtual card carries them: an authentication
// certificate (EF 000A) and a signing certificate (EF 0001, behind the
// signature password), each issued by its own test CA (EF 000B, EF 0002).
//
// They are test certificates and prove nothing: real cards hold RSA-2048
// keys certified by J-LIS; these hold P-256 keys (the virtual card never
// signs with them, and tests make many cards) and carry no personal data:
// a real signing certificate names its holder, this one does not.

var (
	jpkiCAOnce sync.Once
	jpkiCAs    [2]jpkiCA // authentication, signing
	jpkiCAErr  error
)

type jpkiCA struct {
	der []byte
	crt *x509.Certificate
	key crypto.Signer
}

func makeJPKICAs() {
	for i, name := range []string{"kioskcert virtual JPKI CA for user authentication", "kioskcert virtual JPKI CA for digital signature"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			jpkiCAErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(int64(i + 1)),
			Subject:               pkix.Name{Country: []string{"JP"}, Organization: []string{"JPKI"}, OrganizationalUnit: []string{"kioskcert test"}, CommonName: name},
			NotBefore:             time.Now().Add(-24 * time.Hour),
			NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			jpkiCAErr = err
			return
		}
		crt, err := x509.ParseCertificate(der)
		if err != nil {
			jpkiCAErr = err
			return
		}
		jpkiCAs[i] = jpkiCA{der: der, crt: crt, key: key}
	}
}

// jpkiCertificates makes one card's four certificate EFs. Failing to make
// them (no entropy) leaves the EFs out: SELECT then answers 6A 82.
func jpkiCertificates() map[uint16][]byte {
	jpkiCAOnce.Do(makeJPKICAs)
	if jpkiCAErr != nil {
		return nil
	}
	out := map[uint16][]byte{EFJPKIAuthCACert: jpkiCAs[0].der, EFJPKISignCACert: jpkiCAs[1].der}
	for i, ef := range []uint16{EFJPKIAuthCert, EFJPKISignCert} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil
		}
		serial := make([]byte, 8)
		rand.Read(serial)
		usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		ku := x509.KeyUsageDigitalSignature
		if i == 1 {
			usage = nil
			ku |= x509.KeyUsageContentCommitment
		}
		tmpl := &x509.Certificate{
			SerialNumber: new(big.Int).SetBytes(serial),
			Subject:      pkix.Name{Country: []string{"JP"}, CommonName: "VIRTUAL" + hex.EncodeToString(serial)},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(5 * 365 * 24 * time.Hour),
			KeyUsage:     ku,
			ExtKeyUsage:  usage,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, jpkiCAs[i].crt, &key.PublicKey, jpkiCAs[i].key)
		if err != nil {
			return nil
		}
		out[ef] = der
	}
	return out
}
