package demo

import (
	"testing"

	"github.com/kioskcert/kioskcert/pkg/lgcode"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

// The demo data must be valid wherever real data would be checked.
func TestDemoDataValid(t *testing.T) {
	d, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	munis := map[string]bool{}
	for _, m := range d.Municipalities {
		if err := lgcode.Validate(m.Code); err != nil {
			t.Errorf("municipality %s: %v", m.NameEn, err)
		}
		munis[m.Code] = true
	}
	seen := map[string]bool{}
	for _, r := range d.Residents {
		if err := mynumber.Validate(r.MyNumber); err != nil {
			t.Errorf("%s: %v", r.ID, err)
		}
		if seen[r.MyNumber] {
			t.Errorf("%s: duplicate My Number", r.ID)
		}
		seen[r.MyNumber] = true
		if len(r.PIN) != 4 {
			t.Errorf("%s: PIN must be 4 digits", r.ID)
		}
		for _, rec := range r.Records {
			if !munis[rec.Municipality] {
				t.Errorf("%s: record in unknown municipality %s", r.ID, rec.Municipality)
			}
		}
	}
	if _, err := d.Resident("nobody"); err == nil {
		t.Error("unknown resident found")
	}
}
