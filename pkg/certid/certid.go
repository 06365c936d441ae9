// Package certid makes and checks certificate IDs (証明書ID): the short code
// printed on a vaccination certificate, read aloud over the phone and typed by
// border staff, and carried as the ICAO VDS-NC uvci (at most 12 characters).
//
// An ID is 12 characters: 11 random symbols and one check symbol, all from
// Crockford's base32 alphabet (digits and upper-case letters without I, L, O
// and U, so nothing is confused with 1, 0 or V):
//
//	id, err := certid.New(rand.Reader) // e.g. "7KX2M9QD4TRH"
//	err = certid.Validate(id)          // nil, or wraps ErrInvalid
//	id, err = certid.Normalize("7kx2-m9qd-4trh") // what a person typed
//
// # Unguessable
//
// The 11 random symbols carry 55 bits from the caller's crypto/rand reader.
// Guessing a valid ID for a given holder is therefore a 2^-55 chance per try;
// the ID is a reference, not an authenticator, and the QR signatures are what
// make a certificate trustworthy.
//
// # Unique
//
// 55 random bits make a collision between two IDs unlikely but not
// impossible over tens of millions of certificates (about 1.4% for 32 million
// IDs by the birthday bound). The issuer must check each new ID against its
// register of issued IDs and draw again on a clash; New cannot do that alone.
//
// # Check symbol
//
// The symbols are read as elements of GF(32) (the field with 32 elements,
// reduction polynomial x^5 + x^2 + 1) and folded with Horner's rule,
// s ← a·s + v with a = x. The check symbol makes the fold of the whole ID
// zero. Because every step is a bijection in s, any single wrong symbol
// leaves a non-zero result; because a ≠ 1, swapping two adjacent different
// symbols changes a²s + a·v + w into a²s + a·w + v, which differs by
// (a+1)(v+w) ≠ 0; and because a² ≠ 1 the same holds for symbols two apart.
// Unlike ISO 7064 MOD 37,36 or Crockford's mod-37 symbol, the check symbol
// stays inside the 32-symbol alphabet, so nobody has to read out "*" or "~".
package certid

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Len is the length of every certificate ID.
const Len = 12

// Alphabet is Crockford's base32 alphabet, in value order.
const Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// ErrInvalid is wrapped by every Validate and Normalize error. Messages name
// the position, never the ID.
var ErrInvalid = errors.New("certid: invalid certificate ID")

// New returns a fresh random certificate ID. rand must be a cryptographically
// secure source (crypto/rand.Reader); tests may pass a fixed stream.
func New(rand io.Reader) (string, error) {
	var b [7]byte // 56 bits, of which 55 are used
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("certid: reading randomness: %w", err)
	}
	var bits uint64
	for _, c := range b {
		bits = bits<<8 | uint64(c)
	}
	id := make([]byte, Len)
	var s byte
	for i := range Len - 1 {
		v := byte(bits>>(51-5*i)) & 31
		id[i] = Alphabet[v]
		s = mulA(s) ^ v
	}
	id[Len-1] = Alphabet[mulA(s)]
	return string(id), nil
}

// Validate reports whether id is a well-formed certificate ID in canonical
// form (12 upper-case symbols with a correct check symbol). Use Normalize
// first on anything a person typed.
func Validate(id string) error {
	if len(id) != Len {
		return fmt.Errorf("%w: must be %d characters, not %d", ErrInvalid, Len, len(id))
	}
	var s byte
	for i := range len(id) {
		v := value(id[i])
		if v < 0 {
			return fmt.Errorf("%w: character %d is not in the alphabet %s", ErrInvalid, i+1, Alphabet)
		}
		s = mulA(s) ^ byte(v)
	}
	if s != 0 {
		return fmt.Errorf("%w: check character does not match (a character is mistyped or two are swapped)", ErrInvalid)
	}
	return nil
}

// Normalize turns a typed ID into canonical form and validates it: it drops
// spaces and hyphens, upper-cases letters, and reads I and L as 1 and O as 0,
// as Crockford's decoding rules say.
func Normalize(typed string) (string, error) {
	var b strings.Builder
	for _, r := range typed {
		switch {
		case r == ' ' || r == '-' || r == '\u3000':
			continue
		case r == 'i' || r == 'I' || r == 'l' || r == 'L':
			r = '1'
		case r == 'o' || r == 'O':
			r = '0'
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		if b.Len() > Len {
			break
		}
		b.WriteRune(r)
	}
	id := b.String()
	if err := Validate(id); err != nil {
		return "", err
	}
	return id, nil
}

// value returns the value of a canonical symbol, or -1.
func value(c byte) int {
	return strings.IndexByte(Alphabet, c)
}

// mulA multiplies an element of GF(32) by a = x, reducing by x^5 + x^2 + 1.
func mulA(s byte) byte {
	s <<= 1
	if s&0x20 != 0 {
		s ^= 0x25
	}
	return s
}
