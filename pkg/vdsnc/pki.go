package vdsnc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Object identifiers from ICAO Doc 9303 part 12 and the VDS-NC guidelines.
var (
	// OIDExtKeyUsageVDSNC is the extended key usage of a VDS-NC barcode
	// signer.
	OIDExtKeyUsageVDSNC = asn1.ObjectIdentifier{2, 23, 136, 1, 1, 14, 2}
	// OIDDocumentTypeList is id-icao-mrtd-security-extensions-documentTypeList.
	OIDDocumentTypeList = asn1.ObjectIdentifier{2, 23, 136, 1, 1, 6, 2}
)

// DocTypeVaccination is the document type of a proof of vaccination.
const DocTypeVaccination = "NV"

// documentTypeListSyntax is, from Doc 9303-12:
//
//	DocumentTypeListSyntax ::= SEQUENCE {
//	    version     DocumentTypeListVersion,   -- INTEGER {v0(0)}
//	    docTypeList SET OF DocumentType }      -- PrintableString(SIZE(1..2))
//
// encoding/asn1 writes a Go string as a PrintableString when every character
// allows it, which CreateBarcodeSigner makes sure of.
type documentTypeListSyntax struct {
	Version     int
	DocTypeList []string `asn1:"set"`
}

// CSCATemplate describes a Country Signing CA certificate.
type CSCATemplate struct {
	CommonName string // e.g. "Japan Test CSCA"
	Country    string // ISO 3166-1 alpha-2, e.g. "JP"
	NotBefore  time.Time
	NotAfter   time.Time
}

// CreateCSCA makes a self-signed CSCA certificate for key and returns its
// DER. key must be an ECDSA P-256 crypto.Signer (file today, HSM later).
// rand supplies the serial number.
func CreateCSCA(rand io.Reader, t CSCATemplate, key crypto.Signer) ([]byte, error) {
	pub, err := p256(key)
	if err != nil {
		return nil, err
	}
	tmpl, err := baseTemplate(rand, t.CommonName, t.Country, t.NotBefore, t.NotAfter, pub)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true // a CSCA signs barcode signers directly
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("%w: CSCA: %w", ErrPKI, err)
	}
	return der, nil
}

// SignerTemplate describes a barcode signer certificate.
type SignerTemplate struct {
	CommonName string // e.g. "Japan Test VDS-NC Signer 1"
	Country    string // must match the CSCA's
	NotBefore  time.Time
	NotAfter   time.Time
	// DocumentTypes defaults to ["NV"].
	DocumentTypes []string
}

// CreateBarcodeSigner makes a barcode signer certificate for pub, issued by
// the CSCA (caDER) with its key caKey, and returns its DER. The certificate
// carries the VDS-NC extended key usage and the document type list.
func CreateBarcodeSigner(rand io.Reader, t SignerTemplate, pub crypto.PublicKey, caDER []byte, caKey crypto.Signer) ([]byte, error) {
	ecPub, ok := pub.(*ecdsa.PublicKey)
	if !ok || ecPub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: signer key must be ECDSA P-256", ErrPKI)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("%w: CSCA: %w", ErrPKI, err)
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("%w: issuer is not a CA", ErrPKI)
	}
	caPub, err := p256(caKey)
	if err != nil {
		return nil, err
	}
	if !caPub.Equal(ca.PublicKey) {
		return nil, fmt.Errorf("%w: CSCA key does not match the CSCA certificate", ErrPKI)
	}
	types := t.DocumentTypes
	if len(types) == 0 {
		types = []string{DocTypeVaccination}
	}
	for _, dt := range types {
		if len(dt) < 1 || len(dt) > 2 || strings.Trim(dt, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			return nil, fmt.Errorf("%w: document types are one or two capital letters", ErrPKI)
		}
	}
	ext, err := asn1.Marshal(documentTypeListSyntax{Version: 0, DocTypeList: types})
	if err != nil {
		return nil, fmt.Errorf("%w: document type list: %w", ErrPKI, err)
	}
	tmpl, err := baseTemplate(rand, t.CommonName, t.Country, t.NotBefore, t.NotAfter, ecPub)
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{OIDExtKeyUsageVDSNC}
	tmpl.ExtraExtensions = []pkix.Extension{{Id: OIDDocumentTypeList, Value: ext}}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand, tmpl, ca, ecPub, caKey)
	if err != nil {
		return nil, fmt.Errorf("%w: barcode signer: %w", ErrPKI, err)
	}
	return der, nil
}

func p256(key crypto.Signer) (*ecdsa.PublicKey, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: key is nil", ErrPKI)
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: key must be ECDSA P-256", ErrPKI)
	}
	return pub, nil
}

func baseTemplate(rand io.Reader, cn, country string, notBefore, notAfter time.Time, pub *ecdsa.PublicKey) (*x509.Certificate, error) {
	if cn == "" || len(country) != 2 || !notAfter.After(notBefore) {
		return nil, fmt.Errorf("%w: needs a common name, a two-letter country and NotAfter after NotBefore", ErrPKI)
	}
	serial := make([]byte, 16)
	if _, err := io.ReadFull(rand, serial); err != nil {
		return nil, fmt.Errorf("%w: serial: %w", ErrPKI, err)
	}
	serial[0] &= 0x7f // positive
	serial[0] |= 0x01 // and never zero
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPKI, err)
	}
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPKI, err)
	}
	// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. SHA-1
	// is fine here: a key identifier, not a signature.
	ski := sha1.Sum(info.PublicKey.Bytes)
	return &x509.Certificate{
		SerialNumber:       new(big.Int).SetBytes(serial),
		Subject:            pkix.Name{CommonName: cn, Country: []string{country}},
		NotBefore:          notBefore,
		NotAfter:           notAfter,
		SubjectKeyId:       ski[:],
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, nil
}

// parseSignerCert parses a barcode signer certificate and checks what a
// VDS-NC signer needs regardless of trust: a P-256 key, the VDS-NC extended
// key usage and "NV" in the document type list.
func parseSignerCert(der []byte) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignerCert, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: key is not ECDSA P-256", ErrSignerCert)
	}
	if !slices.ContainsFunc(cert.UnknownExtKeyUsage, OIDExtKeyUsageVDSNC.Equal) {
		return nil, fmt.Errorf("%w: lacks the VDS-NC extended key usage %v", ErrSignerCert, OIDExtKeyUsageVDSNC)
	}
	types, err := documentTypes(cert)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(types, DocTypeVaccination) {
		return nil, fmt.Errorf("%w: document type list does not include %s", ErrSignerCert, DocTypeVaccination)
	}
	return cert, nil
}

// documentTypes decodes the document type list extension.
func documentTypes(cert *x509.Certificate) ([]string, error) {
	for _, e := range cert.Extensions {
		if !e.Id.Equal(OIDDocumentTypeList) {
			continue
		}
		var dtl documentTypeListSyntax
		rest, err := asn1.Unmarshal(e.Value, &dtl)
		if err != nil || len(rest) != 0 || dtl.Version != 0 {
			return nil, fmt.Errorf("%w: malformed document type list", ErrSignerCert)
		}
		return dtl.DocTypeList, nil
	}
	return nil, fmt.Errorf("%w: lacks the document type list extension %v", ErrSignerCert, OIDDocumentTypeList)
}

// verifyChain checks the signer certificate against trusted CSCAs at time
// at. The extended key usage is checked by parseSignerCert (the x509
// package knows nothing of ICAO's), so the chain is built with
// ExtKeyUsageAny; the document type list, if marked critical, is handled
// here and removed from the unhandled list.
func verifyChain(cert *x509.Certificate, cscas []*x509.Certificate, at time.Time) error {
	if len(cscas) == 0 {
		return fmt.Errorf("%w: no trusted CSCA configured", ErrUntrusted)
	}
	roots := x509.NewCertPool()
	for _, c := range cscas {
		roots.AddCert(c)
	}
	c := *cert
	c.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(c.UnhandledCriticalExtensions), OIDDocumentTypeList.Equal)
	if _, err := c.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: at,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	return nil
}
