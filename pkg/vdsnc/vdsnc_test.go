package vdsnc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/skip2/go-qrcode"
)

func TestTravelName(t *testing.T) {
	tests := []struct {
		family, given, want string
		err                 error
	}{
		{"SHIKEN", "HANAKO", "SHIKEN HANAKO", nil},
		{"Shiken", "Hanako", "SHIKEN HANAKO", nil},
		{"NGUYEN", "VAN AN", "NGUYEN VAN AN", nil},
		{" nguyen ", "van   an", "NGUYEN VAN AN", nil},
		{"SMITH-JONES", "JEAN-LUC", "SMITH JONES JEAN LUC", nil},
		{"O'BRIEN", "SEAN", "OBRIEN SEAN", nil},
		{"MADONNA", "", "MADONNA", nil},
		// 39 characters exactly stays whole.
		{strings.Repeat("A", 20), strings.Repeat("B", 18), strings.Repeat("A", 20) + " " + strings.Repeat("B", 18), nil},
		// The given name is cut first, from the end…
		{strings.Repeat("A", 20), "BBBBBBBBBB CCCCCCCCCC", strings.Repeat("A", 20) + " BBBBBBBBBB CCCCCCC", nil},
		// …and never at a space.
		{strings.Repeat("A", 27), "BBBBBBBBBB CCCC", strings.Repeat("A", 27) + " BBBBBBBBBB", nil},
		// The family name only when the given name is down to its initial.
		{strings.Repeat("A", 45), "BOB", strings.Repeat("A", 37) + " B", nil},
		{strings.Repeat("A", 45), "", strings.Repeat("A", 39), nil},
		{"試験", "花子", "", ErrNotASCII},
		{"SHIKÉN", "HANAKO", "", ErrNotASCII},
		{"SHIKEN", "HANAKO2", "", ErrCertificate},
		{"SHIKEN<<", "HANAKO", "", ErrCertificate},
		{"", "HANAKO", "", ErrCertificate},
	}
	for _, tc := range tests {
		t.Run(tc.family+"/"+tc.given, func(t *testing.T) {
			got, err := TravelName(tc.family, tc.given)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("TravelName = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
			if err == nil && len(got) > MaxNameLen {
				t.Fatalf("%q is longer than %d", got, MaxNameLen)
			}
		})
	}
}

func TestSexCode(t *testing.T) {
	for in, want := range map[string]string{"1": "M", "2": "F", "9": "X", "0": "X", "": ""} {
		if got, err := SexCode(in); err != nil || got != want {
			t.Errorf("SexCode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"3", "M", "F", "12"} {
		if _, err := SexCode(in); !errors.Is(err, ErrCertificate) {
			t.Errorf("SexCode(%q) error = %v", in, err)
		}
	}
}

// TestDocumentTypeListDER pins the encoding of the ICAO document type list
// extension: SEQUENCE { INTEGER 0, SET { PrintableString "NV" } }.
func TestDocumentTypeListDER(t *testing.T) {
	p := fixturePKI(t)
	var got []byte
	for _, e := range p.signer.Extensions {
		if e.Id.Equal(OIDDocumentTypeList) {
			got = e.Value
			if e.Critical {
				t.Error("document type list is marked critical")
			}
		}
	}
	if want := "3009020100310413024e56"; hex.EncodeToString(got) != want {
		t.Fatalf("extension value = %x, want %s", got, want)
	}
	if len(p.signer.UnknownExtKeyUsage) != 1 || !p.signer.UnknownExtKeyUsage[0].Equal(OIDExtKeyUsageVDSNC) {
		t.Fatalf("EKU = %v", p.signer.UnknownExtKeyUsage)
	}
	if p.csca.Subject.CommonName != "Japan Test CSCA" || p.csca.Subject.Country[0] != "JP" || !p.csca.IsCA ||
		p.csca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CSCA = %+v", p.csca.Subject)
	}
	if p.signer.IsCA || p.signer.KeyUsage != x509.KeyUsageDigitalSignature ||
		!bytes.Equal(p.signer.AuthorityKeyId, p.csca.SubjectKeyId) || len(p.signer.SubjectKeyId) == 0 {
		t.Errorf("signer certificate profile wrong: CA=%v KU=%v", p.signer.IsCA, p.signer.KeyUsage)
	}
	// Two document types are encoded as a DER SET, sorted.
	two := freshPKI(t, SignerTemplate{CommonName: "s", Country: "JP", NotBefore: pinnedNow, NotAfter: pinnedNow.AddDate(1, 0, 0), DocumentTypes: []string{"NV", "NT"}})
	types, err := documentTypes(two.signer)
	if err != nil || strings.Join(types, ",") != "NT,NV" {
		t.Fatalf("document types = %v, %v", types, err)
	}
}

// TestBuildKnownAnswer pins the canonical signed bytes for demo residents.
func TestBuildKnownAnswer(t *testing.T) {
	for _, id := range []string{"hanako", "taro", "an"} {
		t.Run(id, func(t *testing.T) {
			d, err := Build(certtest.Resident(t, id, certificate.Overseas))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			canon, err := jcs.Transform(raw)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, id+"-data.json", append(canon, '\n'))
		})
	}
	d, err := Build(certtest.Resident(t, "taro", certificate.Overseas))
	if err != nil {
		t.Fatal(err)
	}
	// Seven doses of five products: grouped by product in first-use order.
	type group struct {
		nam  string
		seqs []int
	}
	want := []group{
		{"Comirnaty", []int{1, 2, 4}},
		{"Spikevax", []int{3}},
		{"Comirnaty Original/Omicron BA.4-5", []int{5}},
		{"Spikevax Bivalent Original/Omicron BA.4-5", []int{6}},
		{"Comirnaty Omicron XBB.1.5", []int{7}},
	}
	if len(d.Msg.Ve) != len(want) {
		t.Fatalf("ve has %d groups, want %d", len(d.Msg.Ve), len(want))
	}
	for i, g := range want {
		v := d.Msg.Ve[i]
		var seqs []int
		for _, e := range v.Vd {
			seqs = append(seqs, e.Seq)
			if e.Ctr != "JPN" || e.Adm != AdministeringAuthority {
				t.Errorf("ve[%d] event = %+v", i, e)
			}
		}
		if v.Nam != g.nam || v.Dis != "RA01.0" || v.Des != "XM0GQ8" || !equalInts(seqs, g.seqs) {
			t.Errorf("ve[%d] = %s %v (%s, %s), want %s %v", i, v.Nam, seqs, v.Des, v.Dis, g.nam, g.seqs)
		}
	}
	if p := d.Msg.Pid; p.N != "SHIKEN TARO" || p.Sex != "M" || p.Dob != "1942-11-30" || p.I != "TR7654321" {
		t.Errorf("pid = %+v", p)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBuildRejects(t *testing.T) {
	tests := map[string]func(c *certificate.Certificate){
		"domestic":       func(c *certificate.Certificate) { c.Kind = certificate.Domestic },
		"kanji name":     func(c *certificate.Certificate) { c.Holder.RomanFamily = "試験" },
		"no roman name":  func(c *certificate.Certificate) { c.Holder.RomanFamily = "" },
		"long passport":  func(c *certificate.Certificate) { c.Holder.PassportNumber = "TK12345678901" },
		"no passport":    func(c *certificate.Certificate) { c.Holder.PassportNumber = "" },
		"long id":        func(c *certificate.Certificate) { c.ID = "0123456789ABC" },
		"unknown vacc":   func(c *certificate.Certificate) { c.Doses[0].Product = "sputnik" },
		"long lot":       func(c *certificate.Certificate) { c.Doses[0].Lot = strings.Repeat("1", 21) },
		"bad country":    func(c *certificate.Certificate) { c.Doses[0].Country = "JP" },
		"bad sex":        func(c *certificate.Certificate) { c.Holder.Sex = "F" },
		"bad birth date": func(c *certificate.Certificate) { c.Holder.BirthDate = "1985/04/02" },
		"no doses":       func(c *certificate.Certificate) { c.Doses = nil },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			c := certtest.Resident(t, "hanako", certificate.Overseas)
			mutate(c)
			if _, err := Build(c); err == nil {
				t.Fatal("Build accepted the certificate")
			}
		})
	}
}

// signFixture signs hanako's document with the fixture PKI and pins it as
// a known answer (ECDSA signatures are randomized, so the file is written
// once, with -update, and verified ever after).
func signFixture(t *testing.T, p *testPKI) []byte {
	t.Helper()
	path := filepath.Join("testdata", "hanako-signed.json")
	if _, err := os.Stat(path); err != nil && *update {
		s, err := NewSigner(p.signerKey, p.signerDER)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Build(certtest.Resident(t, "hanako", certificate.Overseas))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := s.Sign(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(doc, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

func TestVerifyFixture(t *testing.T) {
	p := fixturePKI(t)
	doc := signFixture(t, p)
	v, err := Verify(doc, VerifyOptions{CSCAs: []*x509.Certificate{p.csca}, Now: pinnedNow})
	if err != nil {
		t.Fatal(err)
	}
	if v.Data.Msg.Pid.N != "SHIKEN HANAKO" || v.Data.Msg.UVCI != certtest.Resident(t, "hanako", certificate.Overseas).ID || v.Signer.Subject.CommonName != "Japan Test VDS-NC Signer 1" {
		t.Errorf("verified = %+v", v.Data.Msg)
	}
	if !IsVDSNC(doc) {
		t.Error("IsVDSNC(signed document) = false")
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	p := fixturePKI(t)
	s, err := NewSigner(p.signerKey, p.signerDER)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"hanako", "taro", "an"} {
		t.Run(id, func(t *testing.T) {
			c := certtest.Resident(t, id, certificate.Overseas)
			d, err := Build(c)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := s.Sign(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range doc {
				if b >= 0x80 {
					t.Fatal("document is not ASCII")
				}
			}
			v, err := Verify(doc, VerifyOptions{CSCAs: []*x509.Certificate{p.csca}, Now: pinnedNow})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(v.Data)
			want, _ := json.Marshal(d)
			if !bytes.Equal(got, want) {
				t.Fatalf("round trip changed data:\n got %s\nwant %s", got, want)
			}
			n := 0
			for _, ve := range v.Data.Msg.Ve {
				n += len(ve.Vd)
			}
			if n != len(c.Doses) {
				t.Fatalf("%d doses verified, certificate has %d", n, len(c.Doses))
			}
			checkPadding(t, doc, p.csca)
		})
	}
}

// checkPadding checks that a signed document carries padded base64url in
// sig.cer and sig.sigvl (deployed verifiers, e.g. PathCheck's vds-sdk,
// rebuild a PEM block from cer and refuse an unpadded body), and that
// Verify accepts the same document with the padding stripped, as other
// issuers write it.
func checkPadding(t *testing.T, doc []byte, csca *x509.Certificate) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	sig := m["sig"].(map[string]any)
	for _, field := range []string{"cer", "sigvl"} {
		v := sig[field].(string)
		if _, err := base64.URLEncoding.Strict().DecodeString(v); err != nil || len(v)%4 != 0 {
			t.Errorf("sig.%s is not padded base64url (%d characters): %v", field, len(v), err)
		}
		sig[field] = strings.TrimRight(v, "=")
	}
	unpadded, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(unpadded, VerifyOptions{CSCAs: []*x509.Certificate{csca}, Now: pinnedNow}); err != nil {
		t.Errorf("the same document without padding does not verify: %v", err)
	}
}

// resign signs arbitrary data bytes as a VDS-NC with the given key and cert.
func resign(t *testing.T, data []byte, key *ecdsa.PrivateKey, certDER []byte) []byte {
	t.Helper()
	canon, err := jcs.Transform(data)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(canon)
	der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rawSignature(der)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(map[string]any{"data": json.RawMessage(data),
		"sig": Signature{Alg: "ES256", Cer: b64.EncodeToString(certDER), Sigvl: b64.EncodeToString(raw)}})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestVerifyRejects(t *testing.T) {
	p := fixturePKI(t)
	doc := signFixture(t, p)
	trusted := VerifyOptions{CSCAs: []*x509.Certificate{p.csca}, Now: pinnedNow}

	// Tampering with one field of data, keeping the signature.
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	msg := func(m map[string]any) map[string]any { return m["data"].(map[string]any)["msg"].(map[string]any) }
	vd0 := func(m map[string]any) map[string]any {
		return msg(m)["ve"].([]any)[0].(map[string]any)["vd"].([]any)[0].(map[string]any)
	}
	other := freshPKI(t, SignerTemplate{CommonName: "other", Country: "JP", NotBefore: pinnedNow.AddDate(-1, 0, 0), NotAfter: pinnedNow.AddDate(1, 0, 0)})
	expired := freshPKI(t, SignerTemplate{CommonName: "expired", Country: "JP", NotBefore: pinnedNow.AddDate(-2, 0, 0), NotAfter: pinnedNow.AddDate(-1, 0, 0)})
	notNV := freshPKI(t, SignerTemplate{CommonName: "test only", Country: "JP", NotBefore: pinnedNow.AddDate(-1, 0, 0), NotAfter: pinnedNow.AddDate(1, 0, 0), DocumentTypes: []string{"NT"}})
	dataOf := func(d []byte) []byte {
		var w struct{ Data json.RawMessage }
		if err := json.Unmarshal(d, &w); err != nil {
			t.Fatal(err)
		}
		return w.Data
	}
	noEKU := certWithout(t, p, "eku")
	noDocType := certWithout(t, p, "doctype")

	tests := []struct {
		name string
		doc  []byte
		opts VerifyOptions
		want error
	}{
		{"name changed", edit(func(m map[string]any) { msg(m)["pid"].(map[string]any)["n"] = "SHIKEN HANAKA" }), trusted, ErrSignature},
		{"birth date changed", edit(func(m map[string]any) { msg(m)["pid"].(map[string]any)["dob"] = "1985-04-03" }), trusted, ErrSignature},
		{"uvci changed", edit(func(m map[string]any) { msg(m)["uvci"] = "000000000000" }), trusted, ErrSignature},
		{"lot changed", edit(func(m map[string]any) { vd0(m)["lot"] = "FA5766" }), trusted, ErrSignature},
		{"dose number changed", edit(func(m map[string]any) { vd0(m)["seq"] = 3 }), trusted, ErrSignature},
		{"field added", edit(func(m map[string]any) { msg(m)["pid"].(map[string]any)["ai"] = "X" }), trusted, ErrSignature},
		{"signature changed", edit(func(m map[string]any) {
			s := m["sig"].(map[string]any)
			v := []byte(s["sigvl"].(string))
			v[10] ^= 1
			s["sigvl"] = string(v)
		}), trusted, ErrSignature},
		{"other signer's certificate", edit(func(m map[string]any) {
			m["sig"].(map[string]any)["cer"] = b64.EncodeToString(other.signerDER)
		}), VerifyOptions{CSCAs: []*x509.Certificate{p.csca, other.csca}, Now: pinnedNow}, ErrSignature},
		{"untrusted CSCA", doc, VerifyOptions{CSCAs: []*x509.Certificate{other.csca}, Now: pinnedNow}, ErrUntrusted},
		{"no CSCA", doc, VerifyOptions{Now: pinnedNow}, ErrUntrusted},
		{"signer expired", resign(t, dataOf(doc), expired.signerKey, expired.signerDER), VerifyOptions{CSCAs: []*x509.Certificate{expired.csca}, Now: pinnedNow}, ErrUntrusted},
		{"signer not yet valid", doc, VerifyOptions{CSCAs: []*x509.Certificate{p.csca}, Now: time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)}, ErrUntrusted},
		{"no NV document type", resign(t, dataOf(doc), notNV.signerKey, notNV.signerDER), VerifyOptions{CSCAs: []*x509.Certificate{notNV.csca}, Now: pinnedNow}, ErrSignerCert},
		{"no VDS-NC EKU", resign(t, dataOf(doc), p.signerKey, noEKU), trusted, ErrSignerCert},
		{"no document type list", resign(t, dataOf(doc), p.signerKey, noDocType), trusted, ErrSignerCert},
		{"test, not vaccination", resign(t, bytes.Replace(dataOf(doc), []byte(`"icao.vacc"`), []byte(`"icao.test"`), 1), p.signerKey, p.signerDER), trusted, ErrHeader},
		{"long name, signed", resign(t, bytes.Replace(dataOf(doc), []byte(`"SHIKEN HANAKO"`), []byte(`"`+strings.Repeat("A", 40)+`"`), 1), p.signerKey, p.signerDER), trusted, ErrContentRule},
		{"not JSON", []byte("shc:/1234"), trusted, ErrFormat},
		{"too large", append(doc, bytes.Repeat([]byte(" "), MaxDocumentSize)...), trusted, ErrFormat},
		{"duplicate key", bytes.Replace(doc, []byte(`"uvci":`), []byte(`"uvci":"X","uvci":`), 1), trusted, ErrFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(tc.doc, tc.opts); !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
		})
	}
	// Re-ordering keys and adding whitespace does not change JCS(data).
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, doc, "", "  "); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(pretty.Bytes(), trusted); err != nil {
		t.Fatalf("pretty-printed document: %v", err)
	}
}

// certWithout issues, from the fixture CSCA, a certificate for the fixture
// signer key that lacks the VDS-NC EKU ("eku") or the document type list
// ("doctype").
func certWithout(t *testing.T, p *testPKI, missing string) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "incomplete signer", Country: []string{"JP"}},
		NotBefore:    pinnedNow.AddDate(-1, 0, 0),
		NotAfter:     pinnedNow.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	ext, _ := asn1.Marshal(documentTypeListSyntax{DocTypeList: []string{"NV"}})
	if missing != "eku" {
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{OIDExtKeyUsageVDSNC}
	}
	if missing != "doctype" {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: OIDDocumentTypeList, Value: ext}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.csca, &p.signerKey.PublicKey, p.cscaKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestSignerRejects(t *testing.T) {
	p := fixturePKI(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := NewSigner(other, p.signerDER); !errors.Is(err, ErrKey) {
		t.Errorf("key not matching the certificate: %v", err)
	}
	if _, err := NewSigner(p.signerKey, p.cscaDER); !errors.Is(err, ErrSignerCert) {
		t.Errorf("CSCA certificate as signer certificate: %v", err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewSigner(p384, p.signerDER); !errors.Is(err, ErrKey) {
		t.Errorf("P-384 key: %v", err)
	}
	if _, err := CreateBarcodeSigner(rand.Reader, SignerTemplate{CommonName: "x", Country: "JP", NotBefore: pinnedNow, NotAfter: pinnedNow.AddDate(1, 0, 0)},
		&other.PublicKey, p.cscaDER, other); !errors.Is(err, ErrPKI) {
		t.Errorf("CA key not matching the CSCA: %v", err)
	}
	if _, err := CreateCSCA(rand.Reader, CSCATemplate{CommonName: "x", Country: "JPN", NotBefore: pinnedNow, NotAfter: pinnedNow.AddDate(1, 0, 0)}, other); !errors.Is(err, ErrPKI) {
		t.Errorf("three-letter country: %v", err)
	}
}

// TestQRCode checks the largest demo document (seven doses) fits a QR code
// in byte mode at error correction M and that gozxing reads it back.
// skip2/go-qrcode chooses segment modes itself and may put long digit runs
// in numeric segments; what matters is that the document fits byte mode:
// the test checks its length against the byte-mode capacity of version 40-M.
func TestQRCode(t *testing.T) {
	p := fixturePKI(t)
	s, err := NewSigner(p.signerKey, p.signerDER)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Build(certtest.Resident(t, "taro", certificate.Overseas))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := s.Sign(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc) > MaxQRBytes {
		t.Fatalf("document is %d bytes; byte mode at M holds %d", len(doc), MaxQRBytes)
	}
	q, err := qrcode.New(string(doc), qrcode.Medium)
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(q.Image(4 * (17 + 4*q.VersionNumber + 8)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatalf("gozxing: %v", err)
	}
	if res.GetText() != string(doc) {
		t.Fatal("decoded text differs")
	}
	if ec := res.GetResultMetadata()[gozxing.ResultMetadataType_ERROR_CORRECTION_LEVEL]; ec != "M" {
		t.Errorf("error correction %v, want M", ec)
	}
	if _, err := Verify([]byte(res.GetText()), VerifyOptions{CSCAs: []*x509.Certificate{p.csca}, Now: pinnedNow}); err != nil {
		t.Fatalf("scanned document does not verify: %v", err)
	}
	t.Logf("taro: %d bytes, QR version %d at M", len(doc), q.VersionNumber)
}

// TestTooLarge builds the largest certificate the model allows (ten doses of
// ten products, 20-character lots, a 39-character name), which does not fit
// byte mode at M: Sign must refuse it rather than hand out an unscannable
// code.
func TestTooLarge(t *testing.T) {
	p := fixturePKI(t)
	s, err := NewSigner(p.signerKey, p.signerDER)
	if err != nil {
		t.Fatal(err)
	}
	c := certtest.Resident(t, "taro", certificate.Overseas)
	all := vaccine.All()
	c.Doses = c.Doses[:1]
	for len(c.Doses) < certificate.MaxDoses {
		d := c.Doses[len(c.Doses)-1]
		d.Number++
		d.Product = all[len(c.Doses)].Code
		c.Doses = append(c.Doses, d)
	}
	for i := range c.Doses {
		c.Doses[i].Lot = strings.Repeat("L", MaxLotLen)
	}
	c.Holder.RomanFamily, c.Holder.RomanGiven = strings.Repeat("F", 19), strings.Repeat("G", 19)
	d, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(d); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Sign error = %v, want ErrTooLarge", err)
	}
}

// FuzzVerify: Verify never panics on arbitrary input, and anything it
// accepts under the fixture CSCA carries exactly the fixture's signed data.
func FuzzVerify(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "fuzz-seeds", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	p := fixturePKI(f)
	fixture, err := os.ReadFile(filepath.Join("testdata", "hanako-signed.json"))
	if err != nil {
		f.Fatal(err)
	}
	var w struct{ Data json.RawMessage }
	if err := json.Unmarshal(fixture, &w); err != nil {
		f.Fatal(err)
	}
	want, err := jcs.Transform(w.Data)
	if err != nil {
		f.Fatal(err)
	}
	opts := VerifyOptions{CSCAs: []*x509.Certificate{p.csca}, Now: pinnedNow}
	f.Fuzz(func(t *testing.T, doc []byte) {
		v, err := Verify(doc, opts)
		if err != nil {
			return
		}
		raw, _ := json.Marshal(v.Data)
		got, err := jcs.Transform(raw)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("accepted a document with other content: %s", got)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	p := fixturePKI(b)
	s, err := NewSigner(p.signerKey, p.signerDER)
	if err != nil {
		b.Fatal(err)
	}
	c := certtest.Resident(b, "taro", certificate.Overseas)
	for b.Loop() {
		d, err := Build(c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Sign(d); err != nil {
			b.Fatal(err)
		}
	}
}
