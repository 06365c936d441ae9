// Package certpdf renders vaccination certificates (新型コロナウイルス感染症
// 予防接種証明書) to the A4 PDF the kiosk prints.
//
// Usage:
//
//	r, err := certpdf.NewRenderer() // once per process: indexes the font
//	...
//	var buf bytes.Buffer
//	err = r.Render(&buf, overseas, domestic) // one page per certificate
//
// Each page carries the bilingual labels of the Japanese certificate, the
// holder and dose table, the issuing mayor, and the QR codes: the SMART
// Health Card on every kind, the ICAO VDS-NC as well on the overseas kind.
// QR modules are drawn as vector rectangles (no raster images), so they print
// sharp at any printer resolution. Behind the content lies a copy-evident
// pattern (地紋) in which the words 複写 and COPY, nearly invisible on the
// original, appear on a photocopy; pantograph.go explains how.
//
// The font is IPAex Gothic (assets/fonts). It is indexed once per process and
// each PDF embeds only the glyphs it uses, so a page is 40-80 KB. Most of
// the rendering time is QR encoding, which runs in parallel with the
// layout. A name containing a character the font lacks is
// refused (ErrMissingGlyph) rather than printed with a blank box: a wrong
// name on a certificate is worse than no certificate. Text that cannot fit
// its box even at the smallest legible size is refused likewise
// (ErrTextOverflow).
//
// Rendering is pure and deterministic: the same certificates give the same
// bytes (the PDF dates are the certificate's issue date), which the golden
// tests rely on. Everything happens in memory; nothing is written to disk,
// because the kiosk keeps no personal data. Errors name the field that
// failed, never its value.
package certpdf

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/go-pdf/fpdf"

	"github.com/kioskcert/kioskcert/assets/fonts"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Errors returned by Render. Test with errors.Is.
var (
	// ErrNoCertificate: Render was called without a certificate.
	ErrNoCertificate = errors.New("certpdf: no certificate to render")
	// ErrMissingGlyph: a value contains a character the font cannot draw.
	// The certificate must be reissued with the name in a form the font
	// covers (or the font extended); printing it would show a wrong name.
	ErrMissingGlyph = errors.New("certpdf: character not in the font")
	// ErrTextOverflow: a value is too long for its box even at the
	// smallest font size.
	ErrTextOverflow = errors.New("certpdf: text does not fit its box")
	// ErrNonASCIIQR: a QR payload is not ASCII. Byte-mode QR codes carry
	// no character set, so a reader would guess; SHC and VDS-NC payloads
	// are ASCII by construction, so this means a corrupt certificate.
	ErrNonASCIIQR = errors.New("certpdf: QR payload is not ASCII")
	// ErrQR: the QR payload could not be encoded (too long).
	ErrQR = errors.New("certpdf: cannot encode QR code")
)

// MissingGlyphError says which field holds a character the font lacks.
// It deliberately does not carry the character: field values are personal
// data and errors end up in logs.
type MissingGlyphError struct {
	Field string // e.g. "holder.name"
	Index int    // position of the character in the field, counting runes from 0
}

func (e *MissingGlyphError) Error() string {
	return fmt.Sprintf("certpdf: %s: character %d is not in the %s font; refusing to print a wrong value (reissue with the name in a supported form)",
		e.Field, e.Index, fonts.IPAexGothicName)
}

// Unwrap makes errors.Is(err, ErrMissingGlyph) hold.
func (e *MissingGlyphError) Unwrap() error { return ErrMissingGlyph }

// Renderer renders certificates. It is immutable after NewRenderer and safe
// for concurrent use.
type Renderer struct {
	font *sfnt
}

// loadFont indexes the embedded font once per process, however many
// renderers are made.
var loadFont = sync.OnceValues(func() (*sfnt, error) {
	f, err := parseSFNT(fonts.IPAexGothic())
	if err != nil {
		return nil, fmt.Errorf("certpdf: font %s: %w", fonts.IPAexGothicName, err)
	}
	return f, nil
})

// NewRenderer returns a Renderer using the embedded IPAex Gothic font. The
// font is parsed on the first call only; later calls are cheap. It fails if
// the font cannot draw the page's fixed labels.
func NewRenderer() (*Renderer, error) {
	f, err := loadFont()
	if err != nil {
		return nil, err
	}
	for i, r := range []rune(staticText()) {
		if err := checkRune(f, r); err != nil {
			return nil, fmt.Errorf("certpdf: font %s lacks label character %d (U+%04X): %w", fonts.IPAexGothicName, i, r, err)
		}
	}
	return &Renderer{font: f}, nil
}

// checkRune reports whether the font can draw r through fpdf, which only
// handles the Basic Multilingual Plane.
func checkRune(f *sfnt, r rune) error {
	if r > 0xFFFF || f.glyphIndex(r) == 0 {
		return ErrMissingGlyph
	}
	return nil
}

// Render writes a PDF with one A4 page per certificate, in order, to w.
// Each certificate must pass certificate.Validate. On error nothing useful
// has been written to w; callers should render into a buffer and print only
// on success.
func (r *Renderer) Render(w io.Writer, certs ...*certificate.Certificate) error {
	_, err := r.render(w, certs)
	return err
}

// render is Render, also returning where each page's QR codes went (for
// the tests that scan them).
func (r *Renderer) render(w io.Writer, certs []*certificate.Certificate) ([][]qrBox, error) {
	if len(certs) == 0 {
		return nil, ErrNoCertificate
	}
	for i, c := range certs {
		if c == nil {
			return nil, fmt.Errorf("certpdf: certificate %d of %d is nil", i+1, len(certs))
		}
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("certpdf: certificate %d of %d: %w", i+1, len(certs), err)
		}
	}

	runes, err := r.documentRunes(certs) // refuses characters the font lacks
	if err != nil {
		return nil, err
	}
	// QR encoding is the costliest step (go-qrcode spends 9-15 ms of CPU
	// per code), so start every distinct code now and lay the rest of the
	// document out meanwhile.
	codes, err := startQR(certs)
	if err != nil {
		return nil, err
	}
	defer codes.wait() // never leave goroutines behind on an early return

	font, err := r.font.subset(runes)
	if err != nil {
		return nil, fmt.Errorf("certpdf: font subset: %w", err)
	}

	pdf := newDocument(font, certs[0].IssueDate)
	allowed := make(map[rune]bool, len(runes))
	for _, ru := range runes {
		allowed[ru] = true
	}
	var boxes [][]qrBox
	for _, c := range certs {
		p := &page{pdf: pdf, allowed: allowed}
		p.draw(c, codes)
		if p.err != nil {
			return nil, p.err
		}
		boxes = append(boxes, p.qrBoxes)
	}
	if err := pdf.Error(); err != nil {
		return nil, fmt.Errorf("certpdf: building the PDF: %w", err)
	}
	if err := pdf.Output(w); err != nil {
		return nil, fmt.Errorf("certpdf: writing the PDF: %w", err)
	}
	return boxes, nil
}

// documentRunes returns every character the document will draw, after
// checking each field against the font.
func (r *Renderer) documentRunes(certs []*certificate.Certificate) ([]rune, error) {
	seen := map[rune]bool{}
	var runes []rune
	add := func(s string) {
		for _, ru := range s {
			if !seen[ru] {
				seen[ru] = true
				runes = append(runes, ru)
			}
		}
	}
	add(staticText())
	for _, c := range certs {
		for _, fv := range printedFields(c) {
			for i, ru := range []rune(fv.value) {
				if err := checkRune(r.font, ru); err != nil {
					return nil, &MissingGlyphError{Field: fv.name, Index: i}
				}
			}
			add(fv.value)
		}
	}
	return runes, nil
}

// field is one printed value and the name used for it in errors.
type field struct{ name, value string }

// printedFields lists every certificate value the page prints. The page
// code prints nothing else besides staticText; page.text enforces that.
func printedFields(c *certificate.Certificate) []field {
	fs := []field{
		{"holder.name", c.Holder.Name},
		{"holder.birthDate", c.Holder.BirthDate},
		{"issuer.authorityJa", c.Issuer.AuthorityJa},
		{"issuer.authorityEn", c.Issuer.AuthorityEn},
		{"issueDate", c.IssueDate},
	}
	if c.Kind == certificate.Overseas {
		fs = append(fs,
			field{"holder.romanName", romanName(c.Holder)},
			field{"holder.nationality", c.Holder.Nationality},
			field{"holder.passportNumber", c.Holder.PassportNumber},
			field{"id", c.ID},
		)
	}
	for i, d := range c.Doses {
		pre := fmt.Sprintf("doses[%d].", i)
		fs = append(fs,
			field{pre + "vaccineTypeJa", d.VaccineTypeJa},
			field{pre + "vaccineTypeEn", d.VaccineTypeEn},
			field{pre + "manufacturerJa", d.ManufacturerJa},
			field{pre + "manufacturerEn", d.ManufacturerEn},
			field{pre + "productName", d.ProductName},
			field{pre + "lot", d.Lot},
			field{pre + "date", d.Date},
			field{pre + "country", d.Country},
		)
	}
	return fs
}

// romanName is the passport-form name: family name first, as in the
// passport's machine-readable zone and the VDS-NC.
func romanName(h certificate.Holder) string {
	if h.RomanGiven == "" {
		return h.RomanFamily
	}
	return h.RomanFamily + " " + h.RomanGiven
}

// newDocument sets up an A4 document with the subset font and fixed
// metadata. The dates are the issue date so output depends on the input
// only; the metadata holds no personal data.
func newDocument(font []byte, issueDate string) *fpdf.Fpdf {
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCatalogSort(true)
	t := issueTime(issueDate)
	pdf.SetCreationDate(t)
	pdf.SetModificationDate(t)
	pdf.SetProducer("kioskcert certpdf", false)
	pdf.SetTitle(titleEn, true)
	pdf.SetAutoPageBreak(false, 0)
	pdf.SetMargins(marginX, marginTop, marginX)
	pdf.SetCellMargin(0)
	pdf.AddUTF8FontFromBytes(fontFamily, "", font)
	registerScreens(pdf)
	return pdf
}
