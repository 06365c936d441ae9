package audio

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// prompts reads prompts.tsv as key → language → text.
func prompts(t *testing.T) map[string]map[string]string {
	t.Helper()
	b, err := fs.ReadFile(FS(), "prompts.tsv")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] == "" || f[1] == "" || f[2] == "" {
			t.Fatalf("prompts.tsv:%d: want key<TAB>lang<TAB>text", n)
		}
		if out[f[0]] == nil {
			out[f[0]] = map[string]string{}
		}
		if _, dup := out[f[0]][f[1]]; dup {
			t.Fatalf("prompts.tsv:%d: %s/%s twice", n, f[0], f[1])
		}
		out[f[0]][f[1]] = f[2]
	}
	return out
}

// TestEveryPromptHasAudio checks that each prompt is spoken in every
// language, as a small Ogg Opus file, and that no stray file is shipped.
func TestEveryPromptHasAudio(t *testing.T) {
	ps := prompts(t)
	langs := []string{"ja", "en"}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for key, texts := range ps {
		t.Run(key, func(t *testing.T) {
			if !bytes.Contains(readme, []byte("`"+key+"`")) {
				t.Errorf("README.md does not list prompt %s", key)
			}
			for _, lang := range langs {
				if texts[lang] == "" {
					t.Errorf("no %s text", lang)
					continue
				}
				b, err := fs.ReadFile(FS(), lang+"/"+key+".opus")
				if err != nil {
					t.Errorf("%s: %v (run ./generate.sh)", lang, err)
					continue
				}
				// An Ogg page, then the Opus identification header.
				if !bytes.HasPrefix(b, []byte("OggS")) || !bytes.Contains(b[:64], []byte("OpusHead")) {
					t.Errorf("%s/%s.opus is not Ogg Opus", lang, key)
				}
				if len(b) > 32<<10 {
					t.Errorf("%s/%s.opus is %d bytes; keep prompts short (under 32 KiB)", lang, key, len(b))
				}
			}
		})
	}
	for _, lang := range langs {
		ents, err := fs.ReadDir(FS(), lang)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			key := strings.TrimSuffix(e.Name(), ".opus")
			if ps[key] == nil {
				t.Errorf("%s/%s has no text in prompts.tsv (stale file?)", lang, e.Name())
			}
		}
	}
}

// TestJapaneseInKana guards against kanji in the Japanese texts:
// espeak-ng's Japanese voice reads kana only.
func TestJapaneseInKana(t *testing.T) {
	for key, texts := range prompts(t) {
		for _, r := range texts["ja"] {
			if r >= 0x4E00 && r <= 0x9FFF {
				t.Errorf("%s/ja: kanji %q; write the Japanese prompt in kana", key, r)
				break
			}
		}
	}
}
