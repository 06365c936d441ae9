// Package tlv reads and writes the BER-TLV structures stored on the My Number
// card (ISO/IEC 7816-4 annex D, ISO/IEC 8825-1).
//
// The card uses multi-byte tags of every class: context/private tags such as
// DF 22 (name) and FF 20 (the four-item template), and application tags such
// as 7F 21 (card-verifiable certificate) and 5F 4E (certificate body). A tag
// is kept here as the unsigned integer of its encoded bytes, so 0xDF22 is the
// tag written DF 22 on the card; that keeps tables and error messages in the
// same spelling the specifications use.
//
// Parsing never panics and never allocates more than the input: every length
// is checked against the bytes that remain, and lengths are limited to what a
// smart-card file can hold.
package tlv

import (
	"errors"
	"fmt"
)

// MaxLength bounds a single value. No EF of the card's input-assist
// application comes near it; anything larger is hostile or corrupt.
const MaxLength = 1 << 16

// Parse errors. They are wrapped with the offset and tag where they occurred.
var (
	// ErrTruncated means the input ended inside a tag, a length or a value.
	ErrTruncated = errors.New("tlv: truncated data")
	// ErrBadTag means a tag was longer than four bytes or used the reserved form.
	ErrBadTag = errors.New("tlv: malformed tag")
	// ErrBadLength means the length used an indefinite, non-minimal or oversized form.
	ErrBadLength = errors.New("tlv: malformed length")
	// ErrNotFound means a required tag was not present.
	ErrNotFound = errors.New("tlv: tag not found")
	// ErrTrailingData means bytes followed the last element where none may.
	ErrTrailingData = errors.New("tlv: trailing data")
)

// Tag is a BER tag as the integer value of its encoded bytes (DF 22 is 0xDF22).
type Tag uint32

// String renders the tag as the card specifications write it, e.g. "DF 22".
func (t Tag) String() string {
	b := t.Bytes()
	s := ""
	for i, c := range b {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%02X", c)
	}
	return s
}

// Bytes returns the encoded form of the tag.
func (t Tag) Bytes() []byte {
	switch {
	case t <= 0xFF:
		return []byte{byte(t)}
	case t <= 0xFFFF:
		return []byte{byte(t >> 8), byte(t)}
	case t <= 0xFFFFFF:
		return []byte{byte(t >> 16), byte(t >> 8), byte(t)}
	default:
		return []byte{byte(t >> 24), byte(t >> 16), byte(t >> 8), byte(t)}
	}
}

// Constructed reports whether the tag's first byte marks a constructed value.
func (t Tag) Constructed() bool {
	return t.Bytes()[0]&0x20 != 0
}

// Element is one parsed TLV. Value aliases the parsed input; Raw is the
// complete encoding (tag, length and value), also aliasing the input, which
// is what signatures and hashes over card data are computed on.
type Element struct {
	Tag   Tag
	Value []byte
	Raw   []byte
}

// ReadHeader parses the tag and length at the start of b. It returns the tag,
// the value length and the header size, so that a reader knowing only the
// first few bytes of a file can tell how many more to fetch. It does not
// require the value to be present.
func ReadHeader(b []byte) (tag Tag, length, headerLen int, err error) {
	tag, n, err := readTag(b)
	if err != nil {
		return 0, 0, 0, err
	}
	length, m, err := readLength(b[n:])
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%w (tag %s)", err, tag)
	}
	return tag, length, n + m, nil
}

// HeaderLenMax is the largest header ReadHeader accepts: four tag bytes and
// a length of 82 xx xx. Reading this many bytes is always enough to learn
// the size of a TLV-structured file.
const HeaderLenMax = 4 + 3

func readTag(b []byte) (Tag, int, error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	// 00 and FF are padding in ISO 7816-4 files; only FF is a valid first byte
	// of a multi-byte private tag, so refuse 00 here and let callers skip padding.
	if b[0] == 0x00 {
		return 0, 0, fmt.Errorf("%w: tag byte 00", ErrBadTag)
	}
	t := Tag(b[0])
	if b[0]&0x1F != 0x1F {
		return t, 1, nil
	}
	for i := 1; ; i++ {
		if i >= len(b) {
			return 0, 0, ErrTruncated
		}
		if i > 3 {
			return 0, 0, fmt.Errorf("%w: longer than four bytes", ErrBadTag)
		}
		if i == 1 && b[i] == 0x80 {
			// Leading zero bits in the tag number are not allowed (X.690 8.1.2.4.2).
			return 0, 0, fmt.Errorf("%w: non-minimal tag number", ErrBadTag)
		}
		t = t<<8 | Tag(b[i])
		if b[i]&0x80 == 0 {
			return t, i + 1, nil
		}
	}
}

func readLength(b []byte) (int, int, error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	first := b[0]
	switch {
	case first < 0x80:
		return int(first), 1, nil
	case first == 0x80:
		return 0, 0, fmt.Errorf("%w: indefinite length", ErrBadLength)
	case first == 0x81:
		if len(b) < 2 {
			return 0, 0, ErrTruncated
		}
		if b[1] < 0x80 {
			return 0, 0, fmt.Errorf("%w: non-minimal 81 %02X", ErrBadLength, b[1])
		}
		return int(b[1]), 2, nil
	case first == 0x82:
		if len(b) < 3 {
			return 0, 0, ErrTruncated
		}
		n := int(b[1])<<8 | int(b[2])
		if n < 0x100 {
			return 0, 0, fmt.Errorf("%w: non-minimal 82 %02X %02X", ErrBadLength, b[1], b[2])
		}
		if n > MaxLength {
			return 0, 0, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadLength, n, MaxLength)
		}
		return n, 3, nil
	default:
		return 0, 0, fmt.Errorf("%w: length form %02X", ErrBadLength, first)
	}
}

// Next parses the first element of b and returns it with the bytes after it.
func Next(b []byte) (Element, []byte, error) {
	tag, length, h, err := ReadHeader(b)
	if err != nil {
		return Element{}, nil, err
	}
	if length > len(b)-h {
		return Element{}, nil, fmt.Errorf("%w: tag %s declares %d bytes, %d remain", ErrTruncated, tag, length, len(b)-h)
	}
	end := h + length
	return Element{Tag: tag, Value: b[h:end:end], Raw: b[:end:end]}, b[end:], nil
}

// ParseOne parses exactly one element occupying b, ignoring trailing padding
// bytes (00 or FF) that cards leave after the data in a fixed-size EF.
func ParseOne(b []byte) (Element, error) {
	e, rest, err := Next(b)
	if err != nil {
		return Element{}, err
	}
	if !isPadding(rest) {
		return Element{}, fmt.Errorf("%w: %d bytes after tag %s", ErrTrailingData, len(rest), e.Tag)
	}
	return e, nil
}

// ParseAll parses a sequence of elements that fills b exactly.
func ParseAll(b []byte) ([]Element, error) {
	var out []Element
	for len(b) > 0 {
		e, rest, err := Next(b)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", len(out), err)
		}
		out = append(out, e)
		b = rest
	}
	return out, nil
}

func isPadding(b []byte) bool {
	for _, c := range b {
		if c != 0x00 && c != 0xFF {
			return false
		}
	}
	return true
}

// Find returns the first element with the given tag among els.
func Find(els []Element, tag Tag) (Element, error) {
	for _, e := range els {
		if e.Tag == tag {
			return e, nil
		}
	}
	return Element{}, fmt.Errorf("%w: %s", ErrNotFound, tag)
}

// Encode returns the DER-style encoding of tag, minimal length and value.
func Encode(tag Tag, value []byte) []byte {
	out := append([]byte(nil), tag.Bytes()...)
	out = append(out, EncodeLength(len(value))...)
	return append(out, value...)
}

// EncodeLength returns the minimal BER length octets for n.
func EncodeLength(n int) []byte {
	switch {
	case n < 0x80:
		return []byte{byte(n)}
	case n <= 0xFF:
		return []byte{0x81, byte(n)}
	default:
		return []byte{0x82, byte(n >> 8), byte(n)}
	}
}
