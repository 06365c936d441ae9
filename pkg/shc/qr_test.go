package shc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/skip2/go-qrcode"
)

// segments reads the mode indicators and character counts of the first two
// segments from a QR code's data codewords (ISO/IEC 18004 §7.4).
func segments(t *testing.T, raw []byte, version int) (modes [2]int, counts [2]int) {
	t.Helper()
	pos := 0
	read := func(n int) int {
		v := 0
		for range n {
			v = v<<1 | int(raw[pos/8]>>(7-pos%8)&1)
			pos++
		}
		return v
	}
	for i := range 2 {
		modes[i] = read(4)
		switch modes[i] {
		case 0b0100: // byte
			n := 8
			if version >= 10 {
				n = 16
			}
			counts[i] = read(n)
			pos += 8 * counts[i]
		case 0b0001: // numeric
			n := 10
			if version >= 27 {
				n = 14
			} else if version >= 10 {
				n = 12
			}
			counts[i] = read(n)
		default:
			t.Fatalf("segment %d has mode %04b", i, modes[i])
		}
	}
	return modes, counts
}

// TestQRCodeVersionAndSegments encodes QR text with skip2/go-qrcode at
// error correction L, decodes the image with gozxing, and checks what the
// specification asks: version 22 or lower, and two segments, byte "shc:/"
// then numeric. skip2 picks segment modes itself (it has no API to force
// them); this test shows the choice it makes is the specified one.
func TestQRCodeVersionAndSegments(t *testing.T) {
	is := testIssuer(t)
	taro, err := is.Issue(certtest.Resident(t, "taro", certificate.Domestic), pinnedNow)
	if err != nil {
		t.Fatal(err)
	}
	// The largest JWS the specification allows in one code.
	largest, err := EncodeQR(strings.Repeat("eyJ6", MaxJWSLen/4) + "eyJ")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"taro": taro, "largest": largest} {
		t.Run(name, func(t *testing.T) {
			q, err := qrcode.New(text, qrcode.Low)
			if err != nil {
				t.Fatal(err)
			}
			if q.VersionNumber > 22 {
				t.Fatalf("QR version %d, want ≤ 22", q.VersionNumber)
			}
			bmp, err := gozxing.NewBinaryBitmapFromImage(q.Image(4 * (17 + 4*q.VersionNumber + 8)))
			if err != nil {
				t.Fatal(err)
			}
			res, err := zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
			if err != nil {
				t.Fatalf("gozxing: %v", err)
			}
			if res.GetText() != text {
				t.Fatal("decoded text differs from the encoded text")
			}
			if ec := res.GetResultMetadata()[gozxing.ResultMetadataType_ERROR_CORRECTION_LEVEL]; ec != "L" {
				t.Errorf("error correction %v, want L", ec)
			}
			modes, counts := segments(t, res.GetRawBytes(), q.VersionNumber)
			if modes != [2]int{0b0100, 0b0001} || counts[0] != len(QRPrefix) || counts[1] != len(text)-len(QRPrefix) {
				t.Errorf("segments = modes %04b counts %v, want byte %d then numeric %d", modes, counts, len(QRPrefix), len(text)-len(QRPrefix))
			}
			t.Logf("%s: %d characters of JWS, QR version %d", name, (len(text)-len(QRPrefix))/2, q.VersionNumber)
		})
	}
}

// fuzzSeeds returns the files under testdata/fuzz-seeds/<dir>.
func fuzzSeeds(f *testing.F, dir string) []string {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "fuzz-seeds", dir, "*"))
	if err != nil {
		f.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	if len(out) == 0 {
		f.Fatalf("no seeds in testdata/fuzz-seeds/%s", dir)
	}
	return out
}

// FuzzDecodeQR: DecodeQR never panics, and whatever it accepts re-encodes to
// the same text.
func FuzzDecodeQR(f *testing.F) {
	for _, s := range fuzzSeeds(f, "qr") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		jws, err := DecodeQR(text)
		if err != nil {
			if !errors.Is(err, ErrQRText) && !errors.Is(err, ErrChunked) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(jws) > MaxJWSLen {
			return // decodable but not ours to re-encode
		}
		again, err := EncodeQR(jws)
		if err != nil || again != text {
			t.Fatalf("round trip: %q -> %q -> %q, %v", text, jws, again, err)
		}
	})
}

// FuzzVerifyJWS: parsing and verifying arbitrary JWS text never panics, and
// nothing but the specification's genuine example verifies under its keys.
func FuzzVerifyJWS(f *testing.F) {
	for _, s := range fuzzSeeds(f, "jws") {
		f.Add(s)
	}
	keys := specJWKS(f)
	genuine := map[string]bool{readSpec(f, "example-00-d-jws.txt"): true, readSpec(f, "example-03-d-jws.txt"): true}
	f.Fuzz(func(t *testing.T, jws string) {
		if j, err := ParseJWS(jws); err == nil && len(j.Signature) != 64 {
			t.Fatalf("ParseJWS accepted a %d-byte signature", len(j.Signature))
		}
		card, err := VerifyJWS(jws, VerifyOptions{Keys: keys, Now: pinnedNow})
		if err == nil && !genuine[jws] {
			t.Fatalf("forged JWS verified: %+v", card)
		}
	})
}
