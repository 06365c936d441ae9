package certtest

import (
	"errors"
	"testing"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/pkg/certid"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// TestFromRecord builds every demo resident's certificates: each must pass
// the center's lint, carry the overseas fields only for overseas use, and
// keep its derived ID from one build to the next.
func TestFromRecord(t *testing.T) {
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range d.Residents {
		for _, rec := range r.Records {
			for _, kind := range []certificate.Kind{certificate.Domestic, certificate.Overseas} {
				if kind == certificate.Overseas && r.PassportNumber == "" {
					continue // the center refuses overseas use without a passport
				}
				t.Run(r.ID+"/"+rec.Municipality+"/"+string(kind), func(t *testing.T) {
					c, err := FromRecord(d, r, rec.Municipality, kind)
					if err != nil {
						t.Fatal(err)
					}
					if err := c.ValidateContent(); err != nil {
						t.Fatal(err)
					}
					if err := certid.Validate(c.ID); err != nil {
						t.Fatal(err)
					}
					if c.Issuer.MunicipalityCode != rec.Municipality || len(c.Doses) != len(rec.Doses) || c.IssueDate != IssueDate {
						t.Fatalf("issuer %s, %d doses, issued %s", c.Issuer.MunicipalityCode, len(c.Doses), c.IssueDate)
					}
					if overseas := c.Holder.PassportNumber != ""; overseas != (kind == certificate.Overseas) {
						t.Fatal("overseas fields on the wrong kind")
					}
					again, _ := FromRecord(d, r, rec.Municipality, kind)
					if again.ID != c.ID {
						t.Fatal("certificate ID is not stable")
					}
				})
			}
		}
	}
}

func TestNoRecord(t *testing.T) {
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Resident("hanako")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromRecord(d, r, "112453", certificate.Domestic); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("FromRecord in a municipality without a record: %v, want ErrNoRecord", err)
	}
	if c := Resident(t, "an", certificate.Overseas); c.Issuer.MunicipalityCode != "011002" || c.Holder.RomanFamily == "" {
		t.Fatalf("Resident(an) = issuer %s", c.Issuer.MunicipalityCode)
	}
}
