package certpdf

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"

	"github.com/kioskcert/kioskcert/pkg/certificate"
)

var update = flag.Bool("update", false, "rewrite the golden PDFs in testdata/")

var (
	rendererOnce sync.Once
	testRenderer *Renderer
	rendererErr  error
)

func renderer(t testing.TB) *Renderer {
	t.Helper()
	rendererOnce.Do(func() { testRenderer, rendererErr = NewRenderer() })
	if rendererErr != nil {
		t.Fatal(rendererErr)
	}
	return testRenderer
}

func render(t testing.TB, certs ...*certificate.Certificate) ([]byte, [][]qrBox) {
	t.Helper()
	var buf bytes.Buffer
	boxes, err := renderer(t).render(&buf, certs)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), boxes
}

// requireTool fails (never skips) when a poppler tool is missing: CI must
// run these checks.
func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: run `make deps` (it installs poppler-utils)", name)
	}
}

// allCases are the golden documents: the demo requests plus the layout's
// worst case.
func allCases() []string {
	names := []string{"max-overseas"}
	for _, gc := range goldenCases {
		names = append(names, gc.name)
	}
	return names
}

func TestGolden(t *testing.T) {
	for _, name := range allCases() {
		t.Run(name, func(t *testing.T) {
			got, _ := render(t, loadFixture(t, name)...)
			path := filepath.Join("testdata", name+".pdf")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("PDF differs from %s (%d bytes, want %d); if the change is intended, look at the pages and run with -update", path, len(got), len(want))
			}
			if len(got) > 150_000*strings.Count(string(got), "/Type /Page\n") {
				t.Errorf("PDF is %d bytes: over 150 KB per certificate", len(got))
			}
		})
	}
}

// TestDeterministic renders the same documents concurrently: every copy
// must be byte-identical (no clock, no map order, no shared mutable state).
func TestDeterministic(t *testing.T) {
	certs := loadFixture(t, "an-overseas")
	first, _ := render(t, certs...)
	var wg sync.WaitGroup
	outs := make([][]byte, 4)
	for i := range outs {
		wg.Go(func() {
			var buf bytes.Buffer
			if err := renderer(t).Render(&buf, certs...); err != nil {
				t.Error(err)
			}
			outs[i] = buf.Bytes()
		})
	}
	wg.Wait()
	for i, o := range outs {
		if !bytes.Equal(o, first) {
			t.Errorf("render %d differs from the first", i)
		}
	}
}

// rasterize renders the region r (mm, from the top-left corner) of page
// pageNo (1-based) of pdf at dpi to an image with pdftoppm, through pipes:
// nothing is written to disk. Rendering only the region keeps the test
// fast; the pixels are the same as in a full-page render.
func rasterize(t testing.TB, pdf []byte, pageNo, dpi int, r [4]float64) image.Image {
	t.Helper()
	requireTool(t, "pdftoppm")
	px := func(mm float64) string { return fmt.Sprint(int(mm * float64(dpi) / 25.4)) }
	cmd := exec.Command("pdftoppm", "-r", fmt.Sprint(dpi), "-gray", "-png", "-singlefile",
		"-f", fmt.Sprint(pageNo), "-l", fmt.Sprint(pageNo),
		"-x", px(r[0]), "-y", px(r[1]), "-W", px(r[2]), "-H", px(r[3]),
		"-") // no output root: PNG on stdout
	cmd.Stdin = bytes.NewReader(pdf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pdftoppm: %v: %s", err, stderr.String())
	}
	img, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("pdftoppm output: %v", err)
	}
	return img
}

// scanQR renders the QR code in box, with 3 mm of the surrounding page
// (copy-evident pattern included), at dpi and decodes it with gozxing, as
// a reader aimed at that code would.
func scanQR(t testing.TB, pdf []byte, pageNo int, box qrBox, dpi int) (string, error) {
	t.Helper()
	const margin = 3.0
	img := rasterize(t, pdf, pageNo, dpi, [4]float64{box.x - margin, box.y - margin, box.size + 2*margin, box.size + 2*margin})
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	res, err := zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		return "", err
	}
	return res.GetText(), nil
}

// TestGoldenScan renders each golden page's QR codes at print-preview
// resolution and decodes them: every code must scan at 200 dpi and carry
// exactly the payload, the SMART Health Card (version 22 at most) must
// also scan at 150 dpi, and every code must be at least 35 mm square and
// clear of the content. (gozxing cannot decode the large VDS-NC codes,
// version 29 and up, at 3 pixels per module even from a perfect bitmap, so
// 150 dpi is not required for them.)
func TestGoldenScan(t *testing.T) {
	for _, name := range allCases() {
		t.Run(name, func(t *testing.T) {
			certs := loadFixture(t, name)
			pdf, boxes := render(t, certs...)
			for pi, c := range certs {
				want := map[string]string{"shc": c.SHC}
				if c.Kind == certificate.Overseas {
					want["vdsnc"] = c.VDSNC
				}
				if len(boxes[pi]) != len(want) {
					t.Fatalf("page %d: %d QR codes, want %d", pi+1, len(boxes[pi]), len(want))
				}
				for _, box := range boxes[pi] {
					if box.size < qrMinSize || box.y < box.contentEnd || box.y+box.size > footerBase {
						t.Errorf("page %d %s: box %+v: under 35 mm or overlapping", pi+1, box.name, box)
					}
					dpis := []int{200}
					if box.name == "shc" {
						dpis = append(dpis, 150)
					}
					for _, dpi := range dpis {
						got, err := scanQR(t, pdf, pi+1, box, dpi)
						if err != nil {
							t.Errorf("page %d %s at %d dpi: does not scan: %v", pi+1, box.name, dpi, err)
							continue
						}
						if got != want[box.name] {
							t.Errorf("page %d %s at %d dpi: scanned payload differs from the certificate", pi+1, box.name, dpi)
						}
					}
				}
			}
		})
	}
}

// pdfText extracts the text of pdf with pdftotext (through pipes), in
// layout mode so each printed line stays one line, with runs of white
// space (an ideographic space comes out as several) collapsed to one.
func pdfText(t testing.TB, pdf []byte) string {
	t.Helper()
	requireTool(t, "pdftotext")
	cmd := exec.Command("pdftotext", "-layout", "-enc", "UTF-8", "-", "-")
	cmd.Stdin = bytes.NewReader(pdf)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	return collapseSpace(string(out))
}

// collapseSpace turns every run of white space within a line (ASCII or
// U+3000) into one ASCII space.
func collapseSpace(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.Join(strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == '\u3000' || r == '\t' }), " "))
	}
	return strings.Join(lines, "\n")
}

// TestGoldenText checks the text layer: both languages' labels and the
// holder's values, found by a text extractor exactly as printed.
func TestGoldenText(t *testing.T) {
	common := []string{titleJa, titleEn, nameJa, nameEn, birthJa, birthEn, vaccineTypeJa, vaccineTypeEn,
		manufacturerJa, manufacturerEn, productJa, productEn, lotJa, lotEn, vaccDateJa, vaccDateEn,
		countryJa, authorityJa, authorityEn, issueDateJa, issueDateEn, "1回目", "Dose 1", shcCaption}
	overseas := []string{nationalityJa, nationalityEn, passportJa, passportEn, certIDJa, certIDEn, vdsncCaption, kindOverseasEn}
	for _, name := range allCases() {
		t.Run(name, func(t *testing.T) {
			certs := loadFixture(t, name)
			pdf, _ := render(t, certs...)
			for pi, c := range certs {
				text := pdfText(t, pageOnly(t, certs, pi))
				want := append([]string{}, common...)
				want = append(want, c.Holder.BirthDate, c.IssueDate, c.Issuer.AuthorityJa, c.Doses[0].Lot)
				if name != "max-overseas" { // its names wrap over lines; checked by TestWrap
					want = append(want, c.Holder.Name)
				}
				if c.Kind == certificate.Overseas {
					want = append(want, overseas...)
					want = append(want, c.Holder.PassportNumber, c.ID)
					if name != "max-overseas" {
						want = append(want, romanName(c.Holder))
					}
				}
				for _, w := range want {
					if !strings.Contains(text, collapseSpace(w)) {
						t.Errorf("page %d: text layer lacks %q", pi+1, w)
					}
				}
			}
			if len(pdf) == 0 {
				t.Fatal("empty PDF")
			}
		})
	}
}

// pageOnly renders certificate i alone, so text checks are per page.
func pageOnly(t testing.TB, certs []*certificate.Certificate, i int) []byte {
	pdf, _ := render(t, certs[i])
	return pdf
}

// TestGlyphCoverage: the demo's hard names render with real glyphs, and a
// character the font lacks is refused with an error that names the field
// but not the value.
func TestGlyphCoverage(t *testing.T) {
	r := renderer(t)
	for _, name := range []string{"髙﨑　花子", "グエン　ヴァン　アン", "試験　太郎"} {
		for i, ru := range []rune(name) {
			if r.font.glyphIndex(ru) == 0 {
				t.Errorf("%s: character %d (U+%04X) has no glyph in IPAex Gothic", name, i, ru)
			}
		}
	}
	base := loadFixture(t, "takasaki-domestic")[0]
	tests := []struct {
		name  string
		edit  func(c *certificate.Certificate)
		field string
	}{
		{"BMP character not in the font", func(c *certificate.Certificate) { c.Holder.Name = "試験\uE000花子" }, "holder.name"},
		{"outside the BMP", func(c *certificate.Certificate) { c.Holder.Name = "𠮷田　花子" }, "holder.name"},
		{"control character", func(c *certificate.Certificate) { c.Issuer.AuthorityEn = "Mayor\x07" }, "issuer.authorityEn"},
		{"dose field", func(c *certificate.Certificate) { c.Doses[1].ManufacturerJa = "\uFFFF" }, "doses[1].manufacturerJa"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := *base
			c.Doses = append([]certificate.Dose(nil), base.Doses...)
			tc.edit(&c)
			err := r.Render(&bytes.Buffer{}, &c)
			var mg *MissingGlyphError
			if !errors.Is(err, ErrMissingGlyph) || !errors.As(err, &mg) || mg.Field != tc.field {
				t.Fatalf("got %v, want ErrMissingGlyph for %s", err, tc.field)
			}
			if strings.Contains(err.Error(), "花子") || strings.Contains(err.Error(), "試験") {
				t.Errorf("error leaks the value: %v", err)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	r := renderer(t)
	good := func() *certificate.Certificate {
		c := *loadFixture(t, "hanako-overseas")[0]
		return &c
	}
	tests := []struct {
		name  string
		certs func() []*certificate.Certificate
		want  error
	}{
		{"none", func() []*certificate.Certificate { return nil }, ErrNoCertificate},
		{"invalid", func() []*certificate.Certificate {
			c := good()
			c.Holder.BirthDate = "1985/04/02"
			return []*certificate.Certificate{c}
		}, certificate.ErrInvalid},
		{"non-ASCII SHC", func() []*certificate.Certificate {
			c := good()
			c.SHC = "shc:/0123é"
			return []*certificate.Certificate{c}
		}, ErrNonASCIIQR},
		{"non-ASCII VDS-NC", func() []*certificate.Certificate {
			c := good()
			c.VDSNC = strings.Replace(c.VDSNC, "SHIKEN", "試験", 1)
			return []*certificate.Certificate{c}
		}, ErrNonASCIIQR},
		{"VDS-NC too long for any QR code", func() []*certificate.Certificate {
			c := good()
			c.VDSNC = strings.Repeat("x", 2400) // byte mode at level M holds at most 2331
			return []*certificate.Certificate{c}
		}, ErrQR},
		{"authority too long to fit", func() []*certificate.Certificate {
			c := good()
			c.Issuer.AuthorityEn = strings.Repeat("Mayor of a very long town name ", 60)
			return []*certificate.Certificate{c}
		}, ErrTextOverflow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := r.Render(&buf, tc.certs()...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "SHIKEN") || strings.Contains(err.Error(), "試験") {
				t.Errorf("error leaks personal data: %v", err)
			}
		})
	}
	t.Run("nil certificate", func(t *testing.T) {
		if err := r.Render(&bytes.Buffer{}, good(), nil); err == nil {
			t.Fatal("nil certificate accepted")
		}
	})
}

// TestNoFiles: rendering writes nothing to disk (the kiosk keeps no data).
func TestNoFiles(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(wd)
	render(t, loadFixture(t, "hanako-overseas")...)
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("render left %d files in TMPDIR", len(left))
	}
	if after, _ := os.ReadDir(wd); len(after) != len(before) {
		t.Errorf("render created files in the working directory")
	}
}
