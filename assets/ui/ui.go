// Package ui embeds the resident's touch screen: a single page (index.html,
// app.js, style.css) in plain HTML, CSS and JavaScript with no build step and
// no external resources, its message files (i18n/<lang>.json) and the
// simulator's control panel (sim/). The kiosk agent's local server
// (kiosk/internal/localapi) serves them; README.md describes the page.
//
// Messages are data: each i18n/<lang>.json maps message keys to text, with
// furigana written as [漢字|かな] and parameters as {name}. A language is
// added by adding a file (and its voice prompts in assets/audio); Languages
// lists what the page can offer.
package ui

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

//go:embed index.html app.js style.css prefectures.json i18n sim
var files embed.FS

// FS returns the page's files.
func FS() fs.FS { return files }

// Language is one message file.
type Language struct {
	Code  string `json:"code"`  // BCP 47 tag, the file's base name (ja, en)
	Name  string `json:"name"`  // the language's name in itself (日本語, English)
	Voice string `json:"voice"` // directory of its voice prompts under assets/audio
	File  string `json:"file"`  // path under the page's root, i18n/<code>.json
	order int
}

// Languages lists the message files in the order the page offers them
// (their "meta.order"), the default language first.
func Languages() ([]Language, error) {
	ents, err := fs.ReadDir(files, "i18n")
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	var out []Language
	for _, e := range ents {
		code, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		msgs, err := Messages(code)
		if err != nil {
			return nil, err
		}
		order, err := strconv.Atoi(msgs["meta.order"])
		if err != nil {
			return nil, fmt.Errorf("ui: i18n/%s: meta.order must be a number", e.Name())
		}
		l := Language{Code: code, Name: msgs["meta.name"], Voice: msgs["meta.voice"], File: path.Join("i18n", e.Name()), order: order}
		if l.Name == "" || msgs["meta.lang"] != code {
			return nil, fmt.Errorf("ui: i18n/%s: meta.name and meta.lang (%q) are required", e.Name(), code)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ui: no message files in i18n")
	}
	slices.SortFunc(out, func(a, b Language) int { return a.order - b.order })
	return out, nil
}

// Messages returns one language's messages.
func Messages(code string) (map[string]string, error) {
	b, err := fs.ReadFile(files, path.Join("i18n", code+".json"))
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("ui: i18n/%s.json: %w", code, err)
	}
	return m, nil
}
