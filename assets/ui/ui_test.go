package ui

import (
	"encoding/json"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/assets/audio"
	"github.com/kioskcert/kioskcert/assets/municipalities"
)

func TestLanguages(t *testing.T) {
	langs, err := Languages()
	if err != nil {
		t.Fatal(err)
	}
	if len(langs) < 2 || langs[0].Code != "ja" || langs[1].Code != "en" {
		t.Fatalf("languages %+v: want Japanese (the default) first, then English", langs)
	}
	for _, l := range langs {
		if _, err := fs.Stat(FS(), l.File); err != nil {
			t.Errorf("%s: %v", l.Code, err)
		}
		if _, err := fs.Stat(audio.FS(), l.Voice); err != nil {
			t.Errorf("%s: no voice prompts in assets/audio/%s", l.Code, l.Voice)
		}
	}
}

var (
	ruby   = regexp.MustCompile(`\[([^|\]]+)\|([^\]]+)\]`)
	param  = regexp.MustCompile(`\{(\w+)\}`)
	noKana = regexp.MustCompile(`[^\p{Hiragana}\p{Katakana}ー]`)
)

// TestMessages checks every language file against the default: the same
// keys, the same parameters, well-formed furigana.
func TestMessages(t *testing.T) {
	langs, err := Languages()
	if err != nil {
		t.Fatal(err)
	}
	def, err := Messages(langs[0].Code)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range langs {
		msgs, err := Messages(l.Code)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(l.Code, func(t *testing.T) {
			for key, text := range def {
				other, ok := msgs[key]
				if !ok {
					t.Errorf("%s is missing", key)
					continue
				}
				if !slices.Equal(params(text), params(other)) {
					t.Errorf("%s: parameters %v, want %v as in %s", key, params(other), params(text), langs[0].Code)
				}
			}
			for key, text := range msgs {
				if _, ok := def[key]; !ok {
					t.Errorf("%s is not in the default language", key)
				}
				rest := ruby.ReplaceAllString(text, "")
				if strings.ContainsAny(rest, "[]|") {
					t.Errorf("%s: malformed furigana in %q (write [漢字|かな])", key, text)
				}
				for _, m := range ruby.FindAllStringSubmatch(text, -1) {
					if noKana.MatchString(m[2]) {
						t.Errorf("%s: furigana %q over %q is not kana", key, m[2], m[1])
					}
				}
			}
		})
	}
	// Key terms carry furigana in Japanese wherever they appear.
	for key, text := range def {
		plain := ruby.ReplaceAllString(text, "")
		for _, term := range []string{"暗証番号", "市区町村", "証明書"} {
			if strings.Contains(plain, term) {
				t.Errorf("ja %s: %s without furigana", key, term)
			}
		}
	}
}

func params(s string) []string {
	var out []string
	for _, m := range param.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return out
}

// TestPageUsesWhatExists checks the page's script against the data it
// names: message keys in the message files, voice prompts in assets/audio.
func TestPageUsesWhatExists(t *testing.T) {
	js, err := fs.ReadFile(FS(), "app.js")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := Messages("ja")
	if err != nil {
		t.Fatal(err)
	}
	// Static keys: nodes('…'), text('…'), heading('…'), para('…').
	keys := regexp.MustCompile(`\b(?:nodes|text|textIn|heading|para)\((?:[a-z.]+, )?'([a-z-]+\.[A-Za-z.]+)'`).FindAllSubmatch(js, -1)
	if len(keys) < 20 {
		t.Fatalf("found only %d message keys in app.js", len(keys))
	}
	for _, m := range keys {
		if _, ok := msgs[string(m[1])]; !ok {
			t.Errorf("app.js uses message %s, which ja.json lacks", m[1])
		}
	}
	// Voice prompts: every key promptsFor can return, and the time-out warning.
	prompts := regexp.MustCompile(`'((?:[a-z]+-)*(?:again|wrong|last|soon)|error|remove-card|take-certificate|pin)'`).FindAllSubmatch(js, -1)
	states := []string{"idle", "card-check", "reading", "municipality", "kind", "copies", "requesting", "preview", "payment", "printing", "print-failed"}
	seen := map[string]bool{}
	for _, m := range prompts {
		seen[string(m[1])] = true
	}
	for _, s := range states {
		seen[s] = true
	}
	for key := range seen {
		for _, lang := range []string{"ja", "en"} {
			if _, err := fs.Stat(audio.FS(), lang+"/"+key+".opus"); err != nil {
				t.Errorf("app.js plays %s, which assets/audio/%s lacks", key, lang)
			}
		}
	}
}

// TestPageKeepsNothing checks the page's source for what it must not use:
// storage, cookies, caches, HTML parsing of data, external resources.
func TestPageKeepsNothing(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "style.css", "sim/index.html", "sim/sim.js", "sim/sim.css"} {
		b, err := fs.ReadFile(FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		for _, bad := range []string{"localStorage", "sessionStorage", "document.cookie", "indexedDB", "caches.",
			"innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function", "http://", "https://", "serviceWorker"} {
			if strings.Contains(src, bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
	}
}

// TestPrefectures: prefectures.json names the 47 prefectures as the
// national list does, each in one of the six regions.
func TestPrefectures(t *testing.T) {
	b, err := fs.ReadFile(FS(), "prefectures.json")
	if err != nil {
		t.Fatal(err)
	}
	var prefs []struct{ Code, Ja, Kana, En, Region string }
	if err := json.Unmarshal(b, &prefs); err != nil {
		t.Fatal(err)
	}
	list, err := municipalities.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	if len(prefs) != len(list.Prefectures) || len(prefs) != 47 {
		t.Fatalf("%d prefectures, the list has %d", len(prefs), len(list.Prefectures))
	}
	ja, err := Messages("ja")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prefs {
		want := list.Prefectures[i]
		if p.Code != want.PrefectureCode || p.Ja != want.Prefecture || p.En == "" || p.Kana == "" {
			t.Errorf("prefecture %d: %+v, the list says %s %s", i, p, want.PrefectureCode, want.Prefecture)
		}
		if ja["region."+p.Region] == "" {
			t.Errorf("%s: region %q has no name", p.Ja, p.Region)
		}
	}
}
