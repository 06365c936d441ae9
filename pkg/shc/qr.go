package shc

import (
	"fmt"
	"strings"
)

// EncodeQR returns the QR text of a JWS: "shc:/" followed by two decimal
// digits per JWS character, its code minus 45 ('-' is the smallest base64url
// character). A QR encoder puts the prefix in a byte segment and the digits
// in a numeric segment, which is what keeps a 1195-character JWS inside
// version 22.
func EncodeQR(jws string) (string, error) {
	if len(jws) > MaxJWSLen {
		return "", fmt.Errorf("%w: JWS is %d characters, limit %d", ErrTooLarge, len(jws), MaxJWSLen)
	}
	var b strings.Builder
	b.Grow(len(QRPrefix) + 2*len(jws))
	b.WriteString(QRPrefix)
	for i := range len(jws) {
		c := jws[i]
		if !isJWSChar(c) {
			return "", fmt.Errorf("%w: character %d is not base64url or '.'", ErrJWS, i)
		}
		v := c - '-'
		b.WriteByte('0' + v/10)
		b.WriteByte('0' + v%10)
	}
	return b.String(), nil
}

// DecodeQR returns the JWS carried by QR text. Chunked texts
// ("shc:/1/2/…") are refused with ErrChunked: the specification deprecated
// them and no certificate here is chunked.
func DecodeQR(text string) (string, error) {
	rest, ok := strings.CutPrefix(text, QRPrefix)
	if !ok {
		return "", fmt.Errorf("%w: must start with %q", ErrQRText, QRPrefix)
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return "", ErrChunked
	}
	if len(rest) == 0 || len(rest)%2 != 0 {
		return "", fmt.Errorf("%w: needs a non-empty, even number of digits", ErrQRText)
	}
	if len(rest)/2 > MaxParseLen {
		return "", fmt.Errorf("%w: longer than a QR code can carry", ErrQRText)
	}
	out := make([]byte, len(rest)/2)
	for i := range out {
		hi, lo := rest[2*i], rest[2*i+1]
		if hi < '0' || hi > '9' || lo < '0' || lo > '9' {
			return "", fmt.Errorf("%w: character %d is not a digit", ErrQRText, len(QRPrefix)+2*i)
		}
		c := (hi-'0')*10 + (lo - '0') + '-'
		if !isJWSChar(c) {
			return "", fmt.Errorf("%w: digit pair %d is not a JWS character", ErrQRText, i)
		}
		out[i] = c
	}
	return string(out), nil
}

// isJWSChar reports whether c may appear in a compact JWS.
func isJWSChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}
