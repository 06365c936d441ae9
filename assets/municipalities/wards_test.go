package municipalities

import (
	"bytes"
	"encoding/csv"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestShippedWards(t *testing.T) {
	wards, err := ShippedWards()
	if err != nil {
		t.Fatal(err)
	}
	l, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	cities := map[string]string{}
	codes := map[string]bool{}
	for _, m := range l.Municipalities {
		codes[m.Code] = true
		if m.Kind == DesignatedCity {
			cities[m.Code] = m.Name
		}
	}
	day := func(s string) time.Time {
		d, err := time.ParseInLocation("2006-01-02", s, jst)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// Wards per city, as each city counts them; Hamamatsu before and after
	// its 2024 reorganisation.
	want := map[string]int{"札幌市": 10, "仙台市": 5, "さいたま市": 10, "千葉市": 6, "横浜市": 18, "川崎市": 7, "相模原市": 3,
		"新潟市": 8, "静岡市": 3, "浜松市": 3, "名古屋市": 16, "京都市": 11, "大阪市": 24, "堺市": 7, "神戸市": 9,
		"岡山市": 4, "広島市": 8, "北九州市": 7, "福岡市": 7, "熊本市": 5}
	for _, c := range []struct {
		day       string
		hamamatsu int
		total     int
	}{{"2023-12-31", 7, 175}, {"2024-01-01", 3, 171}, {"2026-12-05", 3, 171}} {
		got := map[string]int{}
		total := 0
		for _, w := range wards {
			if w.Exists(day(c.day)) {
				got[cities[w.CityCode]]++
				total++
			}
		}
		want["浜松市"] = c.hamamatsu
		for city, n := range want {
			if got[city] != n {
				t.Errorf("%s: %s has %d wards, want %d", c.day, city, got[city], n)
			}
		}
		if total != c.total {
			t.Errorf("%s: %d wards in all, want %d", c.day, total, c.total)
		}
	}
	for _, w := range wards {
		if cities[w.CityCode] == "" {
			t.Errorf("ward %s: city %s is not a designated city of the national list", w.Code, w.CityCode)
		}
		// A ward is not a municipality: its code must never be taken for one.
		if codes[w.Code] {
			t.Errorf("ward %s %s has the code of a municipality", w.Code, w.Name)
		}
	}
	if len(wards) != 178 {
		t.Errorf("%d rows, want 178 (175 wards and Hamamatsu's 3 new ones)", len(wards))
	}
}

func TestWardEnglishName(t *testing.T) {
	for _, c := range []struct{ kana, want string }{
		{"チュウオウク", "Chuo Ward"},
		{"ホドガヤク", "Hodogaya Ward"},
		{"コクラキタク", "Kokurakita Ward"},
		{"ハマナク", "Hamana Ward"},
		{"テンリュウク", "Tenryu Ward"},
		{"ク", "Ward"},
	} {
		if got := (Ward{NameKana: c.kana}).EnglishName(); got != c.want {
			t.Errorf("%s: %q, want %q", c.kana, got, c.want)
		}
	}
}

func TestWardExists(t *testing.T) {
	old := Ward{Until: "2023-12-31"}
	nu := Ward{Since: "2024-01-01"}
	// 2023-12-31 15:30 UTC is already 2024-01-01 in Japan.
	edge := time.Date(2023, 12, 31, 15, 30, 0, 0, time.UTC)
	before := time.Date(2023, 12, 31, 14, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		w    Ward
		at   time.Time
		want bool
	}{{old, before, true}, {old, edge, false}, {nu, before, false}, {nu, edge, true}, {Ward{}, edge, true}} {
		if got := c.w.Exists(c.at); got != c.want {
			t.Errorf("%+v at %v: %v, want %v", c.w, c.at, got, c.want)
		}
	}
}

func TestParseWardsErrors(t *testing.T) {
	head := strings.Join(WardHeader, ",") + "\n"
	good := "011011,011002,中央区,チュウオウク,,\n"
	for _, c := range []struct{ name, in, want string }{
		{"empty", "", "header"},
		{"only comments", "# nothing\n", "header"},
		{"wrong header", "code,city\n", "header"},
		{"renamed column", strings.Replace(head, "until", "to", 1) + good, "header column 6"},
		{"no rows", head, "no wards"},
		{"check digit", head + "011012,011002,中央区,チュウオウク,,\n", "line 2: column code"},
		{"city check digit", head + "011011,011003,中央区,チュウオウク,,\n", "column city_code"},
		{"not designated", head + "012033,012025,中央区,チュウオウク,,\n", "not a designated city"},
		{"other prefecture", head + "021016,011002,中央区,チュウオウク,,\n", "not a ward code"},
		{"the city itself", head + "011002,011002,中央区,チュウオウク,,\n", "not a ward code"},
		{"not a ward name", head + "011011,011002,中央,チュウオウ,,\n", "must end in 区"},
		{"hiragana", head + "011011,011002,中央区,ちゅうおうく,,\n", "katakana"},
		{"no ku", head + "011011,011002,中央区,チュウオウ,,\n", "katakana"},
		{"bad since", head + "011011,011002,中央区,チュウオウク,2024-13-01,\n", "column since"},
		{"bad until", head + "011011,011002,中央区,チュウオウク,,yesterday\n", "column until"},
		{"reversed dates", head + "011011,011002,中央区,チュウオウク,2024-01-01,2023-12-31\n", "before since"},
		{"duplicate", head + good + good, "already on line 2"},
		{"same name twice", head + good + "011029,011002,中央区,チュウオウク,2020-01-01,\n", "two wards named 中央区"},
		{"columns", head + "011011,011002,中央区\n", "wrong number of fields"},
		{"control", head + "011011,011002,中\x01央区,チュウオウク,,\n", "UTF-8 text"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := ParseWards(strings.NewReader(c.in))
			if err == nil || !errors.Is(err, ErrWards) || !strings.Contains(err.Error(), c.want) || w != nil {
				t.Fatalf("ParseWards: %v, %v; want only an ErrWards saying %q", w, err, c.want)
			}
		})
	}
	// A renamed ward may take its old name again once the old one ended.
	w, err := ParseWards(strings.NewReader("\ufeff# comment\n" + head + "221376,221309,天竜区,テンリュウク,,2023-12-31\n221406,221309,天竜区,テンリュウク,2024-01-01,\n"))
	if err != nil || len(w) != 2 || w[1].Since != "2024-01-01" {
		t.Fatalf("ParseWards with a BOM, a comment and a renumbered ward: %+v, %v", w, err)
	}
}

func FuzzParseWards(f *testing.F) {
	f.Add(wardsCSV)
	f.Add([]byte(strings.Join(WardHeader, ",") + "\n221376,221309,天竜区,テンリュウク,,2023-12-31\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		wards, err := ParseWards(bytes.NewReader(b))
		if err != nil {
			if wards != nil {
				t.Fatal("ParseWards returned wards with an error")
			}
			return
		}
		// What was accepted holds the checked properties and reads back
		// the same once written out again.
		var buf bytes.Buffer
		cw := csv.NewWriter(&buf)
		_ = cw.Write(WardHeader)
		for _, w := range wards {
			if w.Code[:2] != w.CityCode[:2] || !strings.HasSuffix(w.Name, "区") || !IsKatakana(w.NameKana) ||
				(w.Since != "" && w.Until != "" && w.Until < w.Since) {
				t.Fatalf("ParseWards accepted %+v", w)
			}
			_ = w.EnglishName()
			_ = cw.Write([]string{w.Code, w.CityCode, w.Name, w.NameKana, w.Since, w.Until})
		}
		cw.Flush()
		again, err := ParseWards(&buf)
		if err != nil || len(again) != len(wards) {
			t.Fatalf("the accepted list does not read back: %v", err)
		}
		for i := range wards {
			if again[i] != wards[i] {
				t.Fatalf("row %d reads back as %+v, was %+v", i, again[i], wards[i])
			}
		}
	})
}
