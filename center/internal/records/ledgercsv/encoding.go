package ledgercsv

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"
)

// Encoding is a ledger file's character encoding.
type Encoding string

// Encodings. Municipal systems export CP932 (Windows-31J, the Shift_JIS
// of Windows: JIS X 0208 plus the NEC and IBM extensions); newer ones and
// spreadsheets write UTF-8.
const (
	// EncodingAuto detects UTF-8 or CP932 from the first 64 KiB (see
	// detect).
	EncodingAuto Encoding = ""
	EncodingUTF8 Encoding = "utf-8"
	// EncodingCP932 is decoded with golang.org/x/text's ShiftJIS, which
	// is CP932.
	EncodingCP932 Encoding = "cp932"
)

// ParseEncoding reads an encoding name as an operator gives it: "auto"
// (or empty), "utf-8"/"utf8", "cp932"/"shift_jis"/"sjis"/"windows-31j".
func ParseEncoding(s string) (Encoding, error) {
	switch s {
	case "", "auto":
		return EncodingAuto, nil
	case "utf-8", "utf8", "UTF-8":
		return EncodingUTF8, nil
	case "cp932", "CP932", "shift_jis", "Shift_JIS", "sjis", "windows-31j", "Windows-31J":
		return EncodingCP932, nil
	}
	return "", fmt.Errorf("ledgercsv: unknown encoding; use auto, utf-8 or cp932")
}

// detectWindow is how much of the file detection looks at.
const detectWindow = 64 << 10

// decoder returns a reader of the file as UTF-8, and the encoding used. A
// UTF-8 byte order mark is skipped (and means UTF-8).
func decoder(r io.Reader, enc Encoding) (io.Reader, Encoding, error) {
	br := bufio.NewReaderSize(r, detectWindow)
	if bom, err := br.Peek(3); err == nil && bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		br.Discard(3)
		if enc == EncodingCP932 {
			return nil, "", fmt.Errorf("ledgercsv: the file starts with a UTF-8 byte order mark but was named CP932")
		}
		return br, EncodingUTF8, nil
	}
	if enc == EncodingAuto {
		window, err := br.Peek(detectWindow)
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return nil, "", fmt.Errorf("ledgercsv: reading the file: %w", err)
		}
		enc = detect(window, len(window) == detectWindow)
	}
	if enc == EncodingCP932 {
		return transform.NewReader(br, japanese.ShiftJIS.NewDecoder()), EncodingCP932, nil
	}
	return br, EncodingUTF8, nil
}

// detect decides between UTF-8 and CP932 from the start of a file. CP932
// is chosen only when the window has non-ASCII text, none of it is valid
// UTF-8, and all of it decodes as CP932: a UTF-8 file with one damaged
// byte stays UTF-8 (the damaged row is then reported) rather than being
// read as CP932 mojibake, which could pass validation. A window of ASCII
// only is UTF-8 (a CP932 name further on is then reported as invalid
// UTF-8, and the operator names the encoding).
func detect(window []byte, truncated bool) Encoding {
	validRuns, invalidRuns := 0, 0
	for i := 0; i < len(window); {
		if window[i] < utf8.RuneSelf {
			i++
			continue
		}
		j := i
		for j < len(window) && window[j] >= utf8.RuneSelf {
			j++
		}
		run := window[i:j]
		if truncated && j == len(window) {
			break // may end inside a character
		}
		if utf8.Valid(run) {
			validRuns++
		} else {
			invalidRuns++
		}
		i = j
	}
	if invalidRuns == 0 || validRuns > 0 {
		return EncodingUTF8
	}
	text := window
	if truncated {
		text = text[:len(text)-1] // may end between a lead and a trail byte
	}
	decoded, err := japanese.ShiftJIS.NewDecoder().Bytes(text)
	if err != nil || bytes.ContainsRune(decoded, utf8.RuneError) {
		return EncodingUTF8
	}
	return EncodingCP932
}

// countingReader counts the bytes read from the file (before decoding),
// for progress.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
