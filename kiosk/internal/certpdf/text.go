package certpdf

import (
	"fmt"
	"unicode/utf8"

	"github.com/go-pdf/fpdf"
)

const (
	ptToMM     = 25.4 / 72
	lineFactor = 1.18 // line pitch as a multiple of the font size
	minFontPt  = 5.0  // smallest size we print; below it text is refused
	cellPad    = 1.5  // horizontal padding inside table cells, mm
)

// piece is one block of text in a cell: a value or a label.
type piece struct {
	field string  // for errors: which value overflowed (empty for labels)
	text  string  //
	maxPt float64 // preferred (largest) size
}

// fitted is a piece laid out: its size and wrapped lines.
type fitted struct {
	size  float64
	lines []string
}

// fitCell finds the largest common scale at which every piece, wrapped to
// width w, fits height h when stacked. Scaling all pieces together keeps
// the Japanese and English halves of a label in proportion. It never
// truncates: when nothing fits at minFontPt it fails with ErrTextOverflow
// naming the field.
func fitCell(pdf *fpdf.Fpdf, w, h float64, pieces []piece) ([]fitted, error) {
	out := make([]fitted, len(pieces))
	for scale := 1.0; ; scale -= 0.04 {
		total := 0.0
		floored := true
		for i, p := range pieces {
			size := p.maxPt * scale
			if size < minFontPt {
				size = minFontPt
			} else {
				floored = false
			}
			out[i] = fitted{size, wrap(measure(pdf, size), p.text, w)}
			total += float64(len(out[i].lines)) * size * ptToMM * lineFactor
		}
		if total <= h {
			return out, nil
		}
		if floored || scale < 0.05 {
			name := "label"
			for _, p := range pieces {
				if p.field != "" {
					name = p.field
					break
				}
			}
			return nil, fmt.Errorf("%w: %s", ErrTextOverflow, name)
		}
	}
}

// measure returns a function giving the width in mm of a string set at
// sizePt in the current font. It does not change fpdf's font size, which
// would write a font-selection operator into the page for every trial.
func measure(pdf *fpdf.Fpdf, sizePt float64) func(string) float64 {
	return func(s string) float64 {
		return float64(pdf.GetStringSymbolWidth(s)) * sizePt / 1000 * ptToMM
	}
}

// wrap breaks s into lines no wider than w as measured by width. Latin
// words break at spaces; Japanese text may break between any two
// characters (Japanese has no spaces). A space (ASCII or ideographic) at a
// break is dropped; no other character is ever lost. A word wider than w is
// split between characters.
func wrap(width func(string) float64, s string, w float64) []string {
	if s == "" {
		return nil
	}
	if width(s) <= w {
		return []string{s}
	}
	var lines []string
	line, pendingSep := "", ""
	flush := func() {
		if line != "" {
			lines = append(lines, line)
		}
		line, pendingSep = "", ""
	}
	for _, tok := range tokens(s) {
		if isSpace(tok) {
			if line != "" {
				pendingSep += tok
			}
			continue
		}
		if cand := line + pendingSep + tok; width(cand) <= w {
			line, pendingSep = cand, ""
			continue
		}
		flush()
		if width(tok) <= w {
			line = tok
			continue
		}
		for _, r := range tok { // a single over-long word: split it
			if c := line + string(r); line == "" || width(c) <= w {
				line = c
			} else {
				lines = append(lines, line)
				line = string(r)
			}
		}
	}
	flush()
	return lines
}

// tokens splits s into break units: runs of Latin letters, digits and
// punctuation (one word), single spaces, and single other characters (each
// kanji or kana can end a line).
func tokens(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r < 0x80 && r != ' ' {
			j := i
			for j < len(s) && s[j] < 0x80 && s[j] != ' ' {
				j++
			}
			out = append(out, s[i:j])
			i = j
			continue
		}
		out = append(out, s[i:i+n])
		i += n
	}
	return out
}

func isSpace(tok string) bool { return tok == " " || tok == "\u3000" }
