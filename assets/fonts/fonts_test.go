package fonts

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestIPAexGothic pins the embedded file to the one README.md describes:
// refreshing the font must be deliberate (new hash, new golden PDFs).
func TestIPAexGothic(t *testing.T) {
	b := IPAexGothic()
	if len(b) < 12 || string(b[:4]) != "\x00\x01\x00\x00" {
		t.Fatalf("not a TrueType font (%d bytes)", len(b))
	}
	sum := sha256.Sum256(b)
	const want = "3b9955a5e437ffb24c41548e79296fa724822da21ee75dc1b94f6ccdb8f400dd"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("ipaexg.ttf SHA-256 = %s, want %s (update README.md and the golden PDFs if the font was refreshed on purpose)", got, want)
	}
}
