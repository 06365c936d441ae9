package vaccine

import (
	"errors"
	"testing"

	"github.com/kioskcert/kioskcert/assets/demo"
)

// TestLookupKnownAnswers pins the codes that end up in signed credentials.
func TestLookupKnownAnswers(t *testing.T) {
	tests := []struct {
		code, name, manEn, manJa, typeEn, cvx, icd string
	}{
		{"comirnaty", "Comirnaty", "Pfizer", "ファイザー", "mRNA vaccine", "208", "XM0GQ8"},
		{"comirnaty-5-11", "Comirnaty (ages 5-11)", "Pfizer", "ファイザー", "mRNA vaccine", "218", "XM0GQ8"},
		{"comirnaty-6m-4y", "Comirnaty (ages 6 months-4 years)", "Pfizer", "ファイザー", "mRNA vaccine", "219", "XM0GQ8"},
		{"comirnaty-bivalent-ba1", "Comirnaty Original/Omicron BA.1", "Pfizer", "ファイザー", "mRNA vaccine", "300", "XM0GQ8"},
		{"comirnaty-bivalent-ba45", "Comirnaty Original/Omicron BA.4-5", "Pfizer", "ファイザー", "mRNA vaccine", "300", "XM0GQ8"},
		{"comirnaty-xbb", "Comirnaty Omicron XBB.1.5", "Pfizer", "ファイザー", "mRNA vaccine", "309", "XM0GQ8"},
		{"spikevax", "Spikevax", "Moderna", "モデルナ", "mRNA vaccine", "207", "XM0GQ8"},
		{"spikevax-bivalent-ba1", "Spikevax Bivalent Original/Omicron BA.1", "Moderna", "モデルナ", "mRNA vaccine", "229", "XM0GQ8"},
		{"spikevax-bivalent-ba45", "Spikevax Bivalent Original/Omicron BA.4-5", "Moderna", "モデルナ", "mRNA vaccine", "229", "XM0GQ8"},
		{"nuvaxovid", "Nuvaxovid", "Takeda (Novavax)", "武田", "recombinant protein vaccine", "211", "XM5JC5"},
		{"vaxzevria", "Vaxzevria", "AstraZeneca", "アストラゼネカ", "viral vector vaccine", "210", "XM9QW8"},
		{"jcovden", "Jcovden", "Janssen", "ヤンセン", "viral vector vaccine", "212", "XM9QW8"},
	}
	if len(tests) != len(All()) {
		t.Fatalf("catalogue has %d products, test pins %d", len(All()), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			p, err := Lookup(tc.code)
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if p.Code != tc.code || p.Name != tc.name || p.ManufacturerEn != tc.manEn || p.ManufacturerJa != tc.manJa ||
				p.TypeEn != tc.typeEn || p.CVX != tc.cvx || p.ICD11 != tc.icd {
				t.Errorf("Lookup(%q) = %+v", tc.code, p)
			}
			if p.TypeJa == "" {
				t.Error("TypeJa is empty")
			}
		})
	}
}

func TestLookupUnknown(t *testing.T) {
	for _, code := range []string{"", "Comirnaty", "pfizer", "comirnaty ", "sinovac"} {
		t.Run(code, func(t *testing.T) {
			if _, err := Lookup(code); !errors.Is(err, ErrUnknownProduct) {
				t.Errorf("Lookup(%q) error = %v, want ErrUnknownProduct", code, err)
			}
		})
	}
}

// TestCatalogueCoversDemoData makes sure every product a demo ledger names
// can be issued.
func TestCatalogueCoversDemoData(t *testing.T) {
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, r := range d.Residents {
		for _, rec := range r.Records {
			for _, dose := range rec.Doses {
				seen++
				if _, err := Lookup(dose.Product); err != nil {
					t.Errorf("resident %s dose %d: %v", r.ID, dose.Number, err)
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("demo data has no doses")
	}
}

func TestAllIsCopyAndUnique(t *testing.T) {
	a := All()
	a[0].CVX = "999"
	if p, _ := Lookup(a[0].Code); p.CVX == "999" {
		t.Fatal("All returned the catalogue itself, not a copy")
	}
	codes := map[string]bool{}
	for _, p := range All() {
		if codes[p.Code] {
			t.Errorf("duplicate code %q", p.Code)
		}
		codes[p.Code] = true
		for field, v := range map[string]string{"Name": p.Name, "ManufacturerJa": p.ManufacturerJa, "ManufacturerEn": p.ManufacturerEn,
			"TypeJa": p.TypeJa, "TypeEn": p.TypeEn, "CVX": p.CVX, "ICD11": p.ICD11} {
			if v == "" {
				t.Errorf("%s: %s is empty", p.Code, field)
			}
		}
		// VDS-NC ve.des is at most 6 characters.
		if len(p.ICD11) > 6 {
			t.Errorf("%s: ICD11 %q longer than 6", p.Code, p.ICD11)
		}
	}
}
