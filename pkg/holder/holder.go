// Package holder decides whether the holder of a My Number card is the
// person a vaccination record, or a certificate made from one, is about.
// Both sides make this decision: the center before it issues (the card's
// four items against the record it found) and the kiosk before it prints
// (the card it read against every certificate in the answer). They must
// agree exactly, or kiosks refuse valid certificates or print wrong ones,
// so the rule lives here once:
//
//   - the names are the same once both are normalised: Unicode NFKC (card
//     and ledger differ in full- and half-width forms) with every space and
//     tab removed (the space between family and given names is written
//     half-width, full-width or not at all). A name that is empty after
//     normalisation, or is not valid UTF-8, matches nothing;
//   - the birth dates are the same day: the card's YYYYMMDD against the
//     record's YYYY-MM-DD;
//   - the sexes are the same where both sides know it: ISO/IEC 5218 codes
//     1 (male), 2 (female) and 9 (not applicable) must be equal; 0 (not
//     known) or an empty record field on either side is not compared.
//
// Match reports the first check that fails, in that order, as an error
// wrapping ErrNameMismatch, ErrBirthDateMismatch or ErrSexMismatch. A sex
// mismatch is therefore reported only for a card whose name and birth
// date agree with the record: a data error at the municipality rather than
// someone else's record, which the resident is told apart (RefusalCode).
//
//	err := holder.Match(card.FourItems, holder.Holder{Name: rec.Name, BirthDate: rec.BirthDate, Sex: rec.Sex})
//	if err != nil {
//		return refuse(holder.RefusalCode(err)) // holder_mismatch or holder_sex_mismatch
//	}
//
// The values compared are personal data: errors name the check that failed,
// never a value, and the normalised names are compared piecewise without
// building a normalised copy that would outlive the call.
package holder

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Holder is the person a record or a certificate names, as far as the
// match needs it. The center fills it from its record, the kiosk from each
// certificate (FromCertificate).
type Holder struct {
	// Name is the name as registered (kanji or katakana).
	Name string
	// BirthDate is YYYY-MM-DD.
	BirthDate string
	// Sex is the ISO/IEC 5218 digit ("1", "2", "9"); "" or "0" when the
	// record does not know it.
	Sex string
}

// FromCertificate returns the holder a certificate names.
func FromCertificate(c *certificate.Certificate) Holder {
	return Holder{Name: c.Holder.Name, BirthDate: c.Holder.BirthDate, Sex: c.Holder.Sex}
}

// Errors from Match, one per check. Test with errors.Is.
var (
	// ErrNameMismatch means the names differ after normalisation.
	ErrNameMismatch = errors.New("holder: name differs from the card")
	// ErrBirthDateMismatch means the birth dates differ (or one is not a date).
	ErrBirthDateMismatch = errors.New("holder: birth date differs from the card")
	// ErrSexMismatch means name and birth date agree but both sides know
	// the sex and it differs (or the holder's is not an ISO/IEC 5218 code).
	ErrSexMismatch = errors.New("holder: sex differs from the card")
)

// Match returns nil when card and h name the same person, and otherwise an
// error wrapping the sentinel of the first check that failed (name, birth
// date, sex). The error never carries a compared value.
func Match(card carddata.FourItems, h Holder) error {
	if !SameName(card.Name, h.Name) {
		return ErrNameMismatch
	}
	if !sameBirthDate(card.BirthDate, h.BirthDate) {
		return ErrBirthDateMismatch
	}
	return matchSex(card.Sex, h.Sex)
}

// RefusalCode is the protocol code a refusal for err carries:
// holder_sex_mismatch for a sex mismatch, holder_mismatch for any other
// error, "" for nil.
func RefusalCode(err error) protocol.Code {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrSexMismatch):
		return protocol.CodeHolderSexMismatch
	}
	return protocol.CodeHolderMismatch
}

// sameBirthDate compares the card's YYYYMMDD with the record's YYYY-MM-DD,
// digit by digit: a malformed date on either side matches nothing.
func sameBirthDate(card, rec string) bool {
	if len(card) != 8 || len(rec) != 10 || rec[4] != '-' || rec[7] != '-' {
		return false
	}
	for i := range 8 {
		if card[i] < '0' || card[i] > '9' || card[i] != rec[recDigit[i]] {
			return false
		}
	}
	return true
}

// recDigit is where the card's i-th birth-date digit is in YYYY-MM-DD.
var recDigit = [8]int{0, 1, 2, 3, 5, 6, 8, 9}

// matchSex compares the ISO/IEC 5218 codes where both sides know them.
func matchSex(card carddata.Sex, rec string) error {
	if rec == "" || rec == "0" || card == carddata.SexNotKnown {
		return nil
	}
	switch rec {
	case "1", "2", "9":
	default:
		return fmt.Errorf("%w: the holder's sex is not an ISO/IEC 5218 code", ErrSexMismatch)
	}
	switch card {
	case carddata.SexMale, carddata.SexFemale, carddata.SexNotApplicable:
	default:
		return fmt.Errorf("%w: the card's sex is not an ISO/IEC 5218 code", ErrSexMismatch)
	}
	if byte(card) != rec[0] {
		return ErrSexMismatch
	}
	return nil
}

// SameName reports whether a and b are the same name after NFKC
// normalisation with spaces and tabs removed. A name that is empty after
// normalisation, or not valid UTF-8, is the same as no other.
func SameName(a, b string) bool {
	var ra, rb nameRunes
	ra.it.InitString(norm.NFKC, a)
	rb.it.InitString(norm.NFKC, b)
	same := sameRunes(&ra, &rb)
	// The iterators hold normalised pieces of the names: clear them.
	ra, rb = nameRunes{}, nameRunes{}
	return same
}

func sameRunes(ra, rb *nameRunes) bool {
	empty := true
	for {
		ca, okA := ra.next()
		cb, okB := rb.next()
		if ra.invalid || rb.invalid {
			return false
		}
		if !okA || !okB {
			return okA == okB && !empty
		}
		if ca != cb {
			return false
		}
		empty = false
	}
}

// nameRunes yields the runes of a name's NFKC form, spaces and tabs
// skipped, one normalisation segment at a time.
type nameRunes struct {
	it      norm.Iter
	seg     []byte
	invalid bool // the name is not valid UTF-8
}

func (r *nameRunes) next() (rune, bool) {
	for {
		for len(r.seg) > 0 {
			c, n := utf8.DecodeRune(r.seg)
			r.seg = r.seg[n:]
			if c == utf8.RuneError && n <= 1 {
				r.invalid = true
				return 0, false
			}
			if !isSpace(c) {
				return c, true
			}
		}
		if r.it.Done() {
			return 0, false
		}
		r.seg = r.it.Next()
	}
}

// isSpace is what separates name parts once NFKC has folded the
// ideographic and other wide spaces to U+0020; U+3000 is listed anyway so
// the rule does not depend on the normalisation form.
func isSpace(r rune) bool { return r == ' ' || r == '\u3000' || r == '\t' }
