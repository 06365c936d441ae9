package certpdf

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/go-pdf/fpdf"

	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Page geometry, mm. A4 is 210 × 297.
const (
	pageW       = 210.0
	pageH       = 297.0
	marginX     = 15.0
	marginTop   = 12.0
	contentW    = pageW - 2*marginX
	labelW      = 52.0 // left column of the holder and issuer tables
	qrMaxSize   = 75.0
	qrMinSize   = 35.0 // smallest QR we print; layout guarantees more
	qrGap       = 14.0
	footerBase  = 289.0 // baseline of the footer line
	captionGap  = 5.0   // from QR bottom to caption baseline
	fontFamily  = "ipaexg"
	textGrey    = 0
	labelGrey   = 60
	ruleGrey    = 90
	ruleWidth   = 0.25
	doseRowH    = 7.5
	doseHeadH   = 12.0
	holderRowH  = 9.0
	nameRowH    = 12.0
	nameRowOvsH = 15.0 // overseas: romanized and registered name
	issuerRowH  = 11.0
	sectionGap  = 3.0
)

// Labels, exactly as on the Japanese certificate (brief §4).
const (
	titleJa          = "新型コロナウイルス感染症 予防接種証明書"
	titleEn          = "Vaccination Certificate of COVID-19"
	kindDomesticJa   = "日本国内用"
	kindDomesticEn   = "For use in Japan"
	kindOverseasJa   = "海外用"
	kindOverseasEn   = "For overseas use"
	nameJa           = "氏名"
	nameEn           = "Name"
	birthJa          = "生年月日"
	birthEn          = "Date of Birth"
	nationalityJa    = "国籍・地域"
	nationalityEn    = "Nationality/Region"
	passportJa       = "旅券番号"
	passportEn       = "Passport Number"
	vaccineTypeJa    = "ワクチンの種類"
	vaccineTypeEn    = "Vaccine Type"
	manufacturerJa   = "メーカー"
	manufacturerEn   = "Manufacturer"
	productJa        = "製品名"
	productEn        = "Product Name"
	lotJa            = "製造番号"
	lotEn            = "Lot Number"
	vaccDateJa       = "接種年月日"
	vaccDateEn       = "Vaccination Date"
	countryJa        = "接種国"
	countryEn        = "Country of Vaccination"
	authorityJa      = "証明書発行者"
	authorityEn      = "Certificate Issuance Authority"
	certIDJa         = "証明書ID"
	certIDEn         = "Certificate ID"
	issueDateJa      = "証明書発行年月日"
	issueDateEn      = "Date of Issue"
	doseJaFmt        = "%d回目"
	doseEnFmt        = "Dose %d"
	shcCaption       = "SMART Health Card"
	vdsncCaption     = "ICAO VDS-NC"
	footerJa         = "QRコードを読み取ると、この証明書の内容と発行者を確認できます。"
	footerEn         = "Scan the QR codes to verify the content and the issuer of this certificate."
	staticExtraRunes = "0123456789-/ "
)

// staticText is every fixed string the page may print, for the font
// subset and the coverage check in NewRenderer.
func staticText() string {
	parts := []string{titleJa, titleEn, kindDomesticJa, kindDomesticEn, kindOverseasJa, kindOverseasEn,
		nameJa, nameEn, birthJa, birthEn, nationalityJa, nationalityEn, passportJa, passportEn,
		vaccineTypeJa, vaccineTypeEn, manufacturerJa, manufacturerEn, productJa, productEn, lotJa, lotEn,
		vaccDateJa, vaccDateEn, countryJa, countryEn, authorityJa, authorityEn, certIDJa, certIDEn,
		issueDateJa, issueDateEn, doseJaFmt, doseEnFmt, shcCaption, vdsncCaption, footerJa, footerEn,
		staticExtraRunes}
	for _, w := range latentWords {
		parts = append(parts, w.text)
	}
	return strings.ReplaceAll(strings.Join(parts, ""), "%d", "")
}

// doseColumns are the dose table's columns: header labels and widths (mm,
// summing to contentW). The vaccine type gets the most room: its longest
// value (組換えタンパクワクチン / Recombinant protein vaccine) must print at
// full size on one line each, not shrink (TestDoseCellsReadable).
var doseColumns = []struct {
	ja, en string
	w      float64
}{
	{"", "", 15},
	{vaccineTypeJa, vaccineTypeEn, 40},
	{manufacturerJa, manufacturerEn, 30},
	{productJa, productEn, 35},
	{lotJa, lotEn, 22},
	{vaccDateJa, vaccDateEn, 22},
	{countryJa, countryEn, 16},
}

// issueTime is the PDF creation date: the issue date at 00:00 Japan time.
// Using a value from the certificate (not the clock) keeps output
// deterministic.
func issueTime(date string) time.Time {
	jst := time.FixedZone("JST", 9*3600)
	t, err := time.ParseInLocation("2006-01-02", date, jst)
	if err != nil { // Validate has checked the form; keep a fixed fallback
		return time.Date(2021, 1, 1, 0, 0, 0, 0, jst)
	}
	return t
}

// page draws one certificate. The first error sticks and stops drawing.
type page struct {
	pdf     *fpdf.Fpdf
	allowed map[rune]bool // the characters in the document's font subset
	err     error
	qrBoxes []qrBox // where the QR codes went, for tests
}

// qrBox is the square a QR code was drawn in, mm from the top-left corner.
type qrBox struct {
	name       string // "shc" or "vdsnc"
	x, y, size float64
	contentEnd float64 // bottom of the text above it
}

func (p *page) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// draw lays out the whole page for c.
func (p *page) draw(c *certificate.Certificate, codes *qrSet) {
	pdf := p.pdf
	pdf.AddPage()
	pdf.SetFont(fontFamily, "", 10)
	drawPantograph(pdf)
	p.resetState()

	y := marginTop
	y = p.title(c, y)
	y = p.holder(c, y+sectionGap)
	y = p.doses(c, y+sectionGap)
	y = p.issuer(c, y+sectionGap)
	p.qrCodes(c, codes, y+sectionGap+1)
	p.centered(footerJa, 7.5, footerBase-3.2, labelGrey)
	p.centered(footerEn, 6.5, footerBase, labelGrey)
}

// resetState sets every piece of graphics state we rely on explicitly, so
// drawing does not depend on what the background left behind.
func (p *page) resetState() {
	pdf := p.pdf
	pdf.SetDashPattern(nil, 0)
	pdf.SetLineWidth(ruleWidth)
	pdf.SetDrawColor(ruleGrey, ruleGrey, ruleGrey)
	pdf.SetFillColor(textGrey, textGrey, textGrey)
	pdf.SetTextColor(textGrey, textGrey, textGrey)
}

// text draws s with its baseline at (x, y). Every character must be in the
// document's font subset: a character missing there is a bug in
// printedFields, caught here rather than printed as a blank box.
func (p *page) text(s string, x, y, sizePt float64, grey int) {
	for _, r := range s {
		if !p.allowed[r] {
			p.fail(fmt.Errorf("certpdf: internal error: a printed value is missing from printedFields: %w", ErrMissingGlyph))
			return
		}
	}
	if cur, _ := p.pdf.GetFontSize(); cur != sizePt {
		p.pdf.SetFontSize(sizePt)
	}
	p.pdf.SetTextColor(grey, grey, grey)
	p.pdf.Text(x, y, s)
}

func (p *page) centered(s string, sizePt, y float64, grey int) {
	p.text(s, (pageW-measure(p.pdf, sizePt)(s))/2, y, sizePt, grey)
}

// cell fits pieces into the box (x, y, w, h) and draws them stacked and
// vertically centred; align is "L" or "C".
func (p *page) cell(x, y, w, h float64, align string, grey int, pieces ...piece) {
	if p.err != nil {
		return
	}
	fits, err := fitCell(p.pdf, w-2*cellPad, h-1, pieces)
	if err != nil {
		p.fail(err)
		return
	}
	total := 0.0
	for _, f := range fits {
		total += float64(len(f.lines)) * f.size * ptToMM * lineFactor
	}
	top := y + (h-total)/2
	for i, f := range fits {
		lh := f.size * ptToMM * lineFactor
		g := grey
		if i > 0 && grey == labelGrey { // English half of a label: a little lighter
			g = labelGrey + 20
		}
		for _, line := range f.lines {
			// Baseline: centre the em box (ascent ≈ 0.88 em) in the line.
			base := top + lh/2 + 0.36*f.size*ptToMM
			lx := x + cellPad
			if align == "C" {
				lx = x + (w-measure(p.pdf, f.size)(line))/2
			}
			p.text(line, lx, base, f.size, g)
			top += lh
		}
	}
}

// rule draws a table border rectangle.
func (p *page) rule(x, y, w, h float64) {
	p.pdf.SetDrawColor(ruleGrey, ruleGrey, ruleGrey)
	p.pdf.SetLineWidth(ruleWidth)
	p.pdf.Rect(x, y, w, h, "D")
}

func (p *page) title(c *certificate.Certificate, y float64) float64 {
	p.centered(titleJa, 16, y+7, textGrey)
	p.centered(titleEn, 12, y+13.5, textGrey)
	ja, en := kindDomesticJa, kindDomesticEn
	if c.Kind == certificate.Overseas {
		ja, en = kindOverseasJa, kindOverseasEn
	}
	p.centered(ja+" / "+en, 9, y+19.5, labelGrey)
	return y + 22
}

// row draws one label/value row of the holder or issuer table.
func (p *page) row(y, h float64, labelJa, labelEn string, values ...piece) float64 {
	p.rule(marginX, y, labelW, h)
	p.rule(marginX+labelW, y, contentW-labelW, h)
	p.cell(marginX, y, labelW, h, "L", labelGrey, piece{"", labelJa, 9}, piece{"", labelEn, 7.5})
	p.cell(marginX+labelW, y, contentW-labelW, h, "L", textGrey, values...)
	return y + h
}

func (p *page) holder(c *certificate.Certificate, y float64) float64 {
	h := c.Holder
	if c.Kind == certificate.Overseas {
		y = p.row(y, nameRowOvsH, nameJa, nameEn,
			piece{"holder.romanName", romanName(h), 13}, piece{"holder.name", h.Name, 12})
		y = p.row(y, holderRowH, birthJa, birthEn, piece{"holder.birthDate", h.BirthDate, 11})
		y = p.row(y, holderRowH, nationalityJa, nationalityEn, piece{"holder.nationality", h.Nationality, 11})
		y = p.row(y, holderRowH, passportJa, passportEn, piece{"holder.passportNumber", h.PassportNumber, 11})
		return p.row(y, holderRowH, certIDJa, certIDEn, piece{"id", c.ID, 11})
	}
	y = p.row(y, nameRowH, nameJa, nameEn, piece{"holder.name", h.Name, 14})
	return p.row(y, holderRowH, birthJa, birthEn, piece{"holder.birthDate", h.BirthDate, 11})
}

func (p *page) doses(c *certificate.Certificate, y float64) float64 {
	x := marginX
	for _, col := range doseColumns {
		p.rule(x, y, col.w, doseHeadH)
		if col.ja != "" {
			p.cell(x, y, col.w, doseHeadH, "C", labelGrey, piece{"", col.ja, 8}, piece{"", col.en, 6.5})
		}
		x += col.w
	}
	y += doseHeadH
	for i, d := range c.Doses {
		pre := fmt.Sprintf("doses[%d].", i)
		cells := [][]piece{
			{{"", fmt.Sprintf(doseJaFmt, d.Number), 8.5}, {"", fmt.Sprintf(doseEnFmt, d.Number), 7}},
			{{pre + "vaccineTypeJa", d.VaccineTypeJa, 8}, {pre + "vaccineTypeEn", d.VaccineTypeEn, 7}},
			{{pre + "manufacturerJa", d.ManufacturerJa, 8}, {pre + "manufacturerEn", d.ManufacturerEn, 7}},
			{{pre + "productName", d.ProductName, 8.5}},
			{{pre + "lot", d.Lot, 9}},
			{{pre + "date", d.Date, 9}},
			{{pre + "country", d.Country, 9}},
		}
		x = marginX
		for j, col := range doseColumns {
			p.rule(x, y, col.w, doseRowH)
			grey := textGrey
			if j == 0 {
				grey = labelGrey
			}
			p.cell(x, y, col.w, doseRowH, "C", grey, nonEmpty(cells[j])...)
			x += col.w
		}
		y += doseRowH
	}
	return y
}

// nonEmpty drops empty pieces so an absent English name does not leave a
// blank line in the cell.
func nonEmpty(ps []piece) []piece {
	out := ps[:0:0]
	for _, p := range ps {
		if p.text != "" {
			out = append(out, p)
		}
	}
	return out
}

func (p *page) issuer(c *certificate.Certificate, y float64) float64 {
	y = p.row(y, issuerRowH, authorityJa, authorityEn,
		piece{"issuer.authorityJa", c.Issuer.AuthorityJa, 11}, piece{"issuer.authorityEn", c.Issuer.AuthorityEn, 9})
	return p.row(y, holderRowH, issueDateJa, issueDateEn, piece{"issueDate", c.IssueDate, 11})
}

// QR geometry. Module edges are put on the printer's dot grid: a module is
// a whole number of 1/600-inch dots (a multiple of 4 when large enough, so
// also whole pixels at 150 and 300 dpi), and each code's corner sits on a
// 1/50-inch grid (whole pixels at 150, 200, 300 and 600 dpi). Uneven
// module widths from rounding are what make a small code hard to scan.
const (
	printerDot = 25.4 / 600
	alignGrid  = 25.4 / 50
)

// moduleSize is the largest dot-aligned module size at which n modules fit
// in avail mm.
func moduleSize(n int, avail float64) float64 {
	k := int(avail / float64(n) / printerDot)
	if k >= 12 {
		k -= k % 4
	}
	return float64(k) * printerDot
}

func snapDown(v float64) float64 { return math.Floor(v/alignGrid) * alignGrid }
func snapUp(v float64) float64   { return math.Ceil(v/alignGrid-1e-9) * alignGrid }

// qrBand returns the top of the QR band and the room for a code: the band
// is anchored to the bottom when there is room (so the codes sit in the
// same place on every certificate) and starts below the content otherwise.
func qrBand(contentEnd float64) (top, avail float64) {
	bottom := footerBase - 8 - captionGap
	top = snapUp(math.Max(contentEnd, bottom-qrMaxSize))
	return top, bottom - top
}

func (p *page) qrCodes(c *certificate.Certificate, codes *qrSet, contentEnd float64) {
	if p.err != nil {
		return
	}
	ps := payloads(c)
	top, avail := qrBand(contentEnd)
	n := float64(len(ps))
	slotW := (contentW - qrGap*(n-1)) / n
	bitmaps := make([][][]bool, len(ps))
	sizes := make([]float64, len(ps))
	tallest := 0.0
	for i, q := range ps {
		bitmap, err := codes.get(q.text, q.level)
		if err != nil {
			p.fail(fmt.Errorf("certpdf: %s QR code: %w", q.name, err))
			return
		}
		bitmaps[i] = bitmap
		sizes[i] = moduleSize(len(bitmap), math.Min(math.Min(avail, slotW), qrMaxSize)) * float64(len(bitmap))
		if sizes[i] < qrMinSize { // cannot happen within certificate.MaxDoses; guard anyway
			p.fail(fmt.Errorf("%w: %s QR code would be under %.0f mm", ErrTextOverflow, q.name, qrMinSize))
			return
		}
		tallest = math.Max(tallest, sizes[i])
	}
	for i, q := range ps {
		size := sizes[i]
		slotX := marginX + float64(i)*(slotW+qrGap)
		x := snapDown(slotX + (slotW-size)/2)
		drawQR(p.pdf, bitmaps[i], x, top, size)
		p.qrBoxes = append(p.qrBoxes, qrBox{q.name, x, top, size, contentEnd})
		caption := shcCaption
		if q.name == "vdsnc" {
			caption = vdsncCaption
		}
		p.text(caption, x+(size-measure(p.pdf, 8)(caption))/2, top+tallest+captionGap, 8, labelGrey)
	}
}
