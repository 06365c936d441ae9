package lgcode

import (
	"errors"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		code string
		want error
	}{
		{"012041", nil}, // Asahikawa
		{"011002", nil}, // Sapporo
		{"112453", nil}, // Fujimino
		{"131016", nil}, // Chiyoda, Tokyo
		{"271004", nil}, // Osaka city
		{"012040", ErrCheckDigit},
		{"01204", ErrFormat},
		{"0120411", ErrFormat},
		{"01204a", ErrFormat},
		{"481009", ErrPrefecture},
		{"000000", ErrPrefecture},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			if err := Validate(tt.code); !errors.Is(err, tt.want) {
				t.Fatalf("Validate(%q) = %v, want %v", tt.code, err, tt.want)
			}
		})
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("012041")
	f.Fuzz(func(t *testing.T, s string) {
		if Validate(s) == nil && len(s) != 6 {
			t.Fatalf("accepted %q", s)
		}
	})
}
