package holder

import "strings"

// formerNameMarks open the part of a card's name field that records a
// former name (旧氏), a second surname or an alias (通称) beside the name.
//
// Where it comes from: the card face prints the former name in brackets
// after the name (e.g. 番号　花子［鈴木］) when the resident asked for it to
// be recorded (旧氏併記), and an alias likewise; public descriptions of
// the input-assist application say its name item carries what the card
// face shows. The exact bytes real cards use are not published, so this
// project fixes one reading here, in one place (docs/CARD.md): a name
// holding a full- or half-width bracket or parenthesis, or the words 旧氏
// or 通称, carries a former name or alias. The virtual card writes names
// that way when asked to.
var formerNameMarks = []string{"［", "[", "（", "(", "【", "旧氏", "通称"}

// HasFormerName reports whether a card's name field carries a former name,
// a second surname or an alias beside the name. Such residents are served
// at the municipal counter: the certificate must show the name the
// municipality chooses, which a kiosk cannot ask about.
func HasFormerName(cardName string) bool {
	for _, m := range formerNameMarks {
		if strings.Contains(cardName, m) {
			return true
		}
	}
	return false
}
