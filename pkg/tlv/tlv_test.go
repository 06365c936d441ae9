package tlv

import (
	"bytes"
	"errors"
	"testing"
)

func TestReadHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		tag     Tag
		length  int
		hdr     int
		wantErr error
	}{
		{"one-byte tag", []byte{0xD0, 0x0C}, 0xD0, 12, 2, nil},
		{"two-byte private", []byte{0xDF, 0x22, 0x05}, 0xDF22, 5, 3, nil},
		{"constructed FF 20", []byte{0xFF, 0x20, 0x81, 0x90}, 0xFF20, 0x90, 4, nil},
		{"application 7F 21", []byte{0x7F, 0x21, 0x82, 0x02, 0x33}, 0x7F21, 0x233, 5, nil},
		{"5F 4E", []byte{0x5F, 0x4E, 0x82, 0x01, 0x29}, 0x5F4E, 297, 5, nil},
		{"three-byte tag", []byte{0xBF, 0x81, 0x01, 0x00}, 0xBF8101, 0, 4, nil},
		{"empty", nil, 0, 0, 0, ErrTruncated},
		{"tag cut", []byte{0xDF}, 0, 0, 0, ErrTruncated},
		{"length cut", []byte{0xDF, 0x22}, 0, 0, 0, ErrTruncated},
		{"81 cut", []byte{0xDF, 0x22, 0x81}, 0, 0, 0, ErrTruncated},
		{"82 cut", []byte{0xDF, 0x22, 0x82, 0x01}, 0, 0, 0, ErrTruncated},
		{"indefinite", []byte{0x30, 0x80}, 0, 0, 0, ErrBadLength},
		{"non-minimal 81", []byte{0x30, 0x81, 0x10}, 0, 0, 0, ErrBadLength},
		{"non-minimal 82", []byte{0x30, 0x82, 0x00, 0xFF}, 0, 0, 0, ErrBadLength},
		{"83 form", []byte{0x30, 0x83, 0x01, 0x00, 0x00}, 0, 0, 0, ErrBadLength},
		{"too long", []byte{0x30, 0x82, 0xFF, 0xFF}, 0, 0, 0, nil},
		{"five-byte tag", []byte{0xDF, 0x81, 0x81, 0x81, 0x01, 0x00}, 0, 0, 0, ErrBadTag},
		{"non-minimal tag", []byte{0xDF, 0x80, 0x01, 0x00}, 0, 0, 0, ErrBadTag},
		{"zero tag", []byte{0x00, 0x00}, 0, 0, 0, ErrBadTag},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag, n, h, err := ReadHeader(tt.in)
			if tt.name == "too long" {
				// 0xFFFF is within MaxLength; the value is simply absent.
				if err != nil || n != 0xFFFF {
					t.Fatalf("got %v %d", err, n)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (tag != tt.tag || n != tt.length || h != tt.hdr) {
				t.Fatalf("got %s/%d/%d, want %s/%d/%d", tag, n, h, tt.tag, tt.length, tt.hdr)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, tag := range []Tag{0x10, 0xD0, 0xDF21, 0xFF20, 0x7F21, 0x5F4E, 0xBF8101} {
		for _, n := range []int{0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x129, 0x1000} {
			v := bytes.Repeat([]byte{0xA5}, n)
			enc := Encode(tag, v)
			e, err := ParseOne(enc)
			if err != nil {
				t.Fatalf("%s/%d: %v", tag, n, err)
			}
			if e.Tag != tag || !bytes.Equal(e.Value, v) || !bytes.Equal(e.Raw, enc) {
				t.Fatalf("%s/%d: round trip mismatch", tag, n)
			}
		}
	}
}

func TestTagString(t *testing.T) {
	if s := Tag(0xDF22).String(); s != "DF 22" {
		t.Fatal(s)
	}
	if !Tag(0xFF20).Constructed() || Tag(0xDF22).Constructed() {
		t.Fatal("constructed bit")
	}
}

func TestParseOnePadding(t *testing.T) {
	enc := append(Encode(0xD0, []byte("123456789018")), 0xFF, 0x00)
	if _, err := ParseOne(enc); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseOne(append(enc, 0x01)); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("trailing data: %v", err)
	}
	if _, err := ParseOne(enc[:5]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestFind(t *testing.T) {
	els, err := ParseAll(append(Encode(0x10, []byte{1}), Encode(0x11, []byte{2})...))
	if err != nil {
		t.Fatal(err)
	}
	if e, err := Find(els, 0x11); err != nil || e.Value[0] != 2 {
		t.Fatal("Find 11")
	}
	if _, err := Find(els, 0x12); !errors.Is(err, ErrNotFound) {
		t.Fatal("Find missing")
	}
}

// FuzzParse checks that parsing never panics, that values stay within the
// input, and that whatever parses re-encodes to the same bytes (DER-minimal
// lengths make the encoding unique).
func FuzzParse(f *testing.F) {
	f.Add([]byte{0xFF, 0x20, 0x05, 0xDF, 0x22, 0x02, 'a', 'b'})
	f.Add([]byte{0x7F, 0x21, 0x82, 0x02, 0x33})
	f.Add([]byte{0xD0, 0x0C, '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '1', '8', 0xFF, 0xFF})
	f.Add([]byte{0xDF, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		els, err := ParseAll(b)
		if err != nil {
			return
		}
		var re []byte
		for _, e := range els {
			if len(e.Value) > len(b) {
				t.Fatal("value larger than input")
			}
			re = append(re, Encode(e.Tag, e.Value)...)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, re)
		}
	})
}
