package certpdf

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/go-pdf/fpdf"
	qrcode "github.com/skip2/go-qrcode"

	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Error correction levels fixed by the two specifications: SMART Health
// Cards use L (so a full card fits version 22), the ICAO VDS-NC uses M.
const (
	shcLevel   = qrcode.Low
	vdsncLevel = qrcode.Medium
)

type qrKey struct {
	text  string
	level qrcode.RecoveryLevel
}

// payload is one QR code a certificate carries.
type payload struct {
	name  string // for errors: "shc" or "vdsnc"
	text  string
	level qrcode.RecoveryLevel
}

// payloads lists the certificate's QR codes in printing order (left to
// right): the VDS-NC, for the overseas kind only, then the SMART Health Card.
func payloads(c *certificate.Certificate) []payload {
	shc := payload{"shc", c.SHC, shcLevel}
	if c.Kind == certificate.Overseas {
		return []payload{{"vdsnc", c.VDSNC, vdsncLevel}, shc}
	}
	return []payload{shc}
}

// qrJob is one QR code being encoded in the background.
type qrJob struct {
	done   chan struct{}
	bitmap [][]bool // modules including the 4-module quiet zone; true is dark
	err    error
}

// qrSet holds the QR codes of one document, each distinct payload encoded
// once: the overseas and domestic certificates of one request may carry the
// same SMART Health Card.
type qrSet struct {
	jobs map[qrKey]*qrJob
	wg   sync.WaitGroup
}

// startQR checks every payload and starts encoding each distinct one on its
// own goroutine.
func startQR(certs []*certificate.Certificate) (*qrSet, error) {
	s := &qrSet{jobs: map[qrKey]*qrJob{}}
	var keys []qrKey
	for i, c := range certs {
		for _, q := range payloads(c) {
			if !isASCII(q.text) {
				return nil, fmt.Errorf("%w: certificate %d of %d, %s", ErrNonASCIIQR, i+1, len(certs), q.name)
			}
			k := qrKey{q.text, q.level}
			if _, ok := s.jobs[k]; !ok {
				s.jobs[k] = &qrJob{done: make(chan struct{})}
				keys = append(keys, k)
			}
		}
	}
	for _, k := range keys {
		j := s.jobs[k]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(j.done)
			defer func() {
				// go-qrcode panics on internal inconsistencies; a kiosk must
				// report a failed document, not crash.
				if recover() != nil {
					j.err = fmt.Errorf("%w: encoder failed", ErrQR)
				}
			}()
			q, err := qrcode.New(k.text, k.level)
			if err != nil {
				j.err = fmt.Errorf("%w: %v", ErrQR, err)
				return
			}
			j.bitmap = q.Bitmap()
		}()
	}
	return s, nil
}

// get waits for the code of text at level.
func (s *qrSet) get(text string, level qrcode.RecoveryLevel) ([][]bool, error) {
	j := s.jobs[qrKey{text, level}]
	<-j.done
	return j.bitmap, j.err
}

func (s *qrSet) wait() { s.wg.Wait() }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// drawQR draws bitmap as a size×size square with its top-left corner at
// (x, y) mm: a white ground (the copy-evident pattern must not show through
// the light modules), then the dark modules as one filled path of
// rectangles. The path is written in module units under a scaling matrix,
// so each rectangle is a few small integers ("12 3 4 1 re"), which keeps
// the PDF small and fast to write; filling it as one path also avoids the
// hairline seams a viewer may show between separately filled rectangles.
func drawQR(pdf *fpdf.Fpdf, bitmap [][]bool, x, y, size float64) {
	n := len(bitmap)
	if n == 0 {
		return
	}
	pdf.SetFillColor(255, 255, 255)
	pdf.Rect(x, y, size, size, "F")
	pdf.SetFillColor(0, 0, 0)

	k := pdf.GetConversionRatio() // points per mm
	_, pageHeight := pdf.GetPageSize()
	m := size / float64(n) * k // points per module
	rects := mergeRuns(bitmap)
	b := make([]byte, 0, 64+16*len(rects))
	b = append(b, "q\n"...)
	b = appendNums(b, m, 0, 0, -m, x*k, (pageHeight-y)*k)
	b = append(b, " cm\n"...)
	for _, r := range rects {
		b = strconv.AppendInt(b, int64(r.x), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(r.y), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(r.w), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(r.h), 10)
		b = append(b, " re\n"...)
	}
	b = append(b, "f\nQ\n"...)
	pdf.RawWriteBuf(bytes.NewReader(b))
}

// appendNums appends space-separated numbers with at most 4 decimals.
func appendNums(b []byte, vs ...float64) []byte {
	for i, v := range vs {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendFloat(b, math.Round(v*1e4)/1e4, 'f', -1, 64)
	}
	return b
}

// moduleRect is a rectangle of dark modules, in module units.
type moduleRect struct{ x, y, w, h int }

// mergeRuns covers the dark modules of bitmap with rectangles: horizontal
// runs, extended downwards while the next row has exactly the same run.
// Every dark module is covered exactly once and no light module is.
func mergeRuns(bitmap [][]bool) []moduleRect {
	out := make([]moduleRect, 0, len(bitmap)*len(bitmap)/4)
	// prev and cur hold the indexes in out of the rectangles ending on the
	// previous and the current row, left to right.
	prev, cur := make([]int, 0, len(bitmap)), make([]int, 0, len(bitmap))
	for y, row := range bitmap {
		cur = cur[:0]
		p := 0 // cursor into prev: both lists are ordered by x
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			x0 := x
			for x < len(row) && row[x] {
				x++
			}
			for p < len(prev) && out[prev[p]].x < x0 {
				p++
			}
			if p < len(prev) && out[prev[p]].x == x0 && out[prev[p]].w == x-x0 {
				out[prev[p]].h++
				cur = append(cur, prev[p])
			} else {
				cur = append(cur, len(out))
				out = append(out, moduleRect{x0, y, x - x0, 1})
			}
		}
		prev, cur = cur, prev
	}
	return out
}
