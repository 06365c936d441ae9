package certverify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // scans
	_ "image/png"  // scans and pdftoppm output
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/makiuchi-d/gozxing"
	multiqr "github.com/makiuchi-d/gozxing/multi/qrcode"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
)

// Limits that keep a hostile input from exhausting memory or time.
const (
	MaxInputSize = 32 << 20 // bytes of PDF, image or text
	MaxPixels    = 50e6     // per image; an A4 page at 200 dpi is 3.9 million
	MaxPages     = 20
	// RenderDPI is the resolution PDF pages are rendered at. 200 dpi is the
	// usual choice for reading text, but gozxing misjudges the module count
	// of a version 20-36 code printed 50-70 mm wide at that resolution often
	// enough to matter (8 of 24 codes missed in a trial with random keys);
	// at 300 dpi it missed none.
	RenderDPI     = 300
	renderTimeout = 2 * time.Minute
)

// Found is one QR code's text and where it was.
type Found struct {
	Page int // 1-based PDF page, 0 for other inputs
	Text string
}

// Scan returns the text of every QR code in a PDF, PNG, JPEG or QR-text
// input, in page order. It returns ErrNoCode if there is none.
func Scan(ctx context.Context, input []byte, opts Options) ([]Found, error) {
	if len(input) > MaxInputSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInput, MaxInputSize)
	}
	var found []Found
	switch {
	case bytes.HasPrefix(input, []byte("%PDF-")):
		pages, err := renderPDF(ctx, input, opts.Pdftoppm)
		if err != nil {
			return nil, err
		}
		for i, img := range pages {
			texts, err := ScanImage(img)
			if err != nil {
				return nil, fmt.Errorf("page %d: %w", i+1, err)
			}
			for _, t := range texts {
				found = append(found, Found{Page: i + 1, Text: t})
			}
		}
	case bytes.HasPrefix(input, []byte("\x89PNG\r\n\x1a\n")), bytes.HasPrefix(input, []byte("\xff\xd8\xff")):
		img, err := decodeImage(input)
		if err != nil {
			return nil, err
		}
		texts, err := ScanImage(img)
		if err != nil {
			return nil, err
		}
		for _, t := range texts {
			found = append(found, Found{Text: t})
		}
	default:
		for _, t := range splitText(input) {
			found = append(found, Found{Text: t})
		}
	}
	if len(found) == 0 {
		return nil, ErrNoCode
	}
	return found, nil
}

// splitText reads QR text: one VDS-NC JSON document (possibly
// pretty-printed), or one code per non-empty line.
func splitText(input []byte) []string {
	trimmed := bytes.TrimSpace(input)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
		return []string{string(trimmed)}
	}
	var out []string
	for line := range strings.Lines(string(input)) {
		if s := strings.TrimSpace(line); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func decodeImage(b []byte) (image.Image, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || float64(cfg.Width)*float64(cfg.Height) > MaxPixels {
		return nil, fmt.Errorf("%w: image of %dx%d pixels is too large", ErrInput, cfg.Width, cfg.Height)
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	return img, nil
}

// maxCodesPerImage bounds the search; a certificate page has two codes.
const maxCodesPerImage = 8

// ScanImage returns the text of every QR code in an image, each once.
//
// gozxing's multiple-QR reader goes first. It groups finder patterns by
// module size and can miss one of two codes printed at similar sizes, so
// every code found is then painted over and the single-code reader looks at
// what is left, until it finds nothing more.
func ScanImage(img image.Image) ([]string, error) {
	b := img.Bounds()
	page := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(page, page.Bounds(), img, b.Min, draw.Src)
	hints := map[gozxing.DecodeHintType]any{
		gozxing.DecodeHintType_TRY_HARDER:       true,
		gozxing.DecodeHintType_POSSIBLE_FORMATS: []gozxing.BarcodeFormat{gozxing.BarcodeFormat_QR_CODE},
		// Both payloads are ASCII; without this hint a byte segment could be
		// guessed to be Shift_JIS, where 0x5C reads as a yen sign.
		gozxing.DecodeHintType_CHARACTER_SET: "UTF-8",
	}
	var texts []string
	seen := map[string]bool{}
	add := func(r *gozxing.Result) {
		if t := r.GetText(); !seen[t] {
			seen[t] = true
			texts = append(texts, t)
		}
		maskCode(page, r.GetResultPoints())
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(page)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	results, err := multiqr.NewQRCodeMultiReader().DecodeMultiple(bmp, hints)
	var notFound gozxing.ReaderException // not found, or found but unreadable
	if err != nil && !errors.As(err, &notFound) {
		return nil, fmt.Errorf("%w: QR decoding: %w", ErrInput, err)
	}
	for _, r := range results {
		add(r)
	}
	// Bounded by attempts, not by codes found: a code the mask fails to
	// cover would otherwise be found again forever.
	for range maxCodesPerImage {
		bmp, err := gozxing.NewBinaryBitmapFromImage(page)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInput, err)
		}
		r, err := zxqr.NewQRCodeReader().Decode(bmp, hints)
		if err != nil || seen[r.GetText()] {
			break
		}
		add(r)
	}
	return texts, nil
}

// maskCode paints a found code white. The result points are the centres of
// the finder patterns (and perhaps an alignment pattern); the symbol reaches
// 3.5 modules beyond them plus its quiet zone, which a margin of 30% of the
// span covers for every version (version 1 spans 14 modules).
func maskCode(page *image.Gray, pts []gozxing.ResultPoint) {
	if len(pts) < 3 {
		return
	}
	minX, minY, maxX, maxY := pts[0].GetX(), pts[0].GetY(), pts[0].GetX(), pts[0].GetY()
	for _, p := range pts[1:] {
		minX, maxX = min(minX, p.GetX()), max(maxX, p.GetX())
		minY, maxY = min(minY, p.GetY()), max(maxY, p.GetY())
	}
	m := 0.3*max(maxX-minX, maxY-minY) + 4
	r := image.Rect(int(minX-m), int(minY-m), int(maxX+m)+1, int(maxY+m)+1).Intersect(page.Bounds())
	draw.Draw(page, r, image.NewUniform(color.White), image.Point{}, draw.Src)
}

// renderPDF renders each page with pdftoppm. The PDF goes in on standard
// input and the pages come back as PNG images, one after another, on
// standard output: nothing touches the disk, which matters because the
// pages carry personal data.
func renderPDF(ctx context.Context, pdf []byte, pdftoppm string) ([]image.Image, error) {
	if pdftoppm == "" {
		pdftoppm = "pdftoppm"
	}
	ctx, cancel := context.WithTimeout(ctx, renderTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pdftoppm, "-r", fmt.Sprint(RenderDPI), "-gray", "-png", "-l", fmt.Sprint(MaxPages), "-")
	cmd.Stdin = bytes.NewReader(pdf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRenderer, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRenderer, err)
	}
	var pages []image.Image
	readErr := splitPNGs(bufio.NewReader(out), func(b []byte) error {
		img, err := decodeImage(b)
		if err != nil {
			return err
		}
		pages = append(pages, img)
		return nil
	})
	if readErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	switch {
	case readErr != nil:
		return nil, fmt.Errorf("%w: reading rendered pages: %w", ErrRenderer, readErr)
	case waitErr != nil:
		// pdftoppm's message is about the file's structure, not its content.
		return nil, fmt.Errorf("%w: %w: %s", ErrRenderer, waitErr, firstLine(stderr.String()))
	case len(pages) == 0:
		return nil, fmt.Errorf("%w: PDF has no pages", ErrInput)
	}
	return pages, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if len(line) > 200 {
		line = line[:200]
	}
	return line
}

// splitPNGs cuts a stream of concatenated PNG files at their IEND chunks
// and hands each file to fn.
func splitPNGs(r io.Reader, fn func([]byte) error) error {
	const sig = "\x89PNG\r\n\x1a\n"
	var file bytes.Buffer
	for {
		file.Reset()
		head := make([]byte, len(sig))
		if _, err := io.ReadFull(r, head); err == io.EOF {
			return nil
		} else if err != nil || string(head) != sig {
			return fmt.Errorf("not a PNG stream")
		}
		file.Write(head)
		for {
			var hdr [8]byte
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return fmt.Errorf("truncated PNG: %w", err)
			}
			n := binary.BigEndian.Uint32(hdr[:4])
			if int64(file.Len())+int64(n) > MaxPixels {
				return fmt.Errorf("PNG page larger than %d bytes", int64(MaxPixels))
			}
			file.Write(hdr[:])
			if _, err := io.CopyN(&file, r, int64(n)+4); err != nil { // data and CRC
				return fmt.Errorf("truncated PNG: %w", err)
			}
			if string(hdr[4:]) == "IEND" {
				break
			}
		}
		if err := fn(file.Bytes()); err != nil {
			return err
		}
	}
}
