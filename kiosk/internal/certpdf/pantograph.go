package certpdf

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"sync"

	"github.com/go-pdf/fpdf"
)

// The copy-evident background (地紋, "void pantograph"): a latent image.
//
// A photocopier or scanner cannot reproduce detail below its resolution
// limit: dots much smaller than its sampling pitch are averaged into a pale
// grey that its threshold then drops, while larger dots survive. A latent
// image uses two dot patterns of the same ink and the same average
// coverage, so that on the original the hidden words have the tone of
// their surroundings and only a copy shows them:
//
//   - the background: fine dots, 2×2 printer dots (0.085 mm) on a pitch of
//     5 (0.21 mm, 120 lines per inch): 16 % coverage. A copier averages
//     them into a 9 % grey and drops it.
//   - the words 複写 and COPY: half the coverage in coarse dots, 8×8
//     (0.34 mm) on a pitch of 28 (1.19 mm), the other half in fine dots
//     (2×2 on a pitch of 7) between them: 16 % coverage again, a shade
//     darker ink (grey 104 against 110) to make up for the fine dots the
//     coarse ones cover. The coarse dots survive a copy.
//
// ("Printer dots" are 1/600 inch.) Filling the words half with fine dots
// keeps their texture close to the background's: with coarse dots alone
// (the first version: 0.51 mm dots on white) the words read plainly at any
// zoom. TestCopyEvidence measures both promises on a rendered page: the
// mean tone of cells inside the words equals the background's within
// 0.004 at 300 and 100 dpi, and a simulated copy (150 dpi, blur, threshold)
// shows the words while the background vanishes. A close look still finds
// the coarse dots: every latent image can be seen under magnification;
// docs/PRINTING.md has the figures.
//
// How it is drawn. A screen drawn as vector dots is about 350,000 tiny
// shapes per page (even written as dashed lines, 700 paths of 500 dashes
// each): poppler needed 5 s to rasterise such a page at 200 dpi and 20 s at
// 600 dpi, and a kiosk printer's interpreter would be slower still. So each
// screen is a small image tile instead (240 or 360 printer dots square), two
// grey levels, a few hundred bytes, embedded once per document and placed on a
// grid over the page. Rasterisers handle repeated small images quickly,
// and at 300, 600 or 1200 dpi each tile pixel maps to whole device pixels,
// so the dots print at their exact size. The words are vector: their glyph
// outlines become a clipping path (text render mode 7), and the coarse tiles
// are drawn inside it over the fine ones. Everything is painted before the
// content, and the QR codes get a white ground of their own.
//
// A text extractor (pdftotext) sees the clip words as text; that is
// harmless, and the tests account for it.

// Screen geometry in printer dots (1/600 inch). A tile's side is a
// multiple of its screen's stagger period (two pitches) so tiles join
// seamlessly. The two tiles must differ in width: fpdf orders images by
// width alone, and equal widths would make the object order (and so the
// output bytes) vary from run to run.
const (
	tintGrey = 110 // grey level of the background screen
	// wordTintGrey is a shade darker: where the coarse dots cover fine
	// ones the words lose some coverage (15.65 % against the
	// background's 16 %, and poppler's resampling a little more); the
	// darker dots give that tone back (measured by TestCopyEvidence).
	wordTintGrey  = 104
	fineDot       = 2
	finePitch     = 5
	fineTilePx    = 240
	wordFineDot   = 2
	wordFinePitch = 7
	coarseDot     = 8
	coarsePitch   = 28
	coarseTilePx  = 336
	fineTile      = "screen-fine"
	coarseTile    = "screen-coarse"
)

// latentWord is one hidden word: its text, size and baseline position.
type latentWord struct {
	text     string
	sizePt   float64
	baseline float64 // mm from the top of the page
}

// place returns the left edge and width (mm) of the word, centred on the
// page, in the current font.
func (w latentWord) place(pdf *fpdf.Fpdf) (x, width float64) {
	pageWidth, _ := pdf.GetPageSize()
	width = measure(pdf, w.sizePt)(w.text)
	return (pageWidth - width) / 2, width
}

// latentWords sit over the middle of the page, where the content is text
// rather than QR codes (which are on white).
var latentWords = []latentWord{
	{"COPY", 120, 92},
	{"複写", 200, 172},
}

// screenTiles are the PNG tiles of both screens, made once per process.
var screenTiles = sync.OnceValue(func() [2][]byte {
	return [2][]byte{
		screenPNG(fineTilePx, screen{fineDot, finePitch, tintGrey}),
		screenPNG(coarseTilePx, screen{wordFineDot, wordFinePitch, wordTintGrey}, screen{coarseDot, coarsePitch, wordTintGrey}),
	}
})

// screen is a dot screen: square dots of side dot on a grid of pitch, of
// grey level grey.
type screen struct{ dot, pitch, grey int }

// screenPNG draws a tile of side px with the given screens laid over each
// other, each staggered (every other row shifted by half a pitch: a
// staggered screen looks even rather than striped), as an 8-bit grey PNG.
// (Grey rather than a two-colour palette: fpdf would compress the palette
// separately, with a fresh 1 MB zlib writer per image per document.)
func screenPNG(px int, screens ...screen) []byte {
	img := image.NewGray(image.Rect(0, 0, px, px))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	for _, sc := range screens {
		for y := 0; y < px; y++ {
			if y%sc.pitch >= sc.dot {
				continue
			}
			shift := (y / sc.pitch % 2) * sc.pitch / 2
			for x := 0; x < px; x++ {
				if (x+shift)%sc.pitch < sc.dot {
					img.Pix[y*img.Stride+x] = uint8(sc.grey)
				}
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic("certpdf: encoding a screen tile: " + err.Error()) // in-memory encode of a valid image cannot fail
	}
	return b.Bytes()
}

// registerScreens adds the two tiles to the document.
func registerScreens(pdf *fpdf.Fpdf) {
	t := screenTiles()
	opt := fpdf.ImageOptions{ImageType: "PNG"}
	pdf.RegisterImageOptionsReader(fineTile, opt, bytes.NewReader(t[0]))
	pdf.RegisterImageOptionsReader(coarseTile, opt, bytes.NewReader(t[1]))
}

// tileArea covers the rectangle (x0, y0)–(x1, y1) mm with a tile of side
// px printer dots, on a page-wide grid so that neighbouring areas join
// without a seam.
func tileArea(pdf *fpdf.Fpdf, tile string, px int, x0, y0, x1, y1 float64) {
	opt := fpdf.ImageOptions{ImageType: "PNG"}
	tileMM := float64(px) * printerDot
	for y := math.Floor(y0/tileMM) * tileMM; y < y1; y += tileMM {
		for x := math.Floor(x0/tileMM) * tileMM; x < x1; x += tileMM {
			pdf.ImageOptions(tile, x, y, tileMM, tileMM, false, opt, 0, "")
		}
	}
}

// drawPantograph paints the copy-evident background over the whole page.
// It leaves fpdf's colour and font state changed, so callers set their own
// before drawing (page.resetState does).
func drawPantograph(pdf *fpdf.Fpdf) {
	pageWidth, pageHeight := pdf.GetPageSize()
	tileArea(pdf, fineTile, fineTilePx, 0, 0, pageWidth, pageHeight)
	for _, w := range latentWords {
		// Set the size outside the saved state so that fpdf's idea of the
		// current font stays true after the restore below.
		pdf.SetFontSize(w.sizePt)
		x, width := w.place(pdf)
		em := w.sizePt * ptToMM

		// Same text and fill colour, or fpdf wraps the text in its own
		// q/Q and the clip would end with it.
		pdf.SetFillColor(255, 255, 255)
		pdf.SetTextColor(255, 255, 255)
		pdf.TransformBegin()        // q: the clip ends at the matching Q
		pdf.SetTextRenderingMode(7) // add the glyph outlines to the clip, paint nothing
		pdf.Text(x, w.baseline, w.text)
		// The coarse tiles are opaque: inside the glyphs they replace the
		// fine screen.
		tileArea(pdf, coarseTile, coarseTilePx, x, w.baseline-em, x+width, w.baseline+0.2*em)
		pdf.TransformEnd()
	}
}
