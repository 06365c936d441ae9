package certverify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-pdf/fpdf"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
	"github.com/skip2/go-qrcode"
)

var now = time.Date(2024, 4, 1, 9, 0, 0, 0, time.FixedZone("JST", 9*3600))

// fixture is one issued overseas certificate with its trust material.
type fixture struct {
	cert        *certificate.Certificate
	shcText     string
	vdsText     string
	keys        *shc.JWKS
	cscas       []*x509.Certificate
	cscaDER     []byte
	shcIssuer   *shc.Issuer
	vdsncSigner *vdsnc.Signer
}

const issuerURL = "https://vc.kioskcert.example/012041"

func newFixture(t testing.TB, residentID string) *fixture {
	t.Helper()
	f := &fixture{cert: certtest.Resident(t, residentID, certificate.Overseas)}
	shcKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cscaKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bscKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var err error
	if f.shcIssuer, err = shc.NewIssuer(issuerURL, shcKey, nil); err != nil {
		t.Fatal(err)
	}
	if f.keys, err = shc.NewJWKS(shcKey.Public()); err != nil {
		t.Fatal(err)
	}
	if f.cscaDER, err = vdsnc.CreateCSCA(rand.Reader, vdsnc.CSCATemplate{CommonName: "Japan Test CSCA", Country: "JP",
		NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(10, 0, 0)}, cscaKey); err != nil {
		t.Fatal(err)
	}
	bsc, err := vdsnc.CreateBarcodeSigner(rand.Reader, vdsnc.SignerTemplate{CommonName: "Japan Test VDS-NC Signer", Country: "JP",
		NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(1, 0, 0)}, bscKey.Public(), f.cscaDER, cscaKey)
	if err != nil {
		t.Fatal(err)
	}
	if f.cscas, err = ParseCSCAs(f.cscaDER); err != nil {
		t.Fatal(err)
	}
	if f.vdsncSigner, err = vdsnc.NewSigner(bscKey, bsc); err != nil {
		t.Fatal(err)
	}
	if f.shcText, err = f.shcIssuer.Issue(f.cert, now); err != nil {
		t.Fatal(err)
	}
	d, err := vdsnc.Build(f.cert)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := f.vdsncSigner.Sign(d)
	if err != nil {
		t.Fatal(err)
	}
	f.vdsText = string(doc)
	return f
}

func (f *fixture) opts() Options {
	return Options{JWKS: f.keys, SHCIssuer: issuerURL, CSCAs: f.cscas, Now: now}
}

// qrImage renders text as a QR code, px pixels per module.
func qrImage(t testing.TB, text string, level qrcode.RecoveryLevel, px int) image.Image {
	t.Helper()
	q, err := qrcode.New(text, level)
	if err != nil {
		t.Fatal(err)
	}
	return q.Image(px * (17 + 4*q.VersionNumber + 8))
}

// page lays the two codes side by side on a white page.
func page(t testing.TB, f *fixture) image.Image {
	a := qrImage(t, f.shcText, qrcode.Low, 3)
	b := qrImage(t, f.vdsText, qrcode.Medium, 3)
	w := a.Bounds().Dx() + b.Bounds().Dx() + 60
	h := max(a.Bounds().Dy(), b.Bounds().Dy()) + 40
	img := image.NewGray(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(img, a.Bounds().Add(image.Pt(20, 20)), a, image.Point{}, draw.Src)
	draw.Draw(img, b.Bounds().Add(image.Pt(40+a.Bounds().Dx(), 20)), b, image.Point{}, draw.Src)
	return img
}

func encodePNG(t testing.TB, img image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkBoth checks a report holds a valid SHC and a valid VDS-NC that say
// what the certificate says.
func checkBoth(t *testing.T, r *Report, c *certificate.Certificate, wantPage int) {
	t.Helper()
	if !r.OK() || len(r.Codes) != 2 {
		t.Fatalf("report = %+v", r)
	}
	kinds := map[Kind]Result{}
	for _, code := range r.Codes {
		kinds[code.Kind] = code
		if code.Page != wantPage {
			t.Errorf("%s on page %d, want %d", code.Kind, code.Page, wantPage)
		}
		if len(code.Doses) != len(c.Doses) || code.Holder.BirthDate != c.Holder.BirthDate {
			t.Errorf("%s: holder %+v, %d doses", code.Kind, code.Holder, len(code.Doses))
		}
	}
	s, v := kinds[KindSHC], kinds[KindVDSNC]
	if s.Holder.Name != c.Holder.RomanFamily+" "+c.Holder.RomanGiven || s.Issuer != issuerURL {
		t.Errorf("SHC result = %+v", s)
	}
	if v.CertificateID != c.ID || v.Holder.PassportNumber != c.Holder.PassportNumber || v.Doses[0].Number != c.Doses[0].Number {
		t.Errorf("VDS-NC result = %+v", v)
	}
}

func TestVerifyText(t *testing.T) {
	f := newFixture(t, "hanako")
	// Change one character inside the signature (not its last, which may
	// carry padding bits), keeping it a base64url character.
	jws, err := shc.DecodeQR(f.shcText)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte(jws)
	if b[len(b)-3] == 'A' {
		b[len(b)-3] = 'B'
	} else {
		b[len(b)-3] = 'A'
	}
	tampered, err := shc.EncodeQR(string(b))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		text  string
		opts  Options
		kind  Kind
		valid bool
		err   error
	}{
		{"shc", f.shcText, f.opts(), KindSHC, true, nil},
		{"vdsnc", f.vdsText, f.opts(), KindVDSNC, true, nil},
		{"shc tampered", string(tampered), f.opts(), KindSHC, false, shc.ErrSignature},
		{"vdsnc tampered", strings.Replace(f.vdsText, "SHIKEN HANAKO", "SHIKEN HANAKA", 1), f.opts(), KindVDSNC, false, vdsnc.ErrSignature},
		{"shc without keys", f.shcText, Options{CSCAs: f.cscas, Now: now}, KindSHC, false, ErrTrust},
		{"vdsnc without CSCA", f.vdsText, Options{JWKS: f.keys, Now: now}, KindVDSNC, false, ErrTrust},
		{"shc wrong issuer", f.shcText, Options{JWKS: f.keys, SHCIssuer: "https://other.example", Now: now}, KindSHC, false, shc.ErrIssuer},
		{"url", "https://example.com/", f.opts(), KindUnknown, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := VerifyText(tc.text, tc.opts)
			if r.Kind != tc.kind || r.Valid != tc.valid {
				t.Fatalf("VerifyText = %s valid=%v (%v)", r.Kind, r.Valid, r.Err)
			}
			if tc.err != nil && !errors.Is(r.Err, tc.err) {
				t.Errorf("error = %v, want %v", r.Err, tc.err)
			}
			if !r.Valid && (r.Error == "" || r.Holder != (Holder{}) || r.Doses != nil) {
				t.Errorf("invalid result shows content or no error: %+v", r)
			}
		})
	}
}

func TestVerifyImages(t *testing.T) {
	f := newFixture(t, "hanako")
	img := page(t, f)
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{"png": encodePNG(t, img), "jpeg": jpg.Bytes()} {
		t.Run(name, func(t *testing.T) {
			r, err := Verify(context.Background(), in, f.opts())
			if err != nil {
				t.Fatal(err)
			}
			checkBoth(t, r, f.cert, 0)
		})
	}
}

// pdftoppmPath finds poppler's renderer; the PDF tests need it.
func pdftoppmPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("pdftoppm")
	if err != nil {
		t.Fatal("pdftoppm not found: install poppler-utils (apt-get install poppler-utils)")
	}
	return p
}

// makePDF writes an A4 PDF: pages before the certificate are blank, the
// last page holds both codes at the sizes a certificate prints them.
func makePDF(t *testing.T, f *fixture, blankPages int) []byte {
	t.Helper()
	pdf := fpdf.New("P", "mm", "A4", "")
	for range blankPages {
		pdf.AddPage()
	}
	pdf.AddPage()
	opt := fpdf.ImageOptions{ImageType: "PNG"}
	pdf.RegisterImageOptionsReader("shc", opt, bytes.NewReader(encodePNG(t, qrImage(t, f.shcText, qrcode.Low, 4))))
	pdf.RegisterImageOptionsReader("vds", opt, bytes.NewReader(encodePNG(t, qrImage(t, f.vdsText, qrcode.Medium, 4))))
	pdf.ImageOptions("shc", 20, 200, 50, 50, false, opt, 0, "")
	pdf.ImageOptions("vds", 110, 190, 70, 70, false, opt, 0, "")
	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestVerifyPDF(t *testing.T) {
	pdftoppm := pdftoppmPath(t)
	f := newFixture(t, "taro") // seven doses: the largest codes
	for _, blank := range []int{0, 1} {
		t.Run(strings.Repeat("blank-", blank)+"certificate", func(t *testing.T) {
			opts := f.opts()
			opts.Pdftoppm = pdftoppm
			r, err := Verify(context.Background(), makePDF(t, f, blank), opts)
			if err != nil {
				t.Fatal(err)
			}
			checkBoth(t, r, f.cert, blank+1)
		})
	}
	t.Run("broken pdf", func(t *testing.T) {
		_, err := Verify(context.Background(), []byte("%PDF-1.4\nnot really"), Options{Pdftoppm: pdftoppm})
		if !errors.Is(err, ErrRenderer) && !errors.Is(err, ErrInput) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("no renderer", func(t *testing.T) {
		_, err := Verify(context.Background(), makePDF(t, f, 0), Options{Pdftoppm: filepath.Join(t.TempDir(), "missing")})
		if !errors.Is(err, ErrRenderer) {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestVerifyTextInput(t *testing.T) {
	f := newFixture(t, "an")
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(f.vdsText), "", "  "); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		in    string
		codes int
	}{
		"one shc line":     {f.shcText + "\n", 1},
		"two lines":        {f.shcText + "\r\n\n" + f.vdsText + "\n", 2},
		"pretty vds json":  {pretty.String(), 1},
		"duplicated lines": {f.shcText + "\n" + f.shcText, 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := Verify(context.Background(), []byte(tc.in), f.opts())
			if err != nil {
				t.Fatal(err)
			}
			if !r.OK() || len(r.Codes) != tc.codes {
				t.Fatalf("report = %+v", r)
			}
		})
	}
}

func TestNoCode(t *testing.T) {
	blank := image.NewGray(image.Rect(0, 0, 400, 400))
	draw.Draw(blank, blank.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	for name, in := range map[string][]byte{"blank image": encodePNG(t, blank), "empty text": []byte(" \n\n"), "nothing": nil} {
		t.Run(name, func(t *testing.T) {
			r, err := Verify(context.Background(), in, Options{})
			if !errors.Is(err, ErrNoCode) || r.OK() {
				t.Fatalf("Verify = %+v, %v; want ErrNoCode", r, err)
			}
		})
	}
	if _, err := Verify(context.Background(), []byte("\x89PNG\r\n\x1a\nbroken"), Options{}); !errors.Is(err, ErrInput) {
		t.Errorf("broken PNG: %v", err)
	}
}

func TestReportJSON(t *testing.T) {
	f := newFixture(t, "hanako")
	r := &Report{Codes: []Result{VerifyText(f.shcText, Options{JWKS: f.keys, Now: now}), VerifyText("garbage", Options{})}}
	if r.OK() {
		t.Fatal("report with an invalid code is OK")
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Codes []map[string]any `json:"codes"`
	}
	if err := json.Unmarshal(b, &back); err != nil || len(back.Codes) != 2 {
		t.Fatalf("%s: %v", b, err)
	}
	if back.Codes[0]["valid"] != true || back.Codes[1]["error"] == nil || back.Codes[1]["holder"] != nil {
		t.Errorf("report JSON = %s", b)
	}
	if b, _ := json.Marshal(&Report{}); string(b) != `{"codes":[]}` {
		t.Errorf("empty report JSON = %s", b)
	}
}

func TestLoadTrust(t *testing.T) {
	f := newFixture(t, "hanako")
	dir := t.TempDir()
	jwks, _ := json.Marshal(f.keys)
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	k, iss, err := LoadJWKS(context.Background(), jwksPath, nil)
	if err != nil || iss != "" || len(k.Keys) != 1 {
		t.Fatalf("LoadJWKS(file) = %v, %q, %v", k, iss, err)
	}

	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/012041/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(jwks)
	}))
	defer srv.Close()
	k, iss, err = LoadJWKS(context.Background(), srv.URL+"/012041/.well-known/jwks.json", srv.Client())
	if err != nil || iss != srv.URL+"/012041" || len(k.Keys) != 1 {
		t.Fatalf("LoadJWKS(url) = %v, %q, %v", k, iss, err)
	}
	for name, src := range map[string]string{
		"404":        srv.URL + "/other/.well-known/jwks.json",
		"plain http": strings.Replace(srv.URL, "https", "http", 1) + "/012041/.well-known/jwks.json",
		"no file":    filepath.Join(dir, "missing.json"),
	} {
		if _, _, err := LoadJWKS(context.Background(), src, srv.Client()); !errors.Is(err, ErrTrust) {
			t.Errorf("LoadJWKS(%s) error = %v", name, err)
		}
	}

	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.cscaDER})
	for name, data := range map[string][]byte{"pem": pemBytes, "der": f.cscaDER} {
		c, err := ParseCSCAs(data)
		if err != nil || len(c) != 1 || c[0].Subject.CommonName != "Japan Test CSCA" {
			t.Errorf("ParseCSCAs(%s) = %v, %v", name, c, err)
		}
	}
	if _, err := ParseCSCAs([]byte("not a certificate")); !errors.Is(err, ErrTrust) {
		t.Errorf("ParseCSCAs(garbage): %v", err)
	}
	crl := shc.NewCRL(f.shcIssuer.KeyID())
	crlJSON, _ := json.Marshal(crl)
	crlPath := filepath.Join(dir, "crl.json")
	if err := os.WriteFile(crlPath, crlJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadCRL(crlPath); err != nil || c.Kid != crl.Kid {
		t.Errorf("LoadCRL = %v, %v", c, err)
	}
}

func TestSplitPNGs(t *testing.T) {
	a := encodePNG(t, image.NewGray(image.Rect(0, 0, 3, 3)))
	b := encodePNG(t, image.NewGray(image.Rect(0, 0, 5, 2)))
	var sizes []image.Point
	err := splitPNGs(bytes.NewReader(append(append([]byte{}, a...), b...)), func(p []byte) error {
		img, err := png.Decode(bytes.NewReader(p))
		if err != nil {
			return err
		}
		sizes = append(sizes, img.Bounds().Size())
		return nil
	})
	if err != nil || len(sizes) != 2 || sizes[0] != image.Pt(3, 3) || sizes[1] != image.Pt(5, 2) {
		t.Fatalf("splitPNGs = %v, %v", sizes, err)
	}
	for name, in := range map[string][]byte{"truncated": a[:len(a)-3], "not png": []byte("GIF89a......")} {
		if err := splitPNGs(bytes.NewReader(in), func([]byte) error { return nil }); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzVerifyInput: arbitrary bytes as a file never panic, and a report
// either is an error or lists codes.
func FuzzVerifyInput(f *testing.F) {
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
	if len(paths) == 0 {
		f.Fatal("no seeds in testdata/fuzz-seeds")
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.HasPrefix(in, []byte("%PDF-")) {
			return // rendering is poppler's business, and slow
		}
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(in)); err == nil && cfg.Width*cfg.Height > 1<<20 {
			return // a legitimately slow scan of a big image, not a parser bug
		}
		r, err := Verify(context.Background(), in, Options{Now: now, Pdftoppm: "/nonexistent"})
		if err == nil && len(r.Codes) == 0 {
			t.Fatal("no error and no codes")
		}
		if err == nil && r.OK() {
			t.Fatal("a code verified without any trust material")
		}
	})
}

func BenchmarkScanPage(b *testing.B) {
	f := newFixture(b, "taro")
	img := page(b, f)
	for b.Loop() {
		texts, err := ScanImage(img)
		if err != nil || len(texts) != 2 {
			b.Fatalf("ScanImage = %d codes, %v", len(texts), err)
		}
	}
}
