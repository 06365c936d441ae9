package municipalities

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

//go:embed designated-city-wards.csv
var wardsCSV []byte

// Ward is one ward (行政区) of a designated city. A ward keeps no
// vaccination ledger of its own: its residents are registered with the
// city, so a kiosk that offers the ward sends the city's code (CityCode).
// Tokyo's special wards (特別区) are municipalities, not Wards.
type Ward struct {
	Code     string // the ward's own code, 6 digits with the check digit
	CityCode string // the designated city's code
	Name     string // 中央区
	NameKana string // チュウオウク (full-width katakana)
	// Since and Until bound the days the ward existed (YYYY-MM-DD, both
	// inclusive); empty means before the list began / still in force.
	Since, Until string
}

// WardHeader is the ward list's header line, column by column.
var WardHeader = []string{"code", "city_code", "name", "name_kana", "since", "until"}

// ErrWards is wrapped by every error ParseWards returns.
var ErrWards = errors.New("municipalities: invalid ward list")

// maxWardRows bounds a ward list: Japan has 175 wards (2024).
const maxWardRows = 1000

const dateLayout = "2006-01-02"

// ParseWards reads and checks a ward list (designated-city-wards.csv):
// lines starting with # are comments, then the header, then one row per
// ward with a valid code of its own, the code of one of the designated
// cities (designated-cities.csv) in the same prefecture, a name ending in
// 区 with a katakana reading ending in ク, and valid dates (since before
// until). No code appears twice, and no city has two wards of the same
// name on the same day. An error names the line and is the first problem
// found; nothing is returned with it.
func ParseWards(r io.Reader) ([]Ward, error) {
	designated, err := designatedCities()
	if err != nil {
		return nil, err
	}
	// A BOM from a spreadsheet export would hide a leading comment line.
	b, err := io.ReadAll(io.LimitReader(r, maxWardRows*1024))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWards, err)
	}
	cr := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("\ufeff"))))
	cr.Comment = '#'
	cr.FieldsPerRecord = len(WardHeader)
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrWards, err)
	}
	for i, h := range WardHeader {
		if head[i] != h {
			return nil, fmt.Errorf("%w: header column %d is %q, want %q (columns: %s)", ErrWards, i+1, head[i], h, strings.Join(WardHeader, ","))
		}
	}
	var out []Ward
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrWards, err)
		}
		line, _ := cr.FieldPos(0)
		if len(out) >= maxWardRows {
			return nil, fmt.Errorf("%w: more than %d rows", ErrWards, maxWardRows)
		}
		w, err := parseWard(rec, designated)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrWards, line, err)
		}
		if first, dup := seen[w.Code]; dup {
			return nil, fmt.Errorf("%w: line %d: code %s already on line %d", ErrWards, line, w.Code, first)
		}
		seen[w.Code] = line
		for _, o := range out {
			if o.CityCode == w.CityCode && o.Name == w.Name && overlap(o, w) {
				return nil, fmt.Errorf("%w: line %d: the city %s has two wards named %s at the same time (%s and %s)", ErrWards, line, w.CityCode, w.Name, o.Code, w.Code)
			}
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no wards", ErrWards)
	}
	return out, nil
}

func parseWard(rec []string, designated map[string]bool) (Ward, error) {
	for i, f := range rec {
		if len(f) > maxFieldLen || !utf8.ValidString(f) || strings.ContainsFunc(f, isControl) {
			return Ward{}, fmt.Errorf("column %s must be at most %d bytes of UTF-8 text", WardHeader[i], maxFieldLen)
		}
	}
	w := Ward{Code: rec[0], CityCode: rec[1], Name: rec[2], NameKana: rec[3], Since: rec[4], Until: rec[5]}
	if err := lgcode.Validate(w.Code); err != nil {
		return Ward{}, fmt.Errorf("column code: %w", err)
	}
	if err := lgcode.Validate(w.CityCode); err != nil {
		return Ward{}, fmt.Errorf("column city_code: %w", err)
	}
	if !designated[w.CityCode] {
		return Ward{}, fmt.Errorf("column city_code: %s is not a designated city (designated-cities.csv)", w.CityCode)
	}
	if w.Code == w.CityCode || w.Code[:2] != w.CityCode[:2] {
		return Ward{}, fmt.Errorf("code %s is not a ward code in the prefecture of city %s", w.Code, w.CityCode)
	}
	base, ok := strings.CutSuffix(w.Name, "区")
	if !ok || base == "" {
		return Ward{}, fmt.Errorf("column name %q must end in 区", w.Name)
	}
	if k, ok := strings.CutSuffix(w.NameKana, "ク"); !ok || !IsKatakana(k) {
		return Ward{}, fmt.Errorf("column name_kana must be the reading in full-width katakana, ending in ク")
	}
	var since, until time.Time
	var err error
	if w.Since != "" {
		if since, err = time.Parse(dateLayout, w.Since); err != nil {
			return Ward{}, fmt.Errorf("column since: want YYYY-MM-DD or empty")
		}
	}
	if w.Until != "" {
		if until, err = time.Parse(dateLayout, w.Until); err != nil {
			return Ward{}, fmt.Errorf("column until: want YYYY-MM-DD or empty")
		}
	}
	if w.Since != "" && w.Until != "" && until.Before(since) {
		return Ward{}, fmt.Errorf("until %s is before since %s", w.Until, w.Since)
	}
	return w, nil
}

// overlap reports whether two wards existed on a common day. Dates in the
// layout compare as strings; empty is open-ended.
func overlap(a, b Ward) bool {
	before := func(until, since string) bool { return until != "" && since != "" && until < since }
	return !before(a.Until, b.Since) && !before(b.Until, a.Since)
}

// Exists reports whether the ward existed on day (its date in Japan).
func (w Ward) Exists(day time.Time) bool { return !w.Abolished(day) && !w.Future(day) }

// Abolished reports whether the ward had been abolished by day.
func (w Ward) Abolished(day time.Time) bool { return w.Until != "" && w.Until < jstDate(day) }

// Future reports whether, on day, the ward was yet to be created.
func (w Ward) Future(day time.Time) bool { return w.Since != "" && jstDate(day) < w.Since }

func jstDate(t time.Time) string { return t.In(jst).Format(dateLayout) }

var jst = time.FixedZone("JST", 9*60*60)

// EnglishName is the ward's name in English from its reading: チュウオウク →
// "Chuo Ward", as the cities write them.
func (w Ward) EnglishName() string {
	name := Romanize(strings.TrimSuffix(w.NameKana, "ク"))
	if name == "" {
		return "Ward"
	}
	return strings.ToUpper(name[:1]) + name[1:] + " Ward"
}

// ShippedWards returns the ward list shipped in this folder.
func ShippedWards() ([]Ward, error) { return ParseWards(bytes.NewReader(wardsCSV)) }
