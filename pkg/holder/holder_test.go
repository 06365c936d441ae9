package holder

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// The names are synthetic (試験 = "test"), like the demo residents'.
func card(name, birth string, sex carddata.Sex) carddata.FourItems {
	return carddata.FourItems{Name: name, Address: "北海道旭川市試験町1-1", BirthDate: birth, Sex: sex}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		card carddata.FourItems
		rec  Holder
		want error // nil, or the sentinel
	}{
		{"identical", card("試験　花子", "19800401", '2'), Holder{"試験　花子", "1980-04-01", "2"}, nil},
		{"half-width space on the record", card("試験　花子", "19800401", '2'), Holder{"試験 花子", "1980-04-01", "2"}, nil},
		{"no space on the card", card("試験花子", "19800401", '2'), Holder{"試験　花子", "1980-04-01", "2"}, nil},
		{"tab and several spaces", card("試験 \t　花子", "19800401", '2'), Holder{"試験花子", "1980-04-01", "2"}, nil},
		{"half-width katakana", card("ｸﾞｴﾝ ｳﾞｧﾝ ｱﾝ", "19900101", '1'), Holder{"グエン　ヴァン　アン", "1990-01-01", "1"}, nil},
		{"full-width latin", card("ＳＭＩＴＨ　ＪＯＨＮ", "19700101", '1'), Holder{"SMITH JOHN", "1970-01-01", "1"}, nil},
		{"leading and trailing spaces", card("　試験　花子　", "19800401", '2'), Holder{" 試験 花子 ", "1980-04-01", "2"}, nil},
		{"other name", card("試験　花子", "19800401", '2'), Holder{"試験　太郎", "1980-04-01", "2"}, ErrNameMismatch},
		{"name is a prefix", card("試験　花子", "19800401", '2'), Holder{"試験　花", "1980-04-01", "2"}, ErrNameMismatch},
		{"variant kanji is another name", card("髙橋　花子", "19800401", '2'), Holder{"高橋　花子", "1980-04-01", "2"}, ErrNameMismatch},
		{"empty record name", card("試験　花子", "19800401", '2'), Holder{"", "1980-04-01", "2"}, ErrNameMismatch},
		{"only spaces on both", card("　 ", "19800401", '2'), Holder{" ", "1980-04-01", "2"}, ErrNameMismatch},
		{"invalid UTF-8 on both", card("\xff", "19800401", '2'), Holder{"\xfe", "1980-04-01", "2"}, ErrNameMismatch},
		{"other birth date", card("試験　花子", "19800401", '2'), Holder{"試験　花子", "1980-04-02", "2"}, ErrBirthDateMismatch},
		{"record date without hyphens", card("試験　花子", "19800401", '2'), Holder{"試験　花子", "19800401", "2"}, ErrBirthDateMismatch},
		{"record date with slashes", card("試験　花子", "19800401", '2'), Holder{"試験　花子", "1980/04/01", "2"}, ErrBirthDateMismatch},
		{"card date not digits", card("試験　花子", "1980ab01", '2'), Holder{"試験　花子", "1980-ab-01", "2"}, ErrBirthDateMismatch},
		{"empty dates", card("試験　花子", "", '2'), Holder{"試験　花子", "", "2"}, ErrBirthDateMismatch},
		{"card 1, record 2", card("試験　花子", "19800401", '1'), Holder{"試験　花子", "1980-04-01", "2"}, ErrSexMismatch},
		{"card 2, record 1", card("試験　花子", "19800401", '2'), Holder{"試験　花子", "1980-04-01", "1"}, ErrSexMismatch},
		{"card 9, record 1", card("試験　花子", "19800401", '9'), Holder{"試験　花子", "1980-04-01", "1"}, ErrSexMismatch},
		{"card 1, record 9", card("試験　花子", "19800401", '1'), Holder{"試験　花子", "1980-04-01", "9"}, ErrSexMismatch},
		{"card 9, record 9", card("試験　花子", "19800401", '9'), Holder{"試験　花子", "1980-04-01", "9"}, nil},
		{"record sex not known", card("試験　花子", "19800401", '1'), Holder{"試験　花子", "1980-04-01", "0"}, nil},
		{"record sex empty", card("試験　花子", "19800401", '1'), Holder{"試験　花子", "1980-04-01", ""}, nil},
		{"card sex not known", card("試験　花子", "19800401", '0'), Holder{"試験　花子", "1980-04-01", "2"}, nil},
		{"record sex a letter", card("試験　花子", "19800401", '2'), Holder{"試験　花子", "1980-04-01", "F"}, ErrSexMismatch},
		{"record sex two digits", card("試験　花子", "19800401", '2'), Holder{"試験　花子", "1980-04-01", "22"}, ErrSexMismatch},
		{"card sex not a code", card("試験　花子", "19800401", 'F'), Holder{"試験　花子", "1980-04-01", "2"}, ErrSexMismatch},
		// The first failing check is reported: a different name is someone
		// else, whatever the sex says.
		{"name and sex differ", card("試験　花子", "19800401", '2'), Holder{"試験　太郎", "1980-04-01", "1"}, ErrNameMismatch},
		{"birth date and sex differ", card("試験　花子", "19800401", '2'), Holder{"試験　花子", "1981-04-01", "1"}, ErrBirthDateMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Match(tt.card, tt.rec)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Match = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Match = %v, want %v", err, tt.want)
			}
			for _, other := range []error{ErrNameMismatch, ErrBirthDateMismatch, ErrSexMismatch} {
				if other != tt.want && errors.Is(err, other) {
					t.Fatalf("Match = %v is also %v", err, other)
				}
			}
			// Errors name the check, never a value.
			for _, v := range []string{tt.card.Name, tt.rec.Name, tt.card.BirthDate, tt.rec.BirthDate} {
				if strings.TrimSpace(v) != "" && strings.Contains(err.Error(), v) {
					t.Fatalf("error %q carries a compared value", err)
				}
			}
		})
	}
}

func TestRefusalCode(t *testing.T) {
	tests := []struct {
		err  error
		want protocol.Code
	}{
		{nil, ""},
		{ErrNameMismatch, protocol.CodeHolderMismatch},
		{ErrBirthDateMismatch, protocol.CodeHolderMismatch},
		{ErrSexMismatch, protocol.CodeHolderSexMismatch},
		{Match(card("試験　花子", "19800401", '2'), Holder{"試験　花子", "1980-04-01", "F"}), protocol.CodeHolderSexMismatch},
		{errors.New("anything else"), protocol.CodeHolderMismatch},
	}
	for _, tt := range tests {
		if got := RefusalCode(tt.err); got != tt.want {
			t.Errorf("RefusalCode(%v) = %q, want %q", tt.err, got, tt.want)
		}
		if tt.want != "" && !tt.want.Known() {
			t.Errorf("%q is not a protocol code", tt.want)
		}
	}
}

func TestFromCertificate(t *testing.T) {
	c := &certificate.Certificate{Holder: certificate.Holder{Name: "試験　花子", FamilyName: "試験", GivenName: "花子", BirthDate: "1980-04-01", Sex: "2"}}
	if got, want := FromCertificate(c), (Holder{"試験　花子", "1980-04-01", "2"}); got != want {
		t.Fatalf("FromCertificate = %+v, want %+v", got, want)
	}
}

// refName is the normalisation both sides used before this package, as
// strings: NFKC, then spaces and tabs removed.
func refName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\u3000' || r == '\t' {
			return -1
		}
		return r
	}, norm.NFKC.String(s))
}

func TestSameNameAgreesWithStringNormalisation(t *testing.T) {
	names := []string{"試験　花子", "試験 花子", "試験花子", "ｸﾞｴﾝ", "グエン", "ＡＢＣ", "ABC", "ｶﾞ", "ガ", "カ\u3099", "①", "1", "㈱試験", "(株)試験", " ", ""}
	for _, a := range names {
		for _, b := range names {
			want := refName(a) == refName(b) && refName(a) != ""
			if got := SameName(a, b); got != want {
				t.Errorf("SameName(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
}

// FuzzMatch checks Match against the string normalisation the center and
// the kiosk each had (refName), and that a record made from the card's own
// items always matches it.
func FuzzMatch(f *testing.F) {
	f.Add("試験　花子", "試験 花子", "19800401", "1980-04-01", byte('2'), "2")
	f.Add("ｸﾞｴﾝ", "グエン", "19900101", "1990-01-01", byte('1'), "9")
	f.Add("ＳＭＩＴＨ", "SMITH", "19700101", "1970-01-01", byte('0'), "1")
	f.Add("\xff", "\xfe", "1970010a", "1970-01-0a", byte('9'), "")
	f.Add("カ\u3099", "ガ", "20000229", "2000-02-29", byte('1'), "0")
	f.Fuzz(func(t *testing.T, cardName, recName, cardBirth, recBirth string, sex byte, recSex string) {
		c := carddata.FourItems{Name: cardName, BirthDate: cardBirth, Sex: carddata.Sex(sex)}
		err := Match(c, Holder{recName, recBirth, recSex})
		swapped := Match(carddata.FourItems{Name: recName, BirthDate: cardBirth, Sex: carddata.Sex(sex)}, Holder{cardName, recBirth, recSex})
		if (err == nil) != (swapped == nil) {
			t.Fatalf("names swapped: %v, then %v", err, swapped)
		}

		valid := utf8.ValidString(cardName) && utf8.ValidString(recName)
		wantName := valid && refName(cardName) == refName(recName) && refName(cardName) != ""
		if got := !errors.Is(err, ErrNameMismatch); got != wantName {
			t.Fatalf("name match = %v, want %v (err %v)", got, wantName, err)
		}
		if err != nil && RefusalCode(err) == "" {
			t.Fatal("a mismatch without a refusal code")
		}

		// The card's own items, written as a record, match the card.
		named := utf8.ValidString(cardName) && refName(cardName) != ""
		if len(cardBirth) == 8 && strings.Trim(cardBirth, "0123456789") == "" && named && (sex == '1' || sex == '2' || sex == '9') {
			self := Holder{Name: cardName, BirthDate: cardBirth[:4] + "-" + cardBirth[4:6] + "-" + cardBirth[6:], Sex: string(sex)}
			if err := Match(c, self); err != nil {
				t.Fatalf("the card's own items do not match it: %v", err)
			}
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	c := card("試験　花子", "19800401", '2')
	h := Holder{"試験 花子", "1980-04-01", "2"}
	b.ReportAllocs()
	for b.Loop() {
		if err := Match(c, h); err != nil {
			b.Fatal(err)
		}
	}
}
