#!/usr/bin/env bash
# Regenerates the kiosk's voice prompts from prompts.tsv with espeak-ng and
# encodes them as Ogg Opus (mono, 16 kbit/s): assets/audio/<lang>/<key>.opus.
# Needs the Debian packages espeak-ng and opus-tools:
#   apt-get install espeak-ng opus-tools
# Run from anywhere: ./generate.sh, or `go generate ./assets/audio`.
set -euo pipefail
cd "$(dirname "$0")"
command -v espeak-ng >/dev/null && command -v opusenc >/dev/null || {
  echo "generate.sh: needs espeak-ng and opusenc (apt-get install espeak-ng opus-tools)" >&2; exit 1; }

# espeak-ng voice and speed (words per minute; the default 175 is fast for
# residents who are elderly or not fluent) per language directory.
declare -A voice=([ja]=ja [en]=en-us)
declare -A speed=([ja]=150 [en]=140)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -f ja/*.opus en/*.opus
mkdir -p ja en
while IFS=$'\t' read -r key lang text; do
  [[ -z "$key" || "$key" == \#* ]] && continue
  v=${voice[$lang]:?unknown language $lang in prompts.tsv}
  # espeak-ng switches to English and spells "Chinese letter" for kanji it
  # cannot read: refuse such a text rather than ship it.
  if espeak-ng -q -x -v "$v" "$text" | grep -q '(en)' && [[ "$lang" != en ]]; then
    echo "generate.sh: $key/$lang: espeak-ng cannot read part of this text; write it in kana" >&2; exit 1
  fi
  espeak-ng -v "$v" -s "${speed[$lang]}" -w "$tmp/p.wav" "$text"
  # A fixed serial number keeps the output reproducible.
  opusenc --quiet --bitrate 16 --downmix-mono --serial 1 "$tmp/p.wav" "$lang/$key.opus"
done < prompts.tsv
du -b ja/*.opus en/*.opus | awk '{n++; s+=$1} END {printf "generate.sh: %d files, %d bytes\n", n, s}'
