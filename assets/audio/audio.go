// Package audio embeds the kiosk screen's voice prompts: one Ogg Opus file
// per prompt and language, <lang>/<key>.opus, spoken by espeak-ng from the
// texts in prompts.tsv. The local server serves them under /audio/ and the
// page plays them (assets/ui/app.js). README.md lists the texts and how to
// regenerate the files; a new language is a column of texts in prompts.tsv
// and a voice in generate.sh.
package audio

import (
	"embed"
	"io/fs"
)

//go:generate ./generate.sh

//go:embed prompts.tsv ja en
var files embed.FS

// FS returns the prompts: prompts.tsv and <lang>/<key>.opus.
func FS() fs.FS { return files }
