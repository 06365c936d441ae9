// Package fonts embeds the typefaces the kiosk prints with, so that a
// certificate looks the same on every kiosk whatever fonts the operating
// system has.
//
// It ships one font, IPAex Gothic (IPAexゴシック, ipaexg.ttf, version 004.01),
// a TrueType font covering JIS X 0213 kanji (including variant forms such as
// 髙 and 﨑), kana and Latin. It is distributed unmodified under the IPA Font
// License Agreement v1.0, whose text sits beside it in
// IPA_Font_License_Agreement_v1.0.txt; README.md says where the file came from
// and how to refresh it. Printed PDFs embed only the glyphs they use, which
// the licence permits (Article 2, paragraphs 2 and 5).
//
// The font is about 6 MB. Callers should parse it once per process and reuse
// the result rather than handing these bytes to a PDF library per document.
package fonts

import _ "embed"

//go:embed ipaexg.ttf
var ipaexGothic []byte

// IPAexGothicName is the font's family name, for PDF metadata and logs.
const IPAexGothicName = "IPAexGothic"

// IPAexGothic returns the TrueType file of IPAex Gothic. The slice is the
// embedded data itself: callers must not modify it.
func IPAexGothic() []byte { return ipaexGothic }
