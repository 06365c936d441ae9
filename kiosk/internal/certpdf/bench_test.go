package certpdf

import (
	"bytes"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// BenchmarkRender measures one PDF per operation, including the QR codes
// and the font subset; the font index is built once, outside the loop, as
// in the kiosk. Run: go test -run '^$' -bench Render -benchmem ./kiosk/internal/certpdf
func BenchmarkRender(b *testing.B) {
	r, err := NewRenderer()
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name  string
		certs []*certificate.Certificate
	}{
		{"domestic", loadFixture(b, "takasaki-domestic")},
		{"overseas", loadFixture(b, "hanako-overseas")[:1]},
		{"overseas+domestic", loadFixture(b, "hanako-overseas")},
		{"max-overseas", loadFixture(b, "max-overseas")},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			var buf bytes.Buffer
			cpu0 := processCPU()
			for b.Loop() {
				buf.Reset()
				if err := r.Render(&buf, bc.certs...); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time of the whole process (all goroutines, GC included)
			// per PDF: less sensitive than ns/op to other load on the machine.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(buf.Len()), "bytes/pdf")
			b.ReportMetric(float64(buf.Len())/float64(len(bc.certs)), "bytes/cert")
		})
	}
}
