package certpdf

import (
	"flag"
	"testing"
)

var regenInputs = flag.Bool("regen-inputs", false, "rewrite testdata/*.json from the demo residents")

// TestFixtures checks that the fixture builders still make valid
// certificates from the demo data and that every pinned input is valid;
// with -regen-inputs it rewrites the pinned inputs from the builders.
func TestFixtures(t *testing.T) {
	if *regenInputs {
		makeFixtures(t)
	}
	for _, gc := range goldenCases {
		if got := certFor(t, gc.resident, gc.muni, gc.overseas); len(got) == 0 {
			t.Errorf("%s: no certificates built", gc.name)
		}
	}
	maxCert(t)
	for _, name := range allCases() {
		for i, c := range loadFixture(t, name) {
			if err := c.Validate(); err != nil {
				t.Errorf("testdata/%s.json certificate %d: %v", name, i, err)
			}
		}
	}
}
