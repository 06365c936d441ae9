// Package lgcode validates the 6-digit local government code
// (全国地方公共団体コード): a 2-digit prefecture, a 3-digit municipality and a
// check digit.
//
// The check digit uses weights 6, 5, 4, 3, 2 over the first five digits;
// r = sum mod 11; the check digit is the last digit of 11 − r (so r = 0
// gives 1 and r = 1 gives 0). Asahikawa is 012041, Sapporo 011002,
// Fujimino 112453.
package lgcode

import (
	"errors"
	"fmt"
)

// Validation errors.
var (
	// ErrFormat means the code is not exactly six ASCII digits.
	ErrFormat = errors.New("lgcode: not 6 ASCII digits")
	// ErrCheckDigit means the sixth digit does not match the first five.
	ErrCheckDigit = errors.New("lgcode: check digit mismatch")
	// ErrPrefecture means the first two digits are not 01–47.
	ErrPrefecture = errors.New("lgcode: prefecture not 01-47")
)

// CheckDigit computes the check digit for a 5-digit code.
func CheckDigit(first5 string) (byte, error) {
	if len(first5) != 5 || !allDigits(first5) {
		return 0, fmt.Errorf("%w: need 5 digits to compute a check digit", ErrFormat)
	}
	sum := 0
	for i, w := range []int{6, 5, 4, 3, 2} {
		sum += int(first5[i]-'0') * w
	}
	return byte('0' + (11-sum%11)%10), nil
}

// Validate reports whether code is a well-formed 6-digit local government
// code. Its errors never quote the code: a kiosk may send anything in a
// municipality field (a My Number, say), and error texts reach logs.
func Validate(code string) error {
	if len(code) != 6 || !allDigits(code) {
		return ErrFormat
	}
	pref := int(code[0]-'0')*10 + int(code[1]-'0')
	if pref < 1 || pref > 47 {
		return ErrPrefecture
	}
	if want, _ := CheckDigit(code[:5]); code[5] != want {
		return ErrCheckDigit
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
