// Package certtest builds valid synthetic vaccination certificates from the
// demo residents (assets/demo) for tests. It is for tests only: no
// production code imports it.
//
//	c := certtest.Resident(t, "hanako", certificate.Domestic) // first ledger record
//	c, err := certtest.FromRecord(data, resident, "011002", certificate.Overseas)
//
// A certificate is built as the center builds one (center/internal/issuance):
// issuer from the municipality, holder from the resident (romanized name,
// nationality and passport only for overseas use), doses with the vaccine
// catalogue's wording (pkg/vaccine). What the center draws at random is fixed
// here so that golden files stay stable: the certificate ID is derived from
// the resident's id, and the issue date is IssueDate. The QR payloads (SHC,
// VDSNC) are left empty for the test to sign or fill.
package certtest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/pkg/certid"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
)

// IssueDate is the issue date of every certificate built here.
const IssueDate = "2024-04-01"

// ErrNoRecord means the resident has no ledger record in the municipality
// asked for; a fake center answers it as the real one does (no_record).
var ErrNoRecord = errors.New("certtest: the resident has no ledger record in that municipality")

// Resident builds a certificate of the given kind for the demo resident with
// the given id from their first ledger record, failing tb on error.
func Resident(tb testing.TB, id string, kind certificate.Kind) *certificate.Certificate {
	tb.Helper()
	d, err := demo.Load()
	if err != nil {
		tb.Fatal(err)
	}
	r, err := d.Resident(id)
	if err != nil {
		tb.Fatal(err)
	}
	if len(r.Records) == 0 {
		tb.Fatalf("certtest: demo resident %s has no ledger record", id)
	}
	c, err := FromRecord(d, r, r.Records[0].Municipality, kind)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// FromRecord builds a certificate of the given kind for r from their ledger
// record in the municipality with the given code, taking the municipality's
// names from d. It returns ErrNoRecord if r has no record there.
func FromRecord(d *demo.Data, r demo.Resident, code string, kind certificate.Kind) (*certificate.Certificate, error) {
	var rec *demo.Record
	for i := range r.Records {
		if r.Records[i].Municipality == code {
			rec = &r.Records[i]
		}
	}
	if rec == nil {
		return nil, ErrNoRecord
	}
	seed := sha256.Sum256([]byte(r.ID))
	id, err := certid.New(bytes.NewReader(seed[:]))
	if err != nil {
		return nil, fmt.Errorf("certtest: certificate ID: %w", err)
	}
	c := &certificate.Certificate{ID: id, Kind: kind, IssueDate: IssueDate}
	for _, m := range d.Municipalities {
		if m.Code == code {
			c.Issuer = certificate.Issuer{MunicipalityCode: m.Code, NameJa: m.NameJa, NameEn: m.NameEn, AuthorityJa: m.AuthorityJa, AuthorityEn: m.AuthorityEn}
		}
	}
	family, given, _ := strings.Cut(r.Name, "\u3000")
	c.Holder = certificate.Holder{Name: r.Name, FamilyName: family, GivenName: given, BirthDate: r.BirthDate, Sex: r.Sex}
	if kind == certificate.Overseas {
		c.Holder.RomanFamily, c.Holder.RomanGiven = r.RomanFamily, r.RomanGiven
		c.Holder.Nationality, c.Holder.PassportNumber = r.Nationality, r.PassportNumber
	}
	for _, dose := range rec.Doses {
		p, err := vaccine.Lookup(dose.Product)
		if err != nil {
			return nil, fmt.Errorf("certtest: dose %d: %w", dose.Number, err)
		}
		c.Doses = append(c.Doses, certificate.Dose{Number: dose.Number, Date: dose.Date, Product: p.Code,
			ProductName: p.Name, ManufacturerJa: p.ManufacturerJa, ManufacturerEn: p.ManufacturerEn,
			VaccineTypeJa: p.TypeJa, VaccineTypeEn: p.TypeEn, Lot: dose.Lot, Country: "JPN"})
	}
	return c, nil
}
