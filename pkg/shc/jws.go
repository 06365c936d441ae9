package shc

import (
	"bytes"
	"compress/flate"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Issuer signs health cards for one issuer URL with one key.
type Issuer struct {
	url       string
	signer    crypto.Signer
	pub       *ecdsa.PublicKey
	kid       string
	ridSecret []byte
	signed    atomic.Uint64 // signatures made, for sampled self-checks
}

// SelfCheckEvery is how often Sign verifies its own signature after the
// first one. NewIssuer checks the key once (a signer whose key is not the
// one its public key names — a misconfigured HSM slot — fails there); the
// sampled checks then catch a signer that goes wrong later, at a fraction
// of a verification's cost per card (verifying costs twice a signature).
const SelfCheckEvery = 64

// MinRIDSecretLen is the shortest revocation secret NewIssuer accepts (256
// bits, as the specification recommends).
const MinRIDSecretLen = 32

// NewIssuer checks the issuer URL and key and returns an Issuer. ridSecret
// may be nil, in which case cards carry no rid and can only be revoked by
// retiring the key; otherwise it must be at least 32 bytes.
func NewIssuer(issuerURL string, signer crypto.Signer, ridSecret []byte) (*Issuer, error) {
	if err := checkIssuerURL(issuerURL); err != nil {
		return nil, err
	}
	if signer == nil {
		return nil, ErrKey
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: got %T", ErrKey, signer.Public())
	}
	kid, err := Thumbprint(pub)
	if err != nil {
		return nil, err
	}
	if ridSecret != nil && len(ridSecret) < MinRIDSecretLen {
		return nil, fmt.Errorf("shc: revocation secret must be at least %d bytes", MinRIDSecretLen)
	}
	is := &Issuer{url: issuerURL, signer: signer, pub: pub, kid: kid, ridSecret: bytes.Clone(ridSecret)}
	if _, _, err := is.signDigest(sha256.Sum256([]byte("kioskcert shc key check")), true); err != nil {
		return nil, err
	}
	return is, nil
}

// checkIssuerURL enforces the specification's form of iss.
func checkIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || strings.HasSuffix(s, "/") ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return ErrIssuerURL
	}
	return nil
}

// URL returns the issuer URL (the iss claim).
func (is *Issuer) URL() string { return is.url }

// KeyID returns the kid of the signing key.
func (is *Issuer) KeyID() string { return is.kid }

// PublicKey returns the signing key's public half, for the JWKS.
func (is *Issuer) PublicKey() *ecdsa.PublicKey { return is.pub }

// Payload builds the JWT payload for a certificate: the FHIR bundle, iss,
// nbf (whole seconds) and, when the issuer has a revocation secret, a rid
// derived from the certificate ID.
func (is *Issuer) Payload(c *certificate.Certificate, nbf time.Time) (*Payload, error) {
	bundle, err := BuildBundle(c)
	if err != nil {
		return nil, err
	}
	p := &Payload{
		Iss: is.url,
		Nbf: float64(nbf.Unix()),
		VC: VC{
			Type:              []string{TypeHealthCard},
			CredentialSubject: CredentialSubject{FHIRVersion: FHIRVersion, FHIRBundle: bundle},
		},
	}
	if is.ridSecret != nil {
		if c.ID == "" {
			return nil, fmt.Errorf("%w: id is empty, so no revocation identifier can be derived", ErrCertificate)
		}
		p.VC.RID = RID(is.ridSecret, is.kid, c.ID)
	}
	return p, nil
}

// Issue returns the QR text ("shc:/…") of the certificate's health card.
func (is *Issuer) Issue(c *certificate.Certificate, nbf time.Time) (string, error) {
	p, err := is.Payload(c, nbf)
	if err != nil {
		return "", err
	}
	jws, err := is.Sign(p)
	if err != nil {
		return "", err
	}
	return EncodeQR(jws)
}

// Sign minifies, compresses and signs a payload and returns the compact JWS.
// It refuses a JWS that would not fit one QR code, and checks its own
// signature on the first and then every SelfCheckEvery-th card, so a signer
// whose key is not the one the kid names fails here rather than at a border.
func (is *Issuer) Sign(p *Payload) (string, error) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // minified JSON; '<' and '&' need no escaping
	if err := enc.Encode(p); err != nil {
		return "", fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	zipped, err := deflate(bytes.TrimSuffix(body.Bytes(), []byte("\n")))
	if err != nil {
		return "", err
	}
	header := `{"alg":"ES256","zip":"DEF","kid":"` + is.kid + `"}`
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString(zipped)
	// The signature adds '.' and 86 characters; refuse before using the key.
	if n := len(input) + 1 + 86; n > MaxJWSLen {
		return "", fmt.Errorf("%w: JWS would be %d characters, limit %d (fewer doses per card)", ErrTooLarge, n, MaxJWSLen)
	}
	check := is.signed.Add(1)%SelfCheckEvery == 1
	r, s, err := is.signDigest(sha256.Sum256([]byte(input)), check)
	if err != nil {
		return "", err
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	s.FillBytes(raw[32:])
	return input + "." + b64.EncodeToString(raw), nil
}

// signDigest signs and, when check is set, verifies the signature with the
// public key the kid names.
func (is *Issuer) signDigest(digest [32]byte, check bool) (r, s *big.Int, err error) {
	der, err := is.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, nil, fmt.Errorf("shc: signing: %w", err)
	}
	if r, s, err = parseDERSignature(der); err != nil {
		return nil, nil, err
	}
	if check && !ecdsa.Verify(is.pub, digest[:], r, s) {
		return nil, nil, fmt.Errorf("%w: the signer's key does not match its public key", ErrKey)
	}
	return r, s, nil
}

// parseDERSignature reads the ASN.1 ECDSA-Sig-Value a crypto.Signer returns
// and checks both halves fit in 32 bytes, as they must for P-256.
func parseDERSignature(der []byte) (r, s *big.Int, err error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R == nil || sig.S == nil ||
		sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || sig.R.BitLen() > 256 || sig.S.BitLen() > 256 {
		return nil, nil, fmt.Errorf("%w: signer returned a malformed ECDSA signature", ErrKey)
	}
	return sig.R, sig.S, nil
}

// deflaters reuses DEFLATE writers: a new BestCompression writer allocates
// about 800 KB of tables, more than the rest of issuing a card together.
var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestCompression) // only fails for a bad level
	return w
}}

// Deflate compresses b as a health card's payload is compressed: raw
// DEFLATE (RFC 1951) at the best compression, with a pooled writer.
func Deflate(b []byte) ([]byte, error) { return deflate(b) }

func deflate(b []byte) ([]byte, error) {
	var out bytes.Buffer
	w := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(w)
	w.Reset(&out)
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("shc: deflate: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("shc: deflate: %w", err)
	}
	return out.Bytes(), nil
}

// inflate decompresses raw DEFLATE, refusing output above limit bytes so a
// small QR code cannot expand into a memory exhaustion ("inflate bomb").
func inflate(b []byte, limit int) ([]byte, error) {
	fr := flate.NewReader(bytes.NewReader(b))
	defer fr.Close()
	out, err := io.ReadAll(io.LimitReader(fr, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: DEFLATE: %w", ErrPayload, err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w: inflates to more than %d bytes", ErrPayload, limit)
	}
	return out, nil
}

// JWS is a parsed, not yet verified, compact JWS.
type JWS struct {
	Alg, Zip, Kid string
	// Payload is the payload as transmitted (still compressed if Zip is "DEF").
	Payload   []byte
	Signature []byte // 64 bytes, r ‖ s
	signed    string // header.payload, the signing input
}

// MaxParseLen bounds the JWS accepted by ParseJWS: the most a version 40
// numeric QR code can carry (7089 digits, so 3544 characters).
const MaxParseLen = 3544

// ParseJWS splits and decodes a compact JWS. It checks the form only; call
// Verify to check the signature.
func ParseJWS(s string) (*JWS, error) {
	if len(s) > MaxParseLen {
		return nil, fmt.Errorf("%w: longer than %d characters", ErrJWS, MaxParseLen)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrJWS, len(parts))
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrJWS)
	}
	var h struct {
		Alg  string   `json:"alg"`
		Zip  string   `json:"zip"`
		Kid  string   `json:"kid"`
		Crit []string `json:"crit"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("%w: header is not JSON", ErrJWS)
	}
	switch {
	case h.Alg != "ES256":
		return nil, fmt.Errorf("%w: alg must be ES256", ErrJWS)
	case h.Zip != "DEF":
		return nil, fmt.Errorf("%w: zip must be DEF", ErrJWS)
	case h.Kid == "":
		return nil, fmt.Errorf("%w: kid is missing", ErrJWS)
	case h.Crit != nil:
		// RFC 7515 §4.1.11: extensions we do not understand must be refused.
		return nil, fmt.Errorf("%w: critical header extensions are not supported", ErrJWS)
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrJWS)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return nil, fmt.Errorf("%w: signature must be 64 bytes of base64url (r ‖ s)", ErrJWS)
	}
	return &JWS{Alg: h.Alg, Zip: h.Zip, Kid: h.Kid, Payload: payload, Signature: sig,
		signed: s[:len(parts[0])+1+len(parts[1])]}, nil
}

// VerifySignature checks the ES256 signature with pub.
func (j *JWS) VerifySignature(pub *ecdsa.PublicKey) error {
	digest := sha256.Sum256([]byte(j.signed))
	r := new(big.Int).SetBytes(j.Signature[:32])
	s := new(big.Int).SetBytes(j.Signature[32:])
	if pub == nil || !ecdsa.Verify(pub, digest[:], r, s) {
		return ErrSignature
	}
	return nil
}
