package mynumber

import (
	"errors"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		// Known-answer values computed by hand from the ordinance's formula.
		{"123456789018", nil},
		{"000000000000", nil},
		{"111111111118", nil},
		{"123456789010", ErrCheckDigit},
		{"12345678901", ErrFormat},
		{"1234567890123", ErrFormat},
		{"12345678901a", ErrFormat},
		{"１２３４５６７８９０１８", ErrFormat},
		{"", ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if err := Validate(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("Validate(%q) = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestCompleteRoundTrip(t *testing.T) {
	for _, p := range []string{"00000000000", "12345678901", "99999999999", "31415926535", "27182818284"} {
		n, err := Complete(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(n); err != nil {
			t.Fatalf("Complete(%q) = %q does not validate: %v", p, n, err)
		}
		// Every other final digit must be refused.
		for d := byte('0'); d <= '9'; d++ {
			if d == n[11] {
				continue
			}
			if err := Validate(p + string(d)); !errors.Is(err, ErrCheckDigit) {
				t.Fatalf("Validate(%s%c) = %v, want ErrCheckDigit", p, d, err)
			}
		}
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("123456789018")
	f.Add("abc")
	f.Fuzz(func(t *testing.T, s string) {
		if Validate(s) == nil {
			if len(s) != 12 {
				t.Fatalf("accepted %d-byte value", len(s))
			}
		}
	})
}
