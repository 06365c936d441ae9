package certid

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// gfMul is a textbook GF(2^5) multiply (shift-and-add, reduce by
// x^5+x^2+1), independent of mulA, used to check the check symbol.
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		b >>= 1
		a <<= 1
		if a&0x20 != 0 {
			a ^= 0x25
		}
	}
	return p
}

// refCheck computes the check symbol as Σ v_i·x^(12-i), i = 1…11, i.e. the
// value that makes the weighted sum over all 12 symbols zero.
func refCheck(data string) byte {
	var sum byte
	for i := range len(data) {
		w := byte(1)
		for range len(data) - i {
			w = gfMul(w, 2)
		}
		sum ^= gfMul(byte(strings.IndexByte(Alphabet, data[i])), w)
	}
	return Alphabet[sum]
}

func TestNewKnownAnswers(t *testing.T) {
	tests := []struct {
		name string
		rand []byte
		data string // the 11 random symbols
	}{
		{"zeros", make([]byte, 7), "00000000000"},
		{"ones", bytes.Repeat([]byte{0xFF}, 7), "ZZZZZZZZZZZ"},
		// 0x01 23 45 67 89 AB CD in 5-bit groups (top 55 bits):
		// 00000 00100 10001 10100 01010 11001 11100 01001 10101 01111 00110
		{"counting", []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD}, "04HMASW9NF6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := New(bytes.NewReader(tc.rand))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.data + string(refCheck(tc.data))
			if id != want {
				t.Fatalf("New = %q, want %q", id, want)
			}
			if err := Validate(id); err != nil {
				t.Fatalf("Validate(%q): %v", id, err)
			}
		})
	}
}

func TestNewRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id, err := New(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != Len {
			t.Fatalf("len(%q) = %d", id, len(id))
		}
		if err := Validate(id); err != nil {
			t.Fatalf("Validate(%q): %v", id, err)
		}
		if seen[id] {
			t.Fatalf("duplicate ID %q in 1000 draws", id)
		}
		seen[id] = true
	}
}

func TestNewShortRead(t *testing.T) {
	if _, err := New(bytes.NewReader([]byte{1, 2, 3})); err == nil {
		t.Fatal("New accepted a short random stream")
	}
}

// TestDetectsEverySingleErrorAndAdjacentSwap checks the two error classes
// the check symbol promises to catch, exhaustively, on many IDs.
func TestDetectsEverySingleErrorAndAdjacentSwap(t *testing.T) {
	for range 200 {
		id, err := New(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for pos := range Len {
			for _, c := range []byte(Alphabet) {
				if c == id[pos] {
					continue
				}
				bad := []byte(id)
				bad[pos] = c
				if Validate(string(bad)) == nil {
					t.Fatalf("substitution at %d in %q -> %q not detected", pos, id, bad)
				}
			}
		}
		for pos := range Len - 1 {
			for gap := 1; gap <= 2 && pos+gap < Len; gap++ {
				if id[pos] == id[pos+gap] {
					continue
				}
				bad := []byte(id)
				bad[pos], bad[pos+gap] = bad[pos+gap], bad[pos]
				if Validate(string(bad)) == nil {
					t.Fatalf("swap of %d and %d in %q -> %q not detected", pos, pos+gap, id, bad)
				}
			}
		}
	}
}

func TestValidateRejects(t *testing.T) {
	good, err := New(bytes.NewReader([]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD})) // "04HMASW9NF6…"
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"empty":     "",
		"short":     good[:11],
		"long":      good + "0",
		"lowercase": strings.ToLower(good[:11]) + good[11:],
		"letter I":  "I" + good[1:],
		"letter U":  "U" + good[1:],
		"hyphen":    good[:4] + "-" + good[5:],
		"non-ascii": "証明" + good[6:],
	}
	for name, id := range tests {
		t.Run(name, func(t *testing.T) {
			err := Validate(id)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate(%q) = %v, want ErrInvalid", id, err)
			}
			if strings.Contains(err.Error(), id) && id != "" {
				t.Errorf("error message repeats the ID: %v", err)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	id, err := New(bytes.NewReader([]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, typed string
		ok          bool
	}{
		{"canonical", id, true},
		{"lower case", strings.ToLower(id), true},
		{"grouped", id[:4] + "-" + id[4:8] + " " + id[8:], true},
		{"ideographic space", id[:6] + "\u3000" + id[6:], true},
		{"O for zero", strings.ReplaceAll(id, "0", "O"), true},
		{"too long", id + id, false},
		{"mistyped", id[:3] + "Z" + id[4:], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.typed)
			if tc.ok && (err != nil || got != id) {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tc.typed, got, err, id)
			}
			if !tc.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Normalize(%q) = %q, %v; want ErrInvalid", tc.typed, got, err)
			}
		})
	}
	// I and L read as 1.
	one, err := New(bytes.NewReader([]byte{0x08, 0x42, 0x10, 0x84, 0x21, 0x08, 0x42})) // symbols "1" repeated
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(one, "11111111111") {
		t.Fatalf("fixture: New = %q, want eleven 1s", one)
	}
	if got, err := Normalize("IiLl" + one[4:]); err != nil || got != one {
		t.Fatalf("Normalize(I/L for 1) = %q, %v; want %q", got, err, one)
	}
}

// FuzzValidate checks that Validate never panics, that whatever it accepts
// is canonical, and that Normalize is the identity on valid IDs.
func FuzzValidate(f *testing.F) {
	seeds, err := filepath.Glob("testdata/seeds/*.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(strings.TrimSpace(string(b)))
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := Validate(s); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if len(s) != Len {
			t.Fatalf("accepted %q of length %d", s, len(s))
		}
		for i := range len(s) {
			if !strings.ContainsRune(Alphabet, rune(s[i])) {
				t.Fatalf("accepted %q with symbol %q", s, s[i])
			}
		}
		if s[Len-1] != refCheck(s[:Len-1]) {
			t.Fatalf("accepted %q whose check symbol disagrees with the reference", s)
		}
		if n, err := Normalize(s); err != nil || n != s {
			t.Fatalf("Normalize(%q) = %q, %v", s, n, err)
		}
	})
}
