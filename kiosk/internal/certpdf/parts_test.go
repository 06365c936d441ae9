package certpdf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/draw"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/go-pdf/fpdf"

	"github.com/kioskcert/kioskcert/assets/fonts"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
)

// testDoc is a one-page document with a subset of the font covering the
// static labels and extra, for tests of the drawing helpers.
func testDoc(t testing.TB, extra string) *fpdf.Fpdf {
	t.Helper()
	r := renderer(t)
	font, err := r.font.subset([]rune(staticText() + extra))
	if err != nil {
		t.Fatal(err)
	}
	pdf := newDocument(font, "2024-03-01")
	pdf.AddPage()
	pdf.SetFont(fontFamily, "", 10)
	if err := pdf.Error(); err != nil {
		t.Fatal(err)
	}
	return pdf
}

// joinWithoutSpaces is the characters of lines other than spaces, in order.
func joinWithoutSpaces(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		for _, r := range l {
			if r != ' ' && r != '\u3000' {
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

func TestWrap(t *testing.T) {
	const sample = "髙﨑　花子グエン　ヴァン　アンSHIKEN HANAKO Mayor of Asahikawa City (Acting) WWWWWWWWWWWWWWWWWWWWWWWWWW"
	pdf := testDoc(t, sample)
	tests := []struct {
		name string
		text string
		w    float64
		want []string // nil: only check the invariants
	}{
		{"fits", "SHIKEN HANAKO", 100, []string{"SHIKEN HANAKO"}},
		{"empty", "", 10, nil},
		{"Latin breaks at the space", "SHIKEN HANAKO", 20, []string{"SHIKEN", "HANAKO"}},
		{"Japanese breaks between characters", "髙﨑　花子", 9, []string{"髙﨑", "花子"}},
		{"over-long word is split", strings.Repeat("W", 26), 20, nil},
		{"mixed", "Mayor of Asahikawa City (Acting)", 25, nil},
		{"katakana name", "グエン　ヴァン　アン", 12, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			width := measure(pdf, 10)
			got := wrap(width, tc.text, tc.w)
			if tc.want != nil && !slices.Equal(got, tc.want) {
				t.Errorf("wrap = %q, want %q", got, tc.want)
			}
			// Invariants: nothing but spaces lost, every line fits (or is
			// a single character).
			if joinWithoutSpaces(got) != joinWithoutSpaces([]string{tc.text}) {
				t.Errorf("wrap lost characters: %q from %q", got, tc.text)
			}
			for _, l := range got {
				if width(l) > tc.w && len([]rune(l)) > 1 {
					t.Errorf("line %q is %.1f mm wide, limit %.1f", l, width(l), tc.w)
				}
			}
		})
	}
}

func TestFitCell(t *testing.T) {
	pdf := testDoc(t, "髙﨑")
	long := strings.Repeat("髙", 16) + "　" + strings.Repeat("﨑", 16)
	fits, err := fitCell(pdf, 120, 10, []piece{{"holder.name", long, 14}})
	if err != nil {
		t.Fatal(err)
	}
	if fits[0].size >= 14 || fits[0].size < minFontPt {
		t.Errorf("size %.1f: expected a shrunk size between %.0f and 14", fits[0].size, minFontPt)
	}
	if _, err := fitCell(pdf, 20, 3, []piece{{"holder.name", long, 14}}); !errors.Is(err, ErrTextOverflow) {
		t.Errorf("overflow: got %v, want ErrTextOverflow", err)
	} else if !strings.Contains(err.Error(), "holder.name") || strings.Contains(err.Error(), "髙") {
		t.Errorf("overflow error should name the field, not the value: %v", err)
	}
}

func TestMergeRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		n := 1 + rng.IntN(40)
		bm := make([][]bool, n)
		for y := range bm {
			bm[y] = make([]bool, n)
			for x := range bm[y] {
				bm[y][x] = rng.IntN(3) > 0
			}
			if y > 0 && rng.IntN(3) == 0 { // repeated rows exercise vertical merging
				copy(bm[y], bm[y-1])
			}
		}
		covered := make([][]int, n)
		for y := range covered {
			covered[y] = make([]int, n)
		}
		for _, r := range mergeRuns(bm) {
			for y := r.y; y < r.y+r.h; y++ {
				for x := r.x; x < r.x+r.w; x++ {
					covered[y][x]++
				}
			}
		}
		for y := range bm {
			for x := range bm[y] {
				want := 0
				if bm[y][x] {
					want = 1
				}
				if covered[y][x] != want {
					t.Fatalf("bitmap %d: module (%d,%d) covered %d times, dark=%v", i, x, y, covered[y][x], bm[y][x])
				}
			}
		}
	}
	// Known answer: an L shape is two rectangles, an identical column one.
	got := mergeRuns([][]bool{{true, false}, {true, false}, {true, true}})
	want := []moduleRect{{0, 0, 1, 2}, {0, 2, 2, 1}}
	if !slices.Equal(got, want) {
		t.Errorf("mergeRuns = %v, want %v", got, want)
	}
}

func TestModuleSize(t *testing.T) {
	tests := []struct {
		n     int
		avail float64
		dots  int
	}{
		{121, 70, 12},  // 13.6 dots -> multiple of 4
		{113, 70, 12},  // 14.6 -> 12
		{169, 64.5, 9}, // small: whole dots only
		{29, 70, 56},   // 57.0 -> 56
	}
	for _, tc := range tests {
		got := moduleSize(tc.n, tc.avail)
		if d := got / printerDot; d < float64(tc.dots)-1e-9 || d > float64(tc.dots)+1e-9 {
			t.Errorf("moduleSize(%d, %.1f) = %.1f dots, want %d", tc.n, tc.avail, d, tc.dots)
		}
		if got*float64(tc.n) > tc.avail {
			t.Errorf("moduleSize(%d, %.1f): code of %.1f mm does not fit", tc.n, tc.avail, got*float64(tc.n))
		}
	}
}

// TestSubset: the subset font maps every requested character to a glyph
// identical to the original's, with the same advance width, and parses.
func TestSubset(t *testing.T) {
	full := renderer(t).font
	runes := []rune("髙﨑　花子グエン ヴァン アンSHIKEN 0123-/新型コロナ")
	sub, err := full.subset(runes)
	if err != nil {
		t.Fatal(err)
	}
	if len(sub) > 100_000 {
		t.Errorf("subset of %d characters is %d bytes", len(runes), len(sub))
	}
	s, err := parseSFNT(sub)
	if err != nil {
		t.Fatal(err)
	}
	advance := func(f *sfnt, g int) int {
		if g >= f.numHMetrics {
			g = f.numHMetrics - 1
		}
		return u16(f.tables["hmtx"], 4*g)
	}
	for _, r := range runes {
		og, ng := int(full.glyphIndex(r)), int(s.glyphIndex(r))
		if ng == 0 {
			t.Errorf("U+%04X missing from the subset", r)
			continue
		}
		if !bytes.Equal(full.glyphData(og), s.glyphData(ng)) {
			if _, offs, _ := components(full.glyphData(og)); len(offs) == 0 {
				t.Errorf("U+%04X: glyph outline differs", r)
			}
		}
		if advance(full, og) != advance(s, ng) {
			t.Errorf("U+%04X: advance %d, want %d", r, advance(s, ng), advance(full, og))
		}
	}
	if s.glyphIndex('X') != 0 {
		t.Error("subset has a glyph it was not asked for")
	}
	if _, err := full.subset([]rune{0xE000}); err == nil {
		t.Error("subset accepted a character the font lacks")
	}
}

// TestSubsetComposite covers composite glyphs (built from other glyphs),
// whose component references must be renumbered: any in the font are
// checked, and a synthetic one otherwise.
func TestSubsetComposite(t *testing.T) {
	full := renderer(t).font
	var found []rune
	for r, g := range full.cmap {
		if gids, _, _ := components(full.glyphData(int(g))); len(gids) > 0 && r <= 0xFFFF {
			found = append(found, r)
		}
	}
	slices.Sort(found)
	t.Logf("IPAex Gothic has %d composite glyphs reachable from the cmap", len(found))
	if len(found) > 3 {
		found = found[:3]
	}
	for _, r := range found {
		sub, err := full.subset([]rune{r})
		if err != nil {
			t.Fatal(err)
		}
		s, err := parseSFNT(sub)
		if err != nil {
			t.Fatal(err)
		}
		gids, _, err := components(s.glyphData(int(s.glyphIndex(r))))
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gids {
			if g >= s.numGlyphs {
				t.Errorf("U+%04X: component %d not renumbered (subset has %d glyphs)", r, g, s.numGlyphs)
			}
		}
	}
	// Synthetic: a composite glyph of two components, flags covering the
	// argument and scale forms.
	glyph := []byte{0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, // numberOfContours -1, bbox
		0x00, 0x21, 0x00, 0x02, 0, 0, 0, 0, // MORE_COMPONENTS|ARGS_ARE_WORDS, glyph 2 (B), word args
		0x00, 0x08, 0x00, 0x01, 1, 2, 0x40, 0x00} // WE_HAVE_A_SCALE, glyph 1 (A), byte args, scale
	gids, offs, err := components(glyph)
	if err != nil || !slices.Equal(gids, []int{2, 1}) || !slices.Equal(offs, []int{12, 20}) {
		t.Errorf("components = %v %v %v, want [2 1] [12 20]", gids, offs, err)
	}
	if _, _, err := components(glyph[:14]); err == nil {
		t.Error("truncated composite glyph accepted")
	}

	// A font whose 'C' is that composite of its 'B' and 'A': subsetting
	// just 'C' must pull in both and renumber the references.
	base, err := full.subset([]rune("AB"))
	if err != nil {
		t.Fatal(err)
	}
	bf, err := parseSFNT(base)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string][]byte{}
	for tag, data := range bf.tables {
		tables[tag] = data
	}
	var glyf, loca []byte
	for g := 0; g < 3; g++ {
		loca = binary.BigEndian.AppendUint32(loca, uint32(len(glyf)))
		glyf = append(glyf, bf.glyphData(g)...)
	}
	loca = binary.BigEndian.AppendUint32(loca, uint32(len(glyf)))
	glyf = append(glyf, glyph...)
	loca = binary.BigEndian.AppendUint32(loca, uint32(len(glyf)))
	tables["glyf"], tables["loca"] = glyf, loca
	tables["hmtx"] = append(slices.Clone(bf.tables["hmtx"][:12]), bf.tables["hmtx"][4:8]...)
	tables["maxp"] = slices.Clone(bf.tables["maxp"])
	binary.BigEndian.PutUint16(tables["maxp"][4:], 4)
	tables["hhea"] = slices.Clone(bf.tables["hhea"])
	binary.BigEndian.PutUint16(tables["hhea"][34:], 4)
	tables["cmap"] = cmap4([]rune("ABC"), func(r rune) int { return int(r-'A') + 1 })
	synth, err := parseSFNT(assembleSFNT(tables))
	if err != nil {
		t.Fatal(err)
	}
	out, err := synth.subset([]rune("C"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseSFNT(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.numGlyphs != 4 {
		t.Fatalf("subset of C has %d glyphs, want 4 (.notdef, C, B, A)", s.numGlyphs)
	}
	cg, _, err := components(s.glyphData(int(s.glyphIndex('C'))))
	if err != nil || len(cg) != 2 {
		t.Fatalf("C is not a composite in the subset: %v %v", cg, err)
	}
	if !bytes.Equal(s.glyphData(cg[0]), bf.glyphData(2)) || !bytes.Equal(s.glyphData(cg[1]), bf.glyphData(1)) {
		t.Error("renumbered components do not point at B and A")
	}
}

func FuzzParseSFNT(f *testing.F) {
	full := renderer(f).font
	seed, err := full.subset([]rune("髙﨑花子 AB1"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:200])
	f.Add(fonts.IPAexGothic()[:4096])
	f.Add([]byte{0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseSFNT(data)
		if err != nil {
			if !errors.Is(err, errBadFont) {
				t.Fatalf("error does not wrap errBadFont: %v", err)
			}
			return
		}
		var runes []rune
		for r := rune(0); r <= 0xFFFF && len(runes) < 8; r++ {
			if s.glyphIndex(r) != 0 {
				runes = append(runes, r)
			}
		}
		sub, err := s.subset(runes)
		if err != nil {
			return
		}
		// Round trip: the subset parses and maps the same characters.
		s2, err := parseSFNT(sub)
		if err != nil {
			t.Fatalf("subset does not parse: %v", err)
		}
		for _, r := range runes {
			if s2.glyphIndex(r) == 0 {
				t.Fatalf("U+%04X lost in the subset", r)
			}
		}
	})
}

// TestDoseCellsReadable: every product's vaccine type, manufacturer and
// name fit their dose-table cells at a readable size (7 pt or more, never
// the 5 pt floor), in the real font.
func TestDoseCellsReadable(t *testing.T) {
	var extra strings.Builder
	for _, p := range vaccine.All() {
		extra.WriteString(p.TypeJa + p.TypeEn + p.ManufacturerJa + p.ManufacturerEn + p.Name)
	}
	pdf := testDoc(t, extra.String())
	for _, p := range vaccine.All() {
		for _, c := range []struct {
			col    int
			pieces []piece
		}{
			{1, []piece{{"type", p.TypeJa, 8}, {"type", p.TypeEn, 7}}},
			{2, []piece{{"maker", p.ManufacturerJa, 8}, {"maker", p.ManufacturerEn, 7}}},
			{3, []piece{{"product", p.Name, 8.5}}},
		} {
			got, err := fitCell(pdf, doseColumns[c.col].w-2*cellPad, doseRowH-1, c.pieces)
			if err != nil {
				t.Errorf("%s: %v", p.Code, err)
				continue
			}
			for i, f := range got {
				if f.size < 7 {
					t.Errorf("%s: %q printed at %.1f pt (preferred %.1f): too small to read", p.Code, c.pieces[i].text, f.size, c.pieces[i].maxPt)
				}
			}
		}
	}
}

// TestCopyEvidence checks that the 地紋 is a true latent image, on a page
// with only the background, rendered by poppler (pdftoppm) as a printer's
// interpreter or a viewer would.
//
// On the original the hidden words must not show: cut the page into cells
// of one period of both dot screens (1.27 mm), and the cells inside the
// words have the same mean tone as the cells of the background, at print
// resolution (300 dpi) and on screen (100 dpi), and the same texture on
// screen (their pixels vary as much).
//
// A photocopy must show them: the simulated copier reads the 300 dpi page
// at 150 dpi (2 × 2 pixels averaged), its optics blur (3 × 3 box) and it
// prints black where the result is darker than its threshold. The fine
// background screen then vanishes and the coarse dots of the words stay.
func TestCopyEvidence(t *testing.T) {
	pageMM := [4]float64{0, 0, 210, 200} // both words; from the page's corner so cells align with the tiles
	render := func(paint func(pdf *fpdf.Fpdf), dpi int) *image.Gray {
		pdf := testDoc(t, "")
		paint(pdf)
		var buf bytes.Buffer
		if err := pdf.Output(&buf); err != nil {
			t.Fatal(err)
		}
		img := rasterize(t, buf.Bytes(), 1, dpi, pageMM)
		g := image.NewGray(image.Rect(0, 0, img.Bounds().Dx(), img.Bounds().Dy()))
		draw.Draw(g, g.Bounds(), img, img.Bounds().Min, draw.Src)
		return g
	}
	words := func(pdf *fpdf.Fpdf) {
		for _, w := range latentWords {
			pdf.SetFontSize(w.sizePt)
			x, _ := w.place(pdf)
			pdf.Text(x, w.baseline, w.text)
		}
	}
	dark := func(g *image.Gray, x, y int) float64 { return 1 - float64(g.Pix[y*g.Stride+x])/255 }

	// cells returns the mean tone of each cell wholly inside the words
	// and of each wholly outside them (and not touching them).
	cells := func(orig, mask *image.Gray, cell int) (in, out []float64, inVar, outVar float64) {
		b := orig.Bounds()
		var nIn, nOut float64
		for cy := 0; cy+cell <= b.Dy(); cy += cell {
			for cx := 0; cx+cell <= b.Dx(); cx += cell {
				inside, outside := true, true
				for y := cy - cell; y < cy+2*cell; y++ {
					for x := cx - cell; x < cx+2*cell; x++ {
						if x < 0 || y < 0 || x >= b.Dx() || y >= b.Dy() {
							continue
						}
						m := dark(mask, x, y)
						own := x >= cx && x < cx+cell && y >= cy && y < cy+cell
						if own && m < 0.9 {
							inside = false
						}
						if m > 0.1 {
							outside = false
						}
					}
				}
				if !inside && !outside {
					continue
				}
				sum, sq := 0.0, 0.0
				for y := cy; y < cy+cell; y++ {
					for x := cx; x < cx+cell; x++ {
						d := dark(orig, x, y)
						sum, sq = sum+d, sq+d*d
					}
				}
				n := float64(cell * cell)
				mean := sum / n
				v := sq/n - mean*mean
				if inside {
					in, inVar, nIn = append(in, mean), inVar+v, nIn+1
				} else {
					out, outVar, nOut = append(out, mean), outVar+v, nOut+1
				}
			}
		}
		return in, out, inVar / nIn, outVar / nOut
	}
	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}

	// The original, at print resolution and on screen.
	for _, c := range []struct {
		dpi, cell int // cell in pixels: at 300 dpi one whole period of every screen (56 printer dots); at 100 dpi 1 mm, the mean over many cells of every phase
	}{{300, 28}, {100, 4}} {
		orig, mask := render(drawPantograph, c.dpi), render(words, c.dpi)
		in, out, inVar, outVar := cells(orig, mask, c.cell)
		if len(in) < 200 || len(out) < 2000 {
			t.Fatalf("%d dpi: %d word cells and %d background cells: the words are not where the test looks", c.dpi, len(in), len(out))
		}
		mi, mo := mean(in), mean(out)
		si, so := math.Sqrt(inVar), math.Sqrt(outVar)
		t.Logf("original at %d dpi: mean tone words %.4f, background %.4f (%d and %d cells); texture (pixel s.d. in a cell) words %.4f, background %.4f",
			c.dpi, mi, mo, len(in), len(out), si, so)
		if mo < 0.03 || mo > 0.12 {
			t.Errorf("%d dpi: background tone %.3f, want a light tint (0.03-0.12)", c.dpi, mo)
		}
		if d := math.Abs(mi - mo); d > 0.004 {
			t.Errorf("%d dpi: the words differ in mean tone from the background by %.4f: they would show on the original", c.dpi, d)
		}
	}

	// The photocopy.
	orig, mask := render(drawPantograph, 300), render(words, 300)
	b := orig.Bounds()
	w, h := b.Dx()/2, b.Dy()/2
	scan := make([]float64, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			scan[y*w+x] = (dark(orig, 2*x, 2*y) + dark(orig, 2*x+1, 2*y) + dark(orig, 2*x, 2*y+1) + dark(orig, 2*x+1, 2*y+1)) / 4
		}
	}
	const threshold = copierThreshold
	var inBlack, outBlack, nIn, nOut float64
	for y := 1; y < h-1; y++ {
		for x := 1; x < w-1; x++ {
			m := (dark(mask, 2*x, 2*y) + dark(mask, 2*x+1, 2*y+1)) / 2
			if m > 0.1 && m < 0.9 {
				continue
			}
			blur := 0.0
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					blur += scan[(y+dy)*w+x+dx] / 9
				}
			}
			black := 0.0
			if blur > threshold {
				black = 1
			}
			if m >= 0.9 {
				inBlack, nIn = inBlack+black, nIn+1
			} else {
				outBlack, nOut = outBlack+black, nOut+1
			}
		}
	}
	inBlack, outBlack = inBlack/nIn, outBlack/nOut
	t.Logf("simulated copy (150 dpi, 3×3 blur, threshold %.2f): words %.3f black, background %.4f black: contrast %.3f", threshold, inBlack, outBlack, inBlack-outBlack)
	if inBlack-outBlack < 0.05 || outBlack > 0.002 {
		t.Errorf("on a copy the words should appear (contrast %.3f, want ≥ 0.05) and the background vanish (%.4f black, want ≤ 0.002)", inBlack-outBlack, outBlack)
	}
}

// copierThreshold is the darkness above which the simulated copier prints
// black: a light tint below it is dropped, as copiers drop background tints.
const copierThreshold = 0.16
