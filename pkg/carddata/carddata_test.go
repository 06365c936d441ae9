package carddata

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "regenerate testdata keys and golden files")

// testKey loads an RSA test key from testdata, generating it with -update.
func testKey(t testing.TB, name string) *rsa.PrivateKey {
	t.Helper()
	path := filepath.Join("testdata", name)
	if _, err := os.Stat(path); *update && err != nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		der := x509.MarshalPKCS1PrivateKey(k)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create)", err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyID(s string) (id [KeyIDLen]byte) {
	copy(id[:], s)
	return id
}

var testItems = FourItems{
	Name:      "試験　花子",
	Address:   "北海道旭川市６条通９丁目４６番地",
	BirthDate: "19850402",
	Sex:       SexFemale,
}

const testNumber = "123456789018"

type fixture struct {
	auth     Authority
	verifier *Verifier
	raw      Raw
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	auth := Authority{KeyID: keyID("JLIS-TEST-CA-G1"), Signer: testKey(t, "issuer-g1.pem")}
	ik, err := auth.IssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(ik)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := auth.Personalize(testNumber, testItems, testKey(t, "ap.pem"), keyID("CARD-0001"))
	if err != nil {
		t.Fatal(err)
	}
	return fixture{auth, v, raw}
}

func TestGolden(t *testing.T) {
	f := newFixture(t)
	files := map[string][]byte{
		"ef0001.hex": f.raw.MyNumber, "ef0002.hex": f.raw.FourItems,
		"ef0003.hex": f.raw.Signature, "ef0004.hex": f.raw.Certificate,
	}
	for name, got := range files {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: personalisation output changed (PKCS#1 v1.5 is deterministic); got %x", name, got)
		}
	}
	// The layout sizes the brief gives for real cards.
	if n := len(f.raw.Signature); n != 336 {
		t.Errorf("EF 0003 is %d bytes, want 336", n)
	}
	if n := len(f.raw.Certificate); n != 568 {
		t.Errorf("EF 0004 is %d bytes, want 568", n)
	}
	if n := len(f.raw.MyNumber); n != 14 {
		t.Errorf("EF 0001 TLV is %d bytes, want 14", n)
	}
}

func TestVerifyGood(t *testing.T) {
	f := newFixture(t)
	d, err := f.verifier.Verify(f.raw)
	if err != nil {
		t.Fatal(err)
	}
	if d.MyNumber != testNumber || d.FourItems != testItems {
		t.Fatalf("Verify returned %+v", d)
	}
	if d.IssuerKeyID != f.auth.KeyID {
		t.Fatalf("issuer key ID %X", d.IssuerKeyID)
	}
}

func TestVerifyPaddingTolerated(t *testing.T) {
	f := newFixture(t)
	raw := f.raw
	raw.MyNumber = append(append([]byte(nil), raw.MyNumber...), 0xFF, 0xFF, 0xFF)
	if _, err := f.verifier.Verify(raw); err != nil {
		t.Fatalf("EF 0001 with trailing padding: %v", err)
	}
}

// Every single-byte change to the data must be caught, except in the DF 21
// offsets header, which no signature covers and Verify therefore never uses.
func TestVerifyDetectsEveryByte(t *testing.T) {
	f := newFixture(t)
	header, _, err := fourItemsParts(f.raw.FourItems)
	if err != nil {
		t.Fatal(err)
	}
	headerEnd := len(f.raw.FourItems) - len(f.raw.FourItems[bytes.Index(f.raw.FourItems, header.Raw)+len(header.Raw):])
	check := func(name string, ef func(*Raw) []byte) {
		t.Run(name, func(t *testing.T) {
			n := len(ef(&f.raw))
			for i := 0; i < n; i++ {
				if name == "EF0002" && i >= headerEnd-8 && i < headerEnd {
					raw := clone(f.raw)
					ef(&raw)[i] ^= 0x01
					if d, err := f.verifier.Verify(raw); err != nil || d.FourItems != testItems {
						t.Fatalf("unsigned header byte %d changed the result: %v", i, err)
					}
					continue
				}
				raw := clone(f.raw)
				ef(&raw)[i] ^= 0x01
				if _, err := f.verifier.Verify(raw); err == nil {
					t.Fatalf("flipping byte %d of %s was not detected", i, name)
				}
			}
		})
	}
	check("EF0001", func(r *Raw) []byte { return r.MyNumber })
	check("EF0002", func(r *Raw) []byte { return r.FourItems })
	check("EF0003", func(r *Raw) []byte { return r.Signature })
	check("EF0004", func(r *Raw) []byte { return r.Certificate })
}

func clone(r Raw) Raw {
	return Raw{
		MyNumber:    bytes.Clone(r.MyNumber),
		FourItems:   bytes.Clone(r.FourItems),
		Signature:   bytes.Clone(r.Signature),
		Certificate: bytes.Clone(r.Certificate),
	}
}

func TestVerifyErrors(t *testing.T) {
	f := newFixture(t)
	other := Authority{KeyID: keyID("JLIS-TEST-CA-G2"), Signer: testKey(t, "issuer-g2.pem")}
	// A card re-personalised with a different number but the original hashes.
	swapped, err := f.auth.Personalize("000000000000", testItems, testKey(t, "ap.pem"), keyID("CARD-0001"))
	if err != nil {
		t.Fatal(err)
	}
	otherItems := testItems
	otherItems.Name = "試験　太郎"
	swappedItems, err := f.auth.Personalize(testNumber, otherItems, testKey(t, "ap.pem"), keyID("CARD-0001"))
	if err != nil {
		t.Fatal(err)
	}
	otherCard, err := other.Personalize(testNumber, testItems, testKey(t, "ap.pem"), keyID("CARD-0001"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(r *Raw)
		want   error
	}{
		{"my number replaced", func(r *Raw) { r.MyNumber = swapped.MyNumber }, ErrMyNumberHash},
		{"four items replaced", func(r *Raw) { r.FourItems = swappedItems.FourItems }, ErrFourItemsHash},
		{"unknown issuer", func(r *Raw) { r.Certificate = otherCard.Certificate }, ErrUnknownIssuer},
		{"certificate signature", func(r *Raw) { r.Certificate[len(r.Certificate)-1] ^= 1 }, ErrCertificateSignature},
		{"certificate key", func(r *Raw) { r.Certificate[60] ^= 1 }, ErrCertificateSignature},
		{"data signature", func(r *Raw) { r.Signature[len(r.Signature)-1] ^= 1 }, ErrDataSignature},
		{"hash changed", func(r *Raw) { r.Signature[10] ^= 1 }, ErrDataSignature},
		{"empty", func(r *Raw) { *r = Raw{} }, ErrMalformed},
		{"truncated certificate", func(r *Raw) { r.Certificate = r.Certificate[:100] }, ErrMalformed},
		{"four items as my number", func(r *Raw) { r.MyNumber = r.FourItems }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := clone(f.raw)
			tt.mutate(&raw)
			_, err := f.verifier.Verify(raw)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), testNumber) {
				t.Fatalf("error leaks My Number: %v", err)
			}
		})
	}
}

func TestTwoGenerations(t *testing.T) {
	f := newFixture(t)
	g2 := Authority{KeyID: keyID("JLIS-TEST-CA-G2"), Signer: testKey(t, "issuer-g2.pem")}
	k1, _ := f.auth.IssuerKey()
	k2, _ := g2.IssuerKey()
	v, err := NewVerifier(k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	card2, err := g2.Personalize(testNumber, testItems, testKey(t, "ap.pem"), keyID("CARD-0002"))
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]Raw{"g1": f.raw, "g2": card2} {
		if _, err := v.Verify(raw); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewVerifier(k1, k1); err == nil {
		t.Error("duplicate key ID accepted")
	}
	if _, err := NewVerifier(); err == nil {
		t.Error("empty trust set accepted")
	}
}

func TestIssuerKeysPEMRoundTrip(t *testing.T) {
	f := newFixture(t)
	k, _ := f.auth.IssuerKey()
	b, err := MarshalIssuerKey(k)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseIssuerKeys(append(b, b...))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].KeyID != k.KeyID || !keys[0].PublicKey.Equal(k.PublicKey) {
		t.Fatalf("round trip gave %+v", keys)
	}
	for _, bad := range []string{"", "garbage", strings.Replace(string(b), "Key-Id", "Key-Name", 1)} {
		if _, err := ParseIssuerKeys([]byte(bad)); err == nil {
			t.Errorf("ParseIssuerKeys(%.20q) accepted", bad)
		}
	}
}

func TestLongAddressNeedsChunks(t *testing.T) {
	f := newFixture(t)
	items := testItems
	items.Name = "髙橋　𠮷太郎"
	items.Address = strings.Repeat("東京都千代田区千代田一丁目一番一号", 6)
	raw, err := f.auth.Personalize(testNumber, items, testKey(t, "ap.pem"), keyID("CARD-0003"))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.FourItems) <= 256 {
		t.Fatalf("EF 0002 is only %d bytes", len(raw.FourItems))
	}
	d, err := f.verifier.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if d.FourItems != items {
		t.Fatalf("got %+v", d.FourItems)
	}
}

func TestDigestBindsEveryFile(t *testing.T) {
	f := newFixture(t)
	base := f.raw.Digest()
	// Moving a byte from one file to the next must change the digest.
	r := clone(f.raw)
	r.MyNumber = append(r.MyNumber, r.FourItems[0])
	r.FourItems = r.FourItems[1:]
	if r.Digest() == base {
		t.Fatal("digest ignores file boundaries")
	}
	w := clone(f.raw)
	w.Wipe()
	if w.MyNumber != nil {
		t.Fatal("Wipe left data")
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.raw.MyNumber, fx.raw.FourItems, fx.raw.Signature, fx.raw.Certificate)
	f.Add([]byte{0xD0, 0x0C}, []byte{0xFF, 0x20, 0x00}, []byte{}, []byte{0x7F, 0x21, 0x82, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, a, b, c, d []byte) {
		raw := Raw{MyNumber: a, FourItems: b, Signature: c, Certificate: d}
		data, err := fx.verifier.Verify(raw)
		if err == nil {
			// Only the genuine files may verify.
			if !bytes.Equal(bytes.TrimRight(a, "\x00\xff"), fx.raw.MyNumber) || !bytes.Equal(b, fx.raw.FourItems) {
				t.Fatalf("forged data verified: %+v", data)
			}
		}
		// Parsers must not panic on anything either.
		_, _ = ParseFourItems(b)
		_, _ = ParseMyNumber(a)
		_, _ = ParseSignatureFile(c)
		_, _ = ParseCertificate(d)
	})
}
