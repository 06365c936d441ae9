package certpdf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// This file is a minimal TrueType reader and subsetter. It exists for speed:
// fpdf parses a UTF-8 TrueType font completely every time it is added to a
// document and again when it writes the subset, which for the 6 MB IPAex
// font costs about 15 ms per PDF. Instead the font is indexed once per
// process (sfnt), and each document hands fpdf a font of only the glyphs it
// uses (a few dozen KB), which fpdf parses and embeds in well under a
// millisecond. The glyph outlines, metrics and hinting programs are copied
// unchanged, so the printed glyphs are exactly IPAex's.

// errBadFont reports a malformed font file. It never carries text content.
var errBadFont = errors.New("certpdf: malformed TrueType font")

// sfnt is an immutable index of a TrueType font: safe for concurrent use.
type sfnt struct {
	tables      map[string][]byte // raw table data by tag
	numGlyphs   int
	numHMetrics int
	loca        []uint32        // glyph offsets into glyf, numGlyphs+1 entries
	cmap        map[rune]uint16 // Unicode code point to glyph index
}

// Composite glyph component flags (TrueType 'glyf' specification).
const (
	argsAreWords    = 0x0001
	weHaveAScale    = 0x0008
	moreComponents  = 0x0020
	weHaveXYScale   = 0x0040
	weHaveTwoByTwo  = 0x0080
	glyphHeaderSize = 10
)

func u16(b []byte, off int) int { return int(binary.BigEndian.Uint16(b[off:])) }
func u32(b []byte, off int) uint32 {
	return binary.BigEndian.Uint32(b[off:])
}

// parseSFNT indexes a TrueType (glyf-outline) font. It checks every offset
// it follows so that a damaged file yields errBadFont, never a panic.
func parseSFNT(data []byte) (*sfnt, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %s", errBadFont, what) }
	if len(data) < 12 {
		return nil, bad("file too short")
	}
	if v := u32(data, 0); v != 0x00010000 && v != 0x74727565 { // 1.0 or 'true'
		return nil, bad("not a TrueType outline font (CFF and collections are not supported)")
	}
	n := u16(data, 4)
	if len(data) < 12+16*n {
		return nil, bad("table directory truncated")
	}
	f := &sfnt{tables: make(map[string][]byte, n)}
	for i := 0; i < n; i++ {
		rec := data[12+16*i:]
		tag := string(rec[:4])
		off, length := uint64(u32(rec, 8)), uint64(u32(rec, 12))
		if off+length > uint64(len(data)) {
			return nil, bad("table " + tag + " outside the file")
		}
		f.tables[tag] = data[off : off+length : off+length]
	}
	for _, tag := range []string{"head", "hhea", "maxp", "hmtx", "loca", "glyf", "cmap"} {
		if f.tables[tag] == nil {
			return nil, bad("missing table " + tag)
		}
	}
	head, hhea, maxp := f.tables["head"], f.tables["hhea"], f.tables["maxp"]
	if len(head) < 54 || len(hhea) < 36 || len(maxp) < 6 {
		return nil, bad("head, hhea or maxp too short")
	}
	if u16(head, 18) == 0 {
		return nil, bad("unitsPerEm is zero")
	}
	f.numGlyphs = u16(maxp, 4)
	f.numHMetrics = u16(hhea, 34)
	if f.numGlyphs == 0 || f.numHMetrics == 0 || f.numHMetrics > f.numGlyphs {
		return nil, bad("glyph or metric count")
	}
	if len(f.tables["hmtx"]) < 4*f.numHMetrics+2*(f.numGlyphs-f.numHMetrics) {
		return nil, bad("hmtx too short")
	}
	if err := f.parseLoca(u16(head, 50)); err != nil {
		return nil, err
	}
	if err := f.parseCmap(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *sfnt) parseLoca(format int) error {
	loca, glyfLen := f.tables["loca"], uint32(len(f.tables["glyf"]))
	f.loca = make([]uint32, f.numGlyphs+1)
	switch format {
	case 0:
		if len(loca) < 2*(f.numGlyphs+1) {
			return fmt.Errorf("%w: loca too short", errBadFont)
		}
		for i := range f.loca {
			f.loca[i] = 2 * uint32(u16(loca, 2*i))
		}
	case 1:
		if len(loca) < 4*(f.numGlyphs+1) {
			return fmt.Errorf("%w: loca too short", errBadFont)
		}
		for i := range f.loca {
			f.loca[i] = u32(loca, 4*i)
		}
	default:
		return fmt.Errorf("%w: unknown loca format", errBadFont)
	}
	for i := 0; i < f.numGlyphs; i++ {
		if f.loca[i] > f.loca[i+1] || f.loca[i+1] > glyfLen {
			return fmt.Errorf("%w: glyph offsets out of order or outside glyf", errBadFont)
		}
	}
	return nil
}

// parseCmap reads the Unicode character map: the full-repertoire format 12
// subtable (3,10) when present, else the BMP format 4 subtable (3,1 or 0,x).
func (f *sfnt) parseCmap() error {
	cmap := f.tables["cmap"]
	if len(cmap) < 4 {
		return fmt.Errorf("%w: cmap too short", errBadFont)
	}
	n := u16(cmap, 2)
	if len(cmap) < 4+8*n {
		return fmt.Errorf("%w: cmap directory truncated", errBadFont)
	}
	var fmt4, fmt12 []byte
	for i := 0; i < n; i++ {
		platform, encoding, off := u16(cmap, 4+8*i), u16(cmap, 6+8*i), uint64(u32(cmap, 8+8*i))
		if off+4 > uint64(len(cmap)) {
			return fmt.Errorf("%w: cmap subtable outside the table", errBadFont)
		}
		sub := cmap[off:]
		switch format := u16(sub, 0); {
		case format == 12 && platform == 3 && encoding == 10:
			fmt12 = sub
		case format == 4 && ((platform == 3 && encoding == 1) || platform == 0) && fmt4 == nil:
			fmt4 = sub
		}
	}
	f.cmap = make(map[rune]uint16)
	switch {
	case fmt12 != nil:
		return f.parseCmap12(fmt12)
	case fmt4 != nil:
		return f.parseCmap4(fmt4)
	}
	return fmt.Errorf("%w: no Unicode cmap subtable", errBadFont)
}

func (f *sfnt) parseCmap12(sub []byte) error {
	if len(sub) < 16 {
		return fmt.Errorf("%w: cmap format 12 too short", errBadFont)
	}
	groups := uint64(u32(sub, 12))
	if 16+12*groups > uint64(len(sub)) {
		return fmt.Errorf("%w: cmap format 12 groups truncated", errBadFont)
	}
	next := uint32(0) // groups are sorted and disjoint, so at most 0x110000 entries
	for g := uint64(0); g < groups; g++ {
		rec := sub[16+12*g:]
		start, end, gid := u32(rec, 0), u32(rec, 4), u32(rec, 8)
		if start < next || end < start || end > 0x10FFFF || uint64(gid)+uint64(end-start) >= uint64(f.numGlyphs) {
			return fmt.Errorf("%w: cmap format 12 group out of order or range", errBadFont)
		}
		next = end + 1
		for c := start; c <= end; c++ {
			f.cmap[rune(c)] = uint16(gid + c - start)
		}
	}
	return nil
}

func (f *sfnt) parseCmap4(sub []byte) error {
	if len(sub) < 14 {
		return fmt.Errorf("%w: cmap format 4 too short", errBadFont)
	}
	segs := u16(sub, 6) / 2
	if len(sub) < 16+8*segs {
		return fmt.Errorf("%w: cmap format 4 segments truncated", errBadFont)
	}
	ends, starts := 14, 16+2*segs
	deltas, ranges := starts+2*segs, starts+4*segs
	next := 0 // segments are sorted and disjoint, so at most 65536 entries
	for s := 0; s < segs; s++ {
		start, end := u16(sub, starts+2*s), u16(sub, ends+2*s)
		delta, rangeOff := u16(sub, deltas+2*s), u16(sub, ranges+2*s)
		if start > end || start < next {
			return fmt.Errorf("%w: cmap format 4 segment reversed or out of order", errBadFont)
		}
		next = end + 1
		for c := start; c <= end && c != 0xFFFF; c++ {
			gid := 0
			if rangeOff == 0 {
				gid = (c + delta) & 0xFFFF
			} else {
				// idRangeOffset is relative to its own position in the table.
				at := ranges + 2*s + rangeOff + 2*(c-start)
				if at+2 > len(sub) {
					return fmt.Errorf("%w: cmap format 4 glyph array truncated", errBadFont)
				}
				if gid = u16(sub, at); gid != 0 {
					gid = (gid + delta) & 0xFFFF
				}
			}
			if gid >= f.numGlyphs {
				return fmt.Errorf("%w: cmap maps to a glyph that does not exist", errBadFont)
			}
			if gid != 0 {
				f.cmap[rune(c)] = uint16(gid)
			}
		}
	}
	return nil
}

// glyphIndex returns the glyph for r, or 0 (.notdef, the "tofu" box) when
// the font has none.
func (f *sfnt) glyphIndex(r rune) uint16 { return f.cmap[r] }

// glyphData returns the glyf bytes of glyph g (empty for blank glyphs).
func (f *sfnt) glyphData(g int) []byte {
	return f.tables["glyf"][f.loca[g]:f.loca[g+1]]
}

// components lists the glyphs a composite glyph is built from, with the
// offset of each component's glyph index inside the glyph data. A simple
// glyph has none.
func components(glyph []byte) (gids, offsets []int, err error) {
	if len(glyph) < glyphHeaderSize || int16(u16(glyph, 0)) >= 0 {
		return nil, nil, nil
	}
	off := glyphHeaderSize
	for {
		if off+4 > len(glyph) {
			return nil, nil, fmt.Errorf("%w: composite glyph truncated", errBadFont)
		}
		flags := u16(glyph, off)
		gids = append(gids, u16(glyph, off+2))
		offsets = append(offsets, off+2)
		off += 4
		if flags&argsAreWords != 0 {
			off += 4
		} else {
			off += 2
		}
		switch {
		case flags&weHaveAScale != 0:
			off += 2
		case flags&weHaveXYScale != 0:
			off += 4
		case flags&weHaveTwoByTwo != 0:
			off += 8
		}
		if flags&moreComponents == 0 {
			return gids, offsets, nil
		}
	}
}

// subset builds a TrueType font holding only the glyphs of runes (plus
// .notdef and the components of composite glyphs), renumbered from 1 in
// code point order, with a format 4 cmap. Every rune must be in the BMP and
// have a glyph: callers check coverage first (checkRunes).
func (f *sfnt) subset(runes []rune) ([]byte, error) {
	runes = slices.Clone(runes)
	slices.Sort(runes)
	runes = slices.Compact(runes)

	newID := map[int]int{0: 0}
	order := []int{0}
	add := func(g int) {
		if _, ok := newID[g]; !ok {
			newID[g] = len(order)
			order = append(order, g)
		}
	}
	for _, r := range runes {
		g := int(f.glyphIndex(r))
		if g == 0 || r > 0xFFFF {
			return nil, fmt.Errorf("certpdf: subset: code point U+%04X has no glyph", r)
		}
		add(g)
	}
	// Composite glyphs reference other glyphs; pull them in transitively
	// (order grows while we walk it).
	for i := 0; i < len(order); i++ {
		gids, _, err := components(f.glyphData(order[i]))
		if err != nil {
			return nil, err
		}
		for _, g := range gids {
			if g >= f.numGlyphs {
				return nil, fmt.Errorf("%w: composite glyph references a missing glyph", errBadFont)
			}
			add(g)
		}
	}
	if len(order) > 0xFFFF {
		return nil, fmt.Errorf("certpdf: subset: too many glyphs")
	}

	var glyf, loca, hmtx []byte
	hm := f.tables["hmtx"]
	for _, g := range order {
		loca = binary.BigEndian.AppendUint32(loca, uint32(len(glyf)))
		data := slices.Clone(f.glyphData(g))
		_, offs, err := components(data)
		if err != nil {
			return nil, err
		}
		for _, at := range offs {
			binary.BigEndian.PutUint16(data[at:], uint16(newID[u16(data, at)]))
		}
		glyf = append(glyf, data...)
		for len(glyf)%4 != 0 {
			glyf = append(glyf, 0)
		}
		if g < f.numHMetrics {
			hmtx = append(hmtx, hm[4*g:4*g+4]...)
		} else { // monospaced tail: last advance, own left side bearing
			last := 4 * (f.numHMetrics - 1)
			at := 4*f.numHMetrics + 2*(g-f.numHMetrics)
			hmtx = append(hmtx, hm[last:last+2]...)
			hmtx = append(hmtx, hm[at:at+2]...)
		}
	}
	loca = binary.BigEndian.AppendUint32(loca, uint32(len(glyf)))

	n := uint16(len(order))
	head := slices.Clone(f.tables["head"])
	binary.BigEndian.PutUint32(head[8:], 0) // checkSumAdjustment, set below
	binary.BigEndian.PutUint16(head[50:], 1)
	hhea := slices.Clone(f.tables["hhea"])
	binary.BigEndian.PutUint16(hhea[34:], n)
	maxp := slices.Clone(f.tables["maxp"])
	binary.BigEndian.PutUint16(maxp[4:], n)

	out := map[string][]byte{
		"cmap": cmap4(runes, func(r rune) int { return newID[int(f.glyphIndex(r))] }),
		"glyf": glyf, "head": head, "hhea": hhea, "hmtx": hmtx, "loca": loca, "maxp": maxp,
	}
	if post := f.tables["post"]; len(post) >= 32 {
		// Version 3.0 keeps the metrics fpdf reads and drops the 100 KB of
		// glyph names.
		p := slices.Clone(post[:32])
		binary.BigEndian.PutUint32(p, 0x00030000)
		out["post"] = p
	}
	// Copied verbatim: naming (fpdf reads the PostScript name), vertical
	// metrics for line height, and the hinting programs the glyphs call.
	for _, tag := range []string{"OS/2", "name", "cvt ", "fpgm", "prep", "gasp"} {
		if t := f.tables[tag]; t != nil {
			out[tag] = t
		}
	}
	return assembleSFNT(out), nil
}

// cmap4 builds a cmap table with one format 4 subtable (platform 3,
// encoding 1). Runs of consecutive code points with consecutive glyphs share
// a segment; runes must be sorted, unique and in the BMP.
func cmap4(runes []rune, gid func(rune) int) []byte {
	type seg struct{ start, end, delta int }
	var segs []seg
	for _, r := range runes {
		c, g := int(r), gid(r)
		if k := len(segs) - 1; k >= 0 && segs[k].end == c-1 && (c+segs[k].delta)&0xFFFF == g {
			segs[k].end = c
			continue
		}
		segs = append(segs, seg{c, c, (g - c) & 0xFFFF})
	}
	segs = append(segs, seg{0xFFFF, 0xFFFF, 1}) // required final segment
	segX2 := 2 * len(segs)
	searchRange, selector := 2, 0
	for searchRange*2 <= segX2 {
		searchRange *= 2
		selector++
	}
	sub := make([]byte, 0, 16+8*len(segs))
	for _, v := range []int{4, 16 + 8*len(segs), 0, segX2, searchRange, selector, segX2 - searchRange} {
		sub = binary.BigEndian.AppendUint16(sub, uint16(v))
	}
	for _, s := range segs {
		sub = binary.BigEndian.AppendUint16(sub, uint16(s.end))
	}
	sub = binary.BigEndian.AppendUint16(sub, 0) // reservedPad
	for _, s := range segs {
		sub = binary.BigEndian.AppendUint16(sub, uint16(s.start))
	}
	for _, s := range segs {
		sub = binary.BigEndian.AppendUint16(sub, uint16(s.delta))
	}
	for range segs {
		sub = binary.BigEndian.AppendUint16(sub, 0) // idRangeOffset: use delta
	}
	hdr := []byte{0, 0, 0, 1, 0, 3, 0, 1, 0, 0, 0, 12}
	return append(hdr, sub...)
}

// assembleSFNT writes a font file: directory sorted by tag, tables 4-byte
// aligned, checksums and head.checkSumAdjustment set as the specification
// requires.
func assembleSFNT(tables map[string][]byte) []byte {
	tags := make([]string, 0, len(tables))
	for t := range tables {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	n := len(tags)
	pow, sel := 1, 0
	for pow*2 <= n {
		pow *= 2
		sel++
	}
	size := 12 + 16*n
	for _, t := range tags {
		size += (len(tables[t]) + 3) &^ 3
	}
	out := make([]byte, 12+16*n, size)
	binary.BigEndian.PutUint32(out[0:], 0x00010000)
	binary.BigEndian.PutUint16(out[4:], uint16(n))
	binary.BigEndian.PutUint16(out[6:], uint16(16*pow))
	binary.BigEndian.PutUint16(out[8:], uint16(sel))
	binary.BigEndian.PutUint16(out[10:], uint16(16*n-16*pow))
	headAt := -1
	for i, t := range tags {
		data := tables[t]
		rec := out[12+16*i:]
		copy(rec, t)
		binary.BigEndian.PutUint32(rec[4:], checksum(data))
		binary.BigEndian.PutUint32(rec[8:], uint32(len(out)))
		binary.BigEndian.PutUint32(rec[12:], uint32(len(data)))
		if t == "head" {
			headAt = len(out)
		}
		out = append(out, data...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	if headAt >= 0 {
		binary.BigEndian.PutUint32(out[headAt+8:], 0xB1B0AFBA-checksum(out))
	}
	return out
}

// checksum is the TrueType table checksum: the sum of big-endian uint32
// words, the last one zero-padded.
func checksum(b []byte) uint32 {
	var sum uint32
	for len(b) >= 4 {
		sum += binary.BigEndian.Uint32(b)
		b = b[4:]
	}
	if len(b) > 0 {
		var last [4]byte
		copy(last[:], b)
		sum += binary.BigEndian.Uint32(last[:])
	}
	return sum
}
