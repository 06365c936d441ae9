package shc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var b64 = base64.RawURLEncoding.Strict()

// JWK is a public P-256 signing key as the specification publishes it. It
// has no field for the private scalar d, so a JWK built here can never leak
// one.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	// CRLVersion announces the ctr of this key's revocation list, when the
	// issuer publishes one.
	CRLVersion int `json:"crlVersion,omitempty"`
	// X5C is an optional certificate chain (standard base64 DER), kept when
	// parsing other issuers' key sets; this package does not produce it.
	X5C []string `json:"x5c,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// Thumbprint returns the RFC 7638 SHA-256 JWK thumbprint of a P-256 public
// key, base64url-encoded: the kid the specification requires.
func Thumbprint(pub *ecdsa.PublicKey) (string, error) {
	x, y, err := coordinates(pub)
	if err != nil {
		return "", err
	}
	return thumbprint(x, y), nil
}

func thumbprint(x, y string) string {
	// RFC 7638: the required members in lexicographic order, no whitespace.
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return b64.EncodeToString(sum[:])
}

// coordinates returns the base64url x and y of a P-256 key.
func coordinates(pub *ecdsa.PublicKey) (x, y string, err error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return "", "", ErrKey
	}
	b, err := pub.Bytes() // 0x04 ‖ x ‖ y
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrKey, err)
	}
	return b64.EncodeToString(b[1:33]), b64.EncodeToString(b[33:]), nil
}

// NewJWK returns the published form of a P-256 public key.
func NewJWK(pub *ecdsa.PublicKey) (JWK, error) {
	x, y, err := coordinates(pub)
	if err != nil {
		return JWK{}, err
	}
	return JWK{Kty: "EC", Kid: thumbprint(x, y), Use: "sig", Alg: "ES256", Crv: "P-256", X: x, Y: y}, nil
}

// PublicKey decodes and checks the key: the point must be on P-256 and the
// kid must be its thumbprint, as the specification requires.
func (k JWK) PublicKey() (*ecdsa.PublicKey, error) {
	if k.Kty != "EC" || k.Crv != "P-256" || k.Alg != "ES256" || k.Use != "sig" {
		return nil, fmt.Errorf("%w: key is not an EC P-256 ES256 signing key", ErrJWKS)
	}
	x, errX := b64.DecodeString(k.X)
	y, errY := b64.DecodeString(k.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("%w: key coordinates are not 32-byte base64url values", ErrJWKS)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, fmt.Errorf("%w: key is not a point on P-256: %w", ErrJWKS, err)
	}
	if k.Kid != thumbprint(k.X, k.Y) {
		return nil, fmt.Errorf("%w: kid is not the RFC 7638 thumbprint of the key", ErrJWKS)
	}
	return pub, nil
}

// NewJWKS builds the key set to publish at <iss>/.well-known/jwks.json from
// the current key and every retired key whose cards still matter. Keys must
// be P-256 ECDSA public keys; duplicates are an error.
func NewJWKS(keys ...crypto.PublicKey) (*JWKS, error) {
	set := &JWKS{Keys: []JWK{}}
	seen := map[string]bool{}
	for i, k := range keys {
		pub, ok := k.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: key %d is %T", ErrKey, i, k)
		}
		j, err := NewJWK(pub)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if seen[j.Kid] {
			return nil, fmt.Errorf("%w: key %d is listed twice", ErrJWKS, i)
		}
		seen[j.Kid] = true
		set.Keys = append(set.Keys, j)
	}
	return set, nil
}

// ParseJWKS decodes an issuer's key set. Signing keys (kty EC, use sig, alg
// ES256) are checked as PublicKey does; other keys are skipped, as the
// specification tells verifiers to filter on those fields. A set that
// publishes a private part ("d") is refused outright: the issuer's key is
// compromised and nothing it signed can be trusted.
func ParseJWKS(data []byte) (*JWKS, error) {
	var wire struct {
		Keys []struct {
			JWK
			D *string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJWKS, err)
	}
	set := &JWKS{Keys: []JWK{}}
	for i, k := range wire.Keys {
		if k.D != nil {
			return nil, fmt.Errorf("%w: key %d publishes its private part; do not trust this issuer", ErrJWKS, i)
		}
		if k.Kty != "EC" || k.Use != "sig" || k.Alg != "ES256" {
			continue
		}
		if _, err := k.JWK.PublicKey(); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		set.Keys = append(set.Keys, k.JWK)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%w: no ES256 signing keys", ErrJWKS)
	}
	return set, nil
}

// Key returns the signing key with the given kid.
func (s *JWKS) Key(kid string) (*ecdsa.PublicKey, JWK, error) {
	if s != nil {
		for _, k := range s.Keys {
			if k.Kid == kid {
				pub, err := k.PublicKey()
				return pub, k, err
			}
		}
	}
	return nil, JWK{}, ErrUnknownKey
}

// RID derives a card's revocation identifier as the specification
// recommends: base64url of the first 64 bits of HMAC-SHA-256 keyed with
// secret ‖ kid over the user identifier (here the certificate ID). The
// secret is the issuer's 256-bit revocation secret, shared by all its keys;
// the HMAC makes the published list useless for recovering certificate IDs.
func RID(secret []byte, kid, id string) string {
	key := append(append([]byte(nil), secret...), kid...)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	return b64.EncodeToString(m.Sum(nil)[:8])
}

// CRL is the card revocation list published for one key at
// <iss>/.well-known/crl/<kid>.json.
type CRL struct {
	Kid    string   `json:"kid"`
	Method string   `json:"method"`
	Ctr    int      `json:"ctr"`
	RIDs   []string `json:"rids"`
}

// MaxRIDLen is the specification's limit on a rid.
const MaxRIDLen = 24

// NewCRL starts an empty list for a key. Publish it with ctr 1 and set the
// key's crlVersion to the same value.
func NewCRL(kid string) *CRL {
	return &CRL{Kid: kid, Method: "rid", Ctr: 1, RIDs: []string{}}
}

// Revoke adds rid to the list and increments ctr. If issuedBefore is not
// zero, only cards with nbf up to that second are revoked (the ".timestamp"
// suffix), so the holder's later cards stay valid.
func (c *CRL) Revoke(rid string, issuedBefore time.Time) error {
	if !validRID(rid) {
		return fmt.Errorf("%w: rid must be 1-%d base64url characters", ErrCRL, MaxRIDLen)
	}
	if !issuedBefore.IsZero() {
		rid += "." + strconv.FormatInt(issuedBefore.Unix(), 10)
	}
	c.RIDs = append(c.RIDs, rid)
	c.Ctr++
	return nil
}

// ParseCRL decodes and checks a revocation list.
func ParseCRL(data []byte) (*CRL, error) {
	var c CRL
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCRL, err)
	}
	if c.Kid == "" || c.Method != "rid" || c.Ctr < 1 {
		return nil, fmt.Errorf("%w: needs kid, method \"rid\" and ctr ≥ 1", ErrCRL)
	}
	for i, r := range c.RIDs {
		base, ts, hasTS := strings.Cut(r, ".")
		if !validRID(base) {
			return nil, fmt.Errorf("%w: rids[%d] is not a base64url rid", ErrCRL, i)
		}
		if hasTS {
			if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
				return nil, fmt.Errorf("%w: rids[%d] has a malformed timestamp", ErrCRL, i)
			}
		}
	}
	return &c, nil
}

// Revoked reports whether a card with this rid and nbf is on the list. A
// timestamped entry revokes cards issued up to and including that second:
// timestamps are whole seconds, and a card issued within the revocation's own
// second is treated as revoked (the specification's own example revokes a
// card whose nbf is a fraction of a second after the listed timestamp).
func (c *CRL) Revoked(rid string, nbf time.Time) bool {
	if rid == "" {
		return false
	}
	for _, r := range c.RIDs {
		base, ts, hasTS := strings.Cut(r, ".")
		if base != rid {
			continue
		}
		if !hasTS {
			return true
		}
		if t, err := strconv.ParseInt(ts, 10, 64); err == nil && nbf.Unix() <= t {
			return true
		}
	}
	return false
}

func validRID(s string) bool {
	if s == "" || len(s) > MaxRIDLen {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
