// Package municipalities ships Japan's list of local public bodies
// (全国地方公共団体コード, local-governments-jp.csv), the designated cities
// (designated-cities.csv) and their wards (designated-city-wards.csv), and
// reads them: Parse checks a list row by row (a newer official file an
// operator imports goes through the same checks), Shipped returns the copy
// in this folder; ParseWards and ShippedWards do the same for the wards.
// README.md gives the source and date of each file.
//
// The issuance center imports the list into its store
// (center/internal/municipalitylist) and sends kiosks what they need to
// show it: code, names, kana reading and kind. The kiosk needs no copy of
// the list; it serves the wards to its screen (a navigation aid: a ward
// chosen there sends its city's code).
package municipalities

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

//go:embed local-governments-jp.csv
var listCSV []byte

//go:embed designated-cities.csv
var designatedCSV []byte

// Kind is the kind of a local public body, as the list names it.
type Kind string

// Kinds in the list. DesignatedCity is not a value of the list's kind
// column: Parse gives it to the cities named in designated-cities.csv.
const (
	Prefecture     Kind = "prefecture"
	City           Kind = "city"
	DesignatedCity Kind = "designated_city"
	Town           Kind = "town"
	Village        Kind = "village"
	SpecialWard    Kind = "special_ward"
)

// Body is one row of the list.
type Body struct {
	Code           string // 6 digits with the check digit
	PrefectureCode string // 01–47, the code's first two digits
	Prefecture     string // 北海道
	PrefectureKana string // ホッカイドウ
	Name           string // 札幌市; empty for a prefecture
	NameKana       string // サッポロシ (full-width katakana); empty for a prefecture
	Kind           Kind
}

// List is a parsed list: the prefectures and the municipalities, each in
// the file's order.
type List struct {
	Prefectures    []Body
	Municipalities []Body
}

// Limits of a list file: the real one has 1,794 rows of under 130 bytes.
const (
	MaxRows     = 5000
	maxFieldLen = 200
)

// Header is the list's header line, column by column.
var Header = []string{"code", "prefecture_code", "prefecture", "prefecture_kana", "name", "name_kana", "kind"}

// ErrList is wrapped by every error Parse returns.
var ErrList = errors.New("municipalities: invalid list")

// Parse reads and checks a list in the shipped format (README.md): the
// header, then one row per body with a valid code whose first two digits
// are its prefecture code, a known kind, a katakana reading, and no code
// twice. Cities named in designated-cities.csv get the kind DesignatedCity.
// An error names the line and column, never stops half-way with a partial
// list, and is the first problem found.
func Parse(r io.Reader) (*List, error) {
	designated, err := designatedCities()
	if err != nil {
		return nil, err
	}
	cr := csv.NewReader(io.LimitReader(r, MaxRows*1024))
	cr.FieldsPerRecord = len(Header)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrList, err)
	}
	if len(head) > 0 {
		head[0] = strings.TrimPrefix(head[0], "\ufeff") // a BOM from spreadsheet exports
	}
	for i, h := range Header {
		if head[i] != h {
			return nil, fmt.Errorf("%w: header column %d is %q, want %q (columns: %s)", ErrList, i+1, head[i], h, strings.Join(Header, ","))
		}
	}
	l := &List{}
	seen := map[string]int{}
	prefs := map[string]string{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrList, err)
		}
		if len(seen) >= MaxRows {
			return nil, fmt.Errorf("%w: more than %d rows", ErrList, MaxRows)
		}
		b, err := parseRow(rec)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrList, line, err)
		}
		if first, dup := seen[b.Code]; dup {
			return nil, fmt.Errorf("%w: line %d: code %s already on line %d", ErrList, line, b.Code, first)
		}
		seen[b.Code] = line
		if b.Kind == Prefecture {
			prefs[b.PrefectureCode] = b.Prefecture
			l.Prefectures = append(l.Prefectures, b)
			continue
		}
		if designated[b.Code] {
			if b.Kind != City {
				return nil, fmt.Errorf("%w: line %d: %s is a designated city but listed as %s", ErrList, line, b.Code, b.Kind)
			}
			b.Kind = DesignatedCity
		}
		l.Municipalities = append(l.Municipalities, b)
	}
	if len(l.Municipalities) == 0 {
		return nil, fmt.Errorf("%w: no municipalities", ErrList)
	}
	for _, m := range l.Municipalities {
		if name, ok := prefs[m.PrefectureCode]; ok && name != m.Prefecture {
			return nil, fmt.Errorf("%w: %s names its prefecture %s, the prefecture row %s", ErrList, m.Code, m.Prefecture, name)
		}
	}
	return l, nil
}

func parseRow(rec []string) (Body, error) {
	for i, f := range rec {
		if len(f) > maxFieldLen || !utf8.ValidString(f) || strings.ContainsFunc(f, isControl) {
			return Body{}, fmt.Errorf("column %s must be at most %d bytes of UTF-8 text", Header[i], maxFieldLen)
		}
	}
	b := Body{Code: rec[0], PrefectureCode: rec[1], Prefecture: rec[2], PrefectureKana: rec[3], Name: rec[4], NameKana: rec[5], Kind: Kind(rec[6])}
	if err := lgcode.Validate(b.Code); err != nil {
		return Body{}, fmt.Errorf("column code: %w", err)
	}
	if b.PrefectureCode != b.Code[:2] {
		return Body{}, fmt.Errorf("column prefecture_code %q is not the first two digits of %s", b.PrefectureCode, b.Code)
	}
	if b.Prefecture == "" || !IsKatakana(b.PrefectureKana) {
		return Body{}, errors.New("columns prefecture and prefecture_kana (katakana) are required")
	}
	switch b.Kind {
	case Prefecture:
		if b.Name != "" || b.NameKana != "" {
			return Body{}, errors.New("a prefecture row has no name or name_kana")
		}
	case City, Town, Village, SpecialWard:
		if b.Name == "" || !IsKatakana(b.NameKana) {
			return Body{}, errors.New("columns name and name_kana (full-width katakana) are required")
		}
	default:
		return Body{}, fmt.Errorf("column kind %q: want prefecture, city, town, village or special_ward", b.Kind)
	}
	return b, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// IsKatakana reports whether s is a non-empty reading in full-width
// katakana (ァ–ヶ, ヴ, and the long-vowel mark ー).
func IsKatakana(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'ァ' || r > 'ヶ') && r != 'ー' && r != 'ヴ' {
			return false
		}
	}
	return true
}

// Shipped returns the list shipped in this folder.
func Shipped() (*List, error) { return Parse(bytes.NewReader(listCSV)) }

// ShippedCSV returns the shipped list file as it is.
func ShippedCSV() []byte { return bytes.Clone(listCSV) }

// designatedCities returns the codes of the designated cities.
func designatedCities() (map[string]bool, error) {
	rows, err := csv.NewReader(bytes.NewReader(designatedCSV)).ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("municipalities: designated-cities.csv is broken: %v", err)
	}
	out := map[string]bool{}
	for _, r := range rows[1:] {
		if err := lgcode.Validate(r[0]); err != nil {
			return nil, fmt.Errorf("municipalities: designated-cities.csv: %w", err)
		}
		out[r[0]] = true
	}
	return out, nil
}

// NoAdministration reports whether code is one of the six Northern
// Territories villages (016951–017001): they have codes but no functioning
// administration, so nobody is registered there and they never participate.
func NoAdministration(code string) bool {
	return len(code) == 6 && code >= "016951" && code <= "017001"
}

// AuthorityJa is the issuing authority's title in Japanese: the head of
// the municipality (旭川市長, 千代田区長, 色丹村長).
func (b Body) AuthorityJa() string { return b.Name + "長" }

// EnglishName is the municipality's name in English, derived from its
// reading: サッポロシ, 札幌市 → "Sapporo City". Tokyo's special wards use
// "City", as they do themselves.
func (b Body) EnglishName() string {
	kana, suffix := b.NameKana, ""
	cut := func(reading, en string) bool {
		if k, ok := strings.CutSuffix(kana, reading); ok && k != "" {
			kana, suffix = k, en
			return true
		}
		return false
	}
	switch {
	case strings.HasSuffix(b.Name, "市"):
		cut("シ", "City")
	case strings.HasSuffix(b.Name, "区"):
		cut("ク", "City")
	case strings.HasSuffix(b.Name, "町"):
		_ = cut("チョウ", "Town") || cut("マチ", "Town")
	case strings.HasSuffix(b.Name, "村"):
		_ = cut("ソン", "Village") || cut("ムラ", "Village")
	}
	if suffix == "" {
		switch b.Kind {
		case City, DesignatedCity, SpecialWard:
			suffix = "City"
		case Town:
			suffix = "Town"
		case Village:
			suffix = "Village"
		}
	}
	name := Romanize(kana)
	if name == "" {
		return suffix
	}
	name = strings.ToUpper(name[:1]) + name[1:]
	if suffix == "" {
		return name
	}
	return name + " " + suffix
}

// AuthorityEn is the issuing authority's title in English.
func (b Body) AuthorityEn() string { return "Mayor of " + b.EnglishName() }

// Romanize writes a katakana reading in Hepburn as place names are
// written in English: without macrons, long vowels folded (トウキョウ →
// tokyo, オオサカ → osaka, ジュウ → ju), ッ doubling the next consonant (ッチ →
// tchi), ン always n. Anything but katakana is dropped.
func Romanize(kana string) string {
	rs := []rune(kana)
	var b strings.Builder
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		if r == 'ッ' {
			if i+1 < len(rs) {
				next, _ := syllable(rs[i+1:])
				if next != "" {
					if strings.HasPrefix(next, "ch") {
						b.WriteByte('t')
					} else {
						b.WriteByte(next[0])
					}
				}
			}
			continue
		}
		if r == 'ー' {
			continue
		}
		s, n := syllable(rs[i:])
		i += n - 1
		// Fold long vowels: o+u, o+o, u+u (ou is a long o in readings).
		out := b.String()
		if out != "" && s != "" && len(s) == 1 {
			last := out[len(out)-1]
			if (last == 'o' && (s == "u" || s == "o")) || (last == 'u' && s == "u") {
				continue
			}
		}
		b.WriteString(s)
	}
	return b.String()
}

// syllable romanizes the kana at the start of rs and says how many runes it took.
func syllable(rs []rune) (string, int) {
	if len(rs) > 1 {
		if s, ok := youon[string(rs[:2])]; ok {
			return s, 2
		}
	}
	return kanaRoman[rs[0]], 1
}

var kanaRoman = map[rune]string{
	'ア': "a", 'イ': "i", 'ウ': "u", 'エ': "e", 'オ': "o",
	'ァ': "a", 'ィ': "i", 'ゥ': "u", 'ェ': "e", 'ォ': "o",
	'カ': "ka", 'キ': "ki", 'ク': "ku", 'ケ': "ke", 'コ': "ko",
	'ガ': "ga", 'ギ': "gi", 'グ': "gu", 'ゲ': "ge", 'ゴ': "go",
	'サ': "sa", 'シ': "shi", 'ス': "su", 'セ': "se", 'ソ': "so",
	'ザ': "za", 'ジ': "ji", 'ズ': "zu", 'ゼ': "ze", 'ゾ': "zo",
	'タ': "ta", 'チ': "chi", 'ツ': "tsu", 'テ': "te", 'ト': "to",
	'ダ': "da", 'ヂ': "ji", 'ヅ': "zu", 'デ': "de", 'ド': "do",
	'ナ': "na", 'ニ': "ni", 'ヌ': "nu", 'ネ': "ne", 'ノ': "no",
	'ハ': "ha", 'ヒ': "hi", 'フ': "fu", 'ヘ': "he", 'ホ': "ho",
	'バ': "ba", 'ビ': "bi", 'ブ': "bu", 'ベ': "be", 'ボ': "bo",
	'パ': "pa", 'ピ': "pi", 'プ': "pu", 'ペ': "pe", 'ポ': "po",
	'マ': "ma", 'ミ': "mi", 'ム': "mu", 'メ': "me", 'モ': "mo",
	'ヤ': "ya", 'ユ': "yu", 'ヨ': "yo", 'ャ': "ya", 'ュ': "yu", 'ョ': "yo",
	'ラ': "ra", 'リ': "ri", 'ル': "ru", 'レ': "re", 'ロ': "ro",
	'ワ': "wa", 'ヰ': "i", 'ヱ': "e", 'ヲ': "o", 'ン': "n", 'ヴ': "vu",
	'ヵ': "ka", 'ヶ': "ke",
}

var youon = map[string]string{
	"キャ": "kya", "キュ": "kyu", "キョ": "kyo", "ギャ": "gya", "ギュ": "gyu", "ギョ": "gyo",
	"シャ": "sha", "シュ": "shu", "ショ": "sho", "ジャ": "ja", "ジュ": "ju", "ジョ": "jo",
	"チャ": "cha", "チュ": "chu", "チョ": "cho", "ヂャ": "ja", "ヂュ": "ju", "ヂョ": "jo",
	"ニャ": "nya", "ニュ": "nyu", "ニョ": "nyo", "ヒャ": "hya", "ヒュ": "hyu", "ヒョ": "hyo",
	"ビャ": "bya", "ビュ": "byu", "ビョ": "byo", "ピャ": "pya", "ピュ": "pyu", "ピョ": "pyo",
	"ミャ": "mya", "ミュ": "myu", "ミョ": "myo", "リャ": "rya", "リュ": "ryu", "リョ": "ryo",
}
