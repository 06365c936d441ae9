// Package mynumber validates the 12-digit individual number (個人番号,
// "My Number") and masks it for display.
//
// The last digit is a check digit over the first eleven (Ministry of
// Internal Affairs ordinance on the individual number, article 5). A number
// with a wrong check digit is refused before it reaches any lookup, so a
// corrupted card read or a forged request never probes the records.
package mynumber

import (
	"errors"
	"fmt"
)

// Validation errors.
var (
	// ErrFormat means the value is not exactly 12 ASCII digits.
	ErrFormat = errors.New("mynumber: not 12 ASCII digits")
	// ErrCheckDigit means the 12th digit does not match the first eleven.
	ErrCheckDigit = errors.New("mynumber: check digit mismatch")
)

// CheckDigit computes the check digit for the first 11 digits of a My Number.
// Digits are numbered P1…P11 from the right; weights are n+1 for n = 1…6 and
// n−5 for n = 7…11; r = Σ Pn·Qn mod 11; the digit is 0 when r ≤ 1, else 11 − r.
func CheckDigit(first11 string) (byte, error) {
	if len(first11) != 11 || !allDigits(first11) {
		return 0, fmt.Errorf("%w: need 11 digits to compute a check digit", ErrFormat)
	}
	sum := 0
	for n := 1; n <= 11; n++ {
		p := int(first11[11-n] - '0')
		q := n + 1
		if n >= 7 {
			q = n - 5
		}
		sum += p * q
	}
	r := sum % 11
	if r <= 1 {
		return '0', nil
	}
	return byte('0' + 11 - r), nil
}

// Validate reports whether s is a well-formed My Number with a correct check
// digit. The error never contains the number itself.
func Validate(s string) error {
	if len(s) != 12 || !allDigits(s) {
		return ErrFormat
	}
	want, _ := CheckDigit(s[:11])
	if s[11] != want {
		return ErrCheckDigit
	}
	return nil
}

// Complete appends the check digit to 11 digits, for generating synthetic
// residents.
func Complete(first11 string) (string, error) {
	d, err := CheckDigit(first11)
	if err != nil {
		return "", err
	}
	return first11 + string(d), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
