package vdsnc

import (
	"fmt"
	"strings"
)

// TravelName returns pid.n: the romanized name in travel-document form,
// primary identifier (family name) then secondary identifier (given names),
// separated by one space, in upper case, at most 39 characters:
//
//	TravelName("Shiken", "Hanako") // "SHIKEN HANAKO"
//
// It follows Doc 9303-3's transliteration of the machine-readable zone for
// the characters a passport name may contain: letters are upper-cased,
// hyphens become spaces, apostrophes are dropped, runs of spaces collapse.
// Any other character, and any non-ASCII character, is refused: names must
// be romanized as in the passport before issuing, never guessed here.
//
// A name longer than 39 characters is truncated as Doc 9303-3 orders it:
// the secondary identifier first, character by character from the end,
// keeping at least its initial; only then the primary identifier.
func TravelName(family, given string) (string, error) {
	f, err := travelPart(family)
	if err != nil {
		return "", fmt.Errorf("%w (family name)", err)
	}
	g, err := travelPart(given)
	if err != nil {
		return "", fmt.Errorf("%w (given name)", err)
	}
	if f == "" {
		return "", fmt.Errorf("%w: holder.romanFamily is required", ErrCertificate)
	}
	if g == "" {
		return truncate(f, MaxNameLen), nil
	}
	if len(f)+1+len(g) > MaxNameLen {
		keep := max(MaxNameLen-len(f)-1, 1)
		g = strings.TrimRight(g[:min(keep, len(g))], " ")
		if len(f)+1+len(g) > MaxNameLen {
			f = truncate(f, MaxNameLen-1-len(g))
		}
	}
	return f + " " + g, nil
}

// travelPart normalizes one name component.
func travelPart(s string) (string, error) {
	var b strings.Builder
	space := true // drop leading spaces and collapse runs
	for i := range len(s) {
		c := s[i]
		switch {
		case c >= 0x80:
			return "", ErrNotASCII
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c >= 'A' && c <= 'Z':
		case c == ' ' || c == '-':
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		case c == '\'':
			continue
		default:
			return "", fmt.Errorf("%w: name character %d is not a letter, space, hyphen or apostrophe", ErrCertificate, i+1)
		}
		b.WriteByte(c)
		space = false
	}
	return strings.TrimRight(b.String(), " "), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimRight(s[:n], " ")
}

// SexCode maps an ISO/IEC 5218 digit to the Doc 9303 letter: 1 → M,
// 2 → F, 9 (not applicable) and 0 (not known) → X. An empty value gives an
// empty code, and the optional field is left out.
func SexCode(iso5218 string) (string, error) {
	switch iso5218 {
	case "1":
		return "M", nil
	case "2":
		return "F", nil
	case "0", "9":
		return "X", nil
	case "":
		return "", nil
	}
	return "", fmt.Errorf("%w: holder.sex must be an ISO/IEC 5218 digit (0, 1, 2 or 9)", ErrCertificate)
}
