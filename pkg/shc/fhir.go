package shc

import (
	"fmt"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
)

// Bundle is the minimal FHIR R4 Bundle the specification allows in a QR
// code: type collection, entries with short resource: URIs, and no id, text,
// CodeableConcept.text or Coding.display anywhere.
type Bundle struct {
	ResourceType string  `json:"resourceType"`
	Type         string  `json:"type"`
	Entry        []Entry `json:"entry"`
}

// Entry is one bundle entry.
type Entry struct {
	FullURL  string   `json:"fullUrl"`
	Resource Resource `json:"resource"`
}

// Resource holds the fields of the two resource types a vaccination card
// uses, Patient and Immunization; omitempty keeps each to its own fields.
// Meta is allowed by the specification only with security labels and is
// never written by this package.
type Resource struct {
	ResourceType string `json:"resourceType"`
	Meta         *Meta  `json:"meta,omitempty"`

	// Patient.
	Name      []HumanName `json:"name,omitempty"`
	BirthDate string      `json:"birthDate,omitempty"`

	// Immunization.
	Status             string           `json:"status,omitempty"`
	VaccineCode        *CodeableConcept `json:"vaccineCode,omitempty"`
	Patient            *Reference       `json:"patient,omitempty"`
	OccurrenceDateTime string           `json:"occurrenceDateTime,omitempty"`
	Performer          []Performer      `json:"performer,omitempty"`
	LotNumber          string           `json:"lotNumber,omitempty"`
}

// Meta carries security labels only.
type Meta struct {
	Security []Coding `json:"security,omitempty"`
}

// HumanName is a FHIR HumanName reduced to family and given.
type HumanName struct {
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
}

// CodeableConcept without text.
type CodeableConcept struct {
	Coding []Coding `json:"coding"`
}

// Coding without display.
type Coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// Reference is a resource: reference.
type Reference struct {
	Reference string `json:"reference"`
}

// Performer names who administered a dose.
type Performer struct {
	Actor Actor `json:"actor"`
}

// Actor is a display-only reference.
type Actor struct {
	Display string `json:"display"`
}

// BuildBundle makes the FHIR bundle for a certificate: the Patient first
// (resource:0), then one completed Immunization per dose, in dose order.
// The performer is the issuing municipality in English, the authority that
// ran the vaccination programme for the resident.
func BuildBundle(c *certificate.Certificate) (Bundle, error) {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s %s", ErrCertificate, field, why) }
	if c == nil {
		return Bundle{}, bad("certificate", "is nil")
	}
	family, given := c.Holder.FamilyName, c.Holder.GivenName
	switch c.Kind {
	case certificate.Domestic:
	case certificate.Overseas:
		// The overseas page is read against a passport: use its name.
		family, given = c.Holder.RomanFamily, c.Holder.RomanGiven
	default:
		return Bundle{}, bad("kind", "must be domestic or overseas")
	}
	if strings.TrimSpace(family) == "" {
		return Bundle{}, bad("holder family name", "is empty")
	}
	if !isDate(c.Holder.BirthDate) {
		return Bundle{}, bad("holder.birthDate", "must be YYYY-MM-DD")
	}
	if len(c.Doses) == 0 {
		return Bundle{}, bad("doses", "are empty")
	}
	if c.Issuer.NameEn == "" {
		return Bundle{}, bad("issuer.nameEn", "is empty")
	}
	name := HumanName{Family: family}
	if g := strings.TrimSpace(given); g != "" {
		name.Given = []string{g}
	}
	b := Bundle{ResourceType: "Bundle", Type: "collection"}
	b.Entry = append(b.Entry, Entry{FullURL: "resource:0", Resource: Resource{
		ResourceType: "Patient",
		Name:         []HumanName{name},
		BirthDate:    c.Holder.BirthDate,
	}})
	for i, d := range c.Doses {
		p, err := vaccine.Lookup(d.Product)
		if err != nil {
			return Bundle{}, fmt.Errorf("%w: doses[%d]: %w", ErrCertificate, i, err)
		}
		if !isDate(d.Date) {
			return Bundle{}, bad(fmt.Sprintf("doses[%d].date", i), "must be YYYY-MM-DD")
		}
		b.Entry = append(b.Entry, Entry{FullURL: fmt.Sprintf("resource:%d", i+1), Resource: Resource{
			ResourceType:       "Immunization",
			Status:             "completed",
			VaccineCode:        &CodeableConcept{Coding: []Coding{{System: CVXSystem, Code: p.CVX}}},
			Patient:            &Reference{Reference: "resource:0"},
			OccurrenceDateTime: d.Date,
			Performer:          []Performer{{Actor: Actor{Display: c.Issuer.NameEn}}},
			LotNumber:          d.Lot,
		}})
	}
	return b, nil
}

// isDate reports whether s is a calendar date in the form YYYY-MM-DD.
func isDate(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}
