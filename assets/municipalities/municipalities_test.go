package municipalities

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestShipped(t *testing.T) {
	l, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	count := map[Kind]int{}
	noAdmin := 0
	for _, m := range l.Municipalities {
		count[m.Kind]++
		if NoAdministration(m.Code) {
			noAdmin++
			if m.Kind != Village {
				t.Errorf("%s %s: a Northern Territories body that is not a village", m.Code, m.Name)
			}
		}
	}
	// The figures README.md and the brief give for the 2023 list.
	want := map[Kind]int{City: 772, DesignatedCity: 20, Town: 743, Village: 189, SpecialWard: 23}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d of kind %s, want %d", count[k], k, n)
		}
	}
	if len(l.Prefectures) != 47 || len(l.Municipalities) != 1747 || noAdmin != 6 {
		t.Errorf("%d prefectures, %d municipalities, %d without administration; want 47, 1747, 6", len(l.Prefectures), len(l.Municipalities), noAdmin)
	}
}

func TestEnglishName(t *testing.T) {
	l, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	byCode := map[string]Body{}
	for _, m := range l.Municipalities {
		byCode[m.Code] = m
		if en := m.EnglishName(); en == "" || strings.ContainsFunc(en, func(r rune) bool { return r > 0x7f }) {
			t.Errorf("%s %s: English name %q", m.Code, m.Name, en)
		}
	}
	for _, c := range []struct{ code, en, authJa string }{
		{"011002", "Sapporo City", "札幌市長"},
		{"012041", "Asahikawa City", "旭川市長"},
		{"112453", "Fujimino City", "ふじみ野市長"},
		{"131016", "Chiyoda City", "千代田区長"},
		{"271004", "Osaka City", "大阪市長"},
		{"261009", "Kyoto City", "京都市長"},
		{"401005", "Kitakyushu City", "北九州市長"},
		{"012050", "Muroran City", "室蘭市長"},
	} {
		m, ok := byCode[c.code]
		if !ok {
			t.Errorf("%s not in the list", c.code)
			continue
		}
		if got := m.EnglishName(); got != c.en {
			t.Errorf("%s %s: English name %q, want %q", c.code, m.Name, got, c.en)
		}
		if got := m.AuthorityJa(); got != c.authJa {
			t.Errorf("%s: authority %q, want %q", c.code, got, c.authJa)
		}
		if got := m.AuthorityEn(); got != "Mayor of "+c.en {
			t.Errorf("%s: authority %q", c.code, got)
		}
	}
}

func TestRomanize(t *testing.T) {
	for _, c := range []struct{ kana, want string }{
		{"サッポロ", "sapporo"},
		{"トウキョウ", "tokyo"},
		{"オオサカ", "osaka"},
		{"キタキュウシュウ", "kitakyushu"},
		{"ハッチョウ", "hatcho"},
		{"シンジュク", "shinjuku"},
		{"ユウバリ", "yubari"},
		{"ヴ", "vu"},
		{"abc", ""},
	} {
		if got := Romanize(c.kana); got != c.want {
			t.Errorf("Romanize(%s) = %q, want %q", c.kana, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	head := strings.Join(Header, ",") + "\n"
	good := "010006,01,北海道,ホッカイドウ,,,prefecture\n012041,01,北海道,ホッカイドウ,旭川市,アサヒカワシ,city\n"
	for _, c := range []struct{ name, in, want string }{
		{"empty", "", "header"},
		{"wrong header", "code,pref\n", "header"},
		{"renamed column", strings.Replace(head, "name_kana", "kana", 1) + good, "header column 6"},
		{"no rows", head, "no municipalities"},
		{"check digit", head + "012042,01,北海道,ホッカイドウ,旭川市,アサヒカワシ,city\n", "line 2: column code"},
		{"prefecture code", head + "012041,02,北海道,ホッカイドウ,旭川市,アサヒカワシ,city\n", "prefecture_code"},
		{"kind", head + "012041,01,北海道,ホッカイドウ,旭川市,アサヒカワシ,ward\n", "column kind"},
		{"hiragana", head + "012041,01,北海道,ホッカイドウ,旭川市,あさひかわし,city\n", "katakana"},
		{"no name", head + "012041,01,北海道,ホッカイドウ,,アサヒカワシ,city\n", "name"},
		{"named prefecture", head + "010006,01,北海道,ホッカイドウ,北海道,ホッカイドウ,prefecture\n", "prefecture row"},
		{"duplicate", head + good + "012041,01,北海道,ホッカイドウ,旭川市,アサヒカワシ,city\n", "already on line 3"},
		{"columns", head + "012041,01,北海道\n", "wrong number of fields"},
		{"control", head + "012041,01,北海道,ホッカイドウ,旭川\x01市,アサヒカワシ,city\n", "UTF-8 text"},
		{"designated town", head + "011002,01,北海道,ホッカイドウ,札幌町,サッポロチョウ,town\n", "designated city"},
		{"prefecture name", head + good + "011002,01,北海道庁,ホッカイドウ,札幌市,サッポロシ,city\n", "names its prefecture"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.in))
			if err == nil || !errors.Is(err, ErrList) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse: %v, want an ErrList saying %q", err, c.want)
			}
		})
	}
	l, err := Parse(strings.NewReader("\ufeff" + head + good))
	if err != nil || len(l.Municipalities) != 1 || l.Municipalities[0].Kind != City {
		t.Fatalf("Parse with a BOM: %+v, %v", l, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(ShippedCSV()[:2000])
	f.Add([]byte(strings.Join(Header, ",") + "\n012041,01,北海道,ホッカイドウ,旭川市,アサヒカワシ,city\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, m := range l.Municipalities {
			if !IsKatakana(m.NameKana) || m.Code[:2] != m.PrefectureCode || m.Name == "" {
				t.Fatalf("Parse accepted %+v", m)
			}
			_ = m.EnglishName()
		}
	})
}
