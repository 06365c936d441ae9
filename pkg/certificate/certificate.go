// Package certificate defines the COVID-19 vaccination certificate
// (新型コロナウイルス感染症予防接種証明書) as issued: the document the center
// builds and signs and the kiosk previews and prints.
//
// A Certificate carries everything printed on the paper plus the QR payloads
// that make it verifiable: a SMART Health Card for both kinds, and an ICAO
// VDS-NC for the overseas kind. Display strings (product and manufacturer
// names in Japanese and English) are resolved by the center, so the kiosk
// prints exactly what the center signed and needs no vaccine catalogue.
//
// The values are personal data. They travel only in memory and over the
// encrypted kiosk channel; nothing here may be logged.
package certificate

import (
	"errors"
	"fmt"
)

// Kind is the certificate's intended use.
type Kind string

// Certificate kinds. Requesting overseas use also yields the domestic one.
const (
	Domestic Kind = "domestic" // 日本国内用
	Overseas Kind = "overseas" // 海外用
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == Domestic || k == Overseas }

// Certificate is one issued vaccination certificate.
type Certificate struct {
	ID        string `json:"id"`        // 証明書ID, at most 12 characters with a check character
	Kind      Kind   `json:"kind"`      // domestic or overseas
	IssueDate string `json:"issueDate"` // 証明書発行年月日, YYYY-MM-DD (Japan time)
	Issuer    Issuer `json:"issuer"`
	Holder    Holder `json:"holder"`
	Doses     []Dose `json:"doses"`
	// SHC is the SMART Health Card QR text: "shc:/" followed by digits.
	SHC string `json:"shc"`
	// VDSNC is the ICAO VDS-NC JSON document (overseas only). It is ASCII:
	// names are in travel-document form.
	VDSNC string `json:"vdsnc,omitempty"`
}

// Issuer is the municipality that issues the certificate (証明書発行者).
type Issuer struct {
	MunicipalityCode string `json:"municipalityCode"` // 6-digit local government code
	NameJa           string `json:"nameJa"`           // e.g. 旭川市
	NameEn           string `json:"nameEn"`           // e.g. Asahikawa City
	AuthorityJa      string `json:"authorityJa"`      // e.g. 旭川市長
	AuthorityEn      string `json:"authorityEn"`      // e.g. Mayor of Asahikawa City
}

// Holder is the person the certificate is about.
type Holder struct {
	// Name is the name as registered (kanji or katakana), as on the card.
	Name string `json:"name"`
	// FamilyName and GivenName split Name; the SMART Health Card carries them.
	FamilyName string `json:"familyName"`
	GivenName  string `json:"givenName"`
	// RomanFamily and RomanGiven are the romanized name in passport form
	// (upper-case Latin letters); required for the overseas kind.
	RomanFamily string `json:"romanFamily,omitempty"`
	RomanGiven  string `json:"romanGiven,omitempty"`
	BirthDate   string `json:"birthDate"` // YYYY-MM-DD
	Sex         string `json:"sex"`       // ISO/IEC 5218 digit: 1 male, 2 female, 9 not applicable, 0 not known
	// Nationality is an ICAO 9303 three-letter code (JPN, VNM, …); overseas kind.
	Nationality string `json:"nationality,omitempty"`
	// PassportNumber is required for the overseas kind.
	PassportNumber string `json:"passportNumber,omitempty"`
}

// Dose is one vaccination.
type Dose struct {
	Number         int    `json:"number"`         // n回目 / Dose n
	Date           string `json:"date"`           // 接種年月日, YYYY-MM-DD
	Product        string `json:"product"`        // catalogue code of the product
	ProductName    string `json:"productName"`    // 製品名 (brand, Latin script)
	ManufacturerJa string `json:"manufacturerJa"` // メーカー
	ManufacturerEn string `json:"manufacturerEn"` // Manufacturer
	VaccineTypeJa  string `json:"vaccineTypeJa"`  // ワクチンの種類
	VaccineTypeEn  string `json:"vaccineTypeEn"`  // Vaccine Type
	Lot            string `json:"lot"`            // 製造番号
	Country        string `json:"country"`        // 接種国, three-letter code (JPN)
}

// Limits the center's lint step enforces and the kiosk relies on when laying
// out the page. The ICAO limits come from the VDS-NC specification.
const (
	MaxIDLen       = 12
	MaxDoses       = 10
	MaxNameLen     = 100 // bytes of UTF-8, per name field
	MaxLotLen      = 20  // VDS-NC ve.vd.lot
	MaxPassportLen = 11  // VDS-NC pid.i
	MaxSHCLen      = 5 + 2*1195
)

// ErrInvalid is returned by Validate; the message names the field, never its value.
var ErrInvalid = errors.New("certificate: invalid")

// Validate checks the fields the printed page and both QR codes rely on. It
// is the same check on both sides: the center lints before signing, the kiosk
// refuses to print what does not pass.
func (c *Certificate) Validate() error {
	if err := c.ValidateContent(); err != nil {
		return err
	}
	bad := func(field, why string) error { return fmt.Errorf("%w: %s %s", ErrInvalid, field, why) }
	switch {
	case c.SHC == "" || len(c.SHC) > MaxSHCLen:
		return bad("shc", "must be present and fit a version 22 QR code")
	case c.Kind == Overseas && c.VDSNC == "":
		return bad("vdsnc", "is required for overseas use")
	case c.Kind != Overseas && c.VDSNC != "":
		return bad("vdsnc", "is only for overseas use")
	}
	return nil
}

// ValidateContent checks everything Validate does except the QR payloads:
// the center runs it before signing, so nothing is signed unlinted.
func (c *Certificate) ValidateContent() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s %s", ErrInvalid, field, why) }
	switch {
	case c.ID == "" || len(c.ID) > MaxIDLen:
		return bad("id", "must be 1-12 characters")
	case !c.Kind.Valid():
		return bad("kind", "must be domestic or overseas")
	case !isDate(c.IssueDate):
		return bad("issueDate", "must be YYYY-MM-DD")
	case len(c.Issuer.MunicipalityCode) != 6 || c.Issuer.NameJa == "" || c.Issuer.NameEn == "" || c.Issuer.AuthorityJa == "" || c.Issuer.AuthorityEn == "":
		return bad("issuer", "needs code, names and authority in both languages")
	case c.Holder.Name == "" || len(c.Holder.Name) > MaxNameLen:
		return bad("holder.name", "must be 1-100 bytes")
	case c.Holder.FamilyName == "" || len(c.Holder.FamilyName) > MaxNameLen || len(c.Holder.GivenName) > MaxNameLen:
		return bad("holder.familyName", "must be 1-100 bytes")
	case !isDate(c.Holder.BirthDate):
		return bad("holder.birthDate", "must be YYYY-MM-DD")
	case len(c.Doses) == 0 || len(c.Doses) > MaxDoses:
		return bad("doses", "must list 1-10 doses")
	}
	if c.Kind == Overseas {
		switch {
		case c.Holder.RomanFamily == "":
			return bad("holder.romanFamily", "is required for overseas use")
		case c.Holder.Nationality == "":
			return bad("holder.nationality", "is required for overseas use")
		case c.Holder.PassportNumber == "" || len(c.Holder.PassportNumber) > MaxPassportLen:
			return bad("holder.passportNumber", "is required for overseas use (at most 11 characters)")
		}
	}
	for i, d := range c.Doses {
		switch {
		case d.Number < 1 || (i > 0 && d.Number <= c.Doses[i-1].Number):
			// A municipality certifies the doses given while the resident
			// lived there, so numbering may start above 1 after a move.
			return bad(fmt.Sprintf("doses[%d].number", i), "must be increasing and at least 1")
		case !isDate(d.Date):
			return bad(fmt.Sprintf("doses[%d].date", i), "must be YYYY-MM-DD")
		case d.ProductName == "" || d.Product == "":
			return bad(fmt.Sprintf("doses[%d].product", i), "is required")
		case len(d.Lot) > MaxLotLen:
			return bad(fmt.Sprintf("doses[%d].lot", i), "must be at most 20 characters")
		case len(d.Country) != 3:
			return bad(fmt.Sprintf("doses[%d].country", i), "must be a three-letter code")
		}
		if i > 0 && d.Date < c.Doses[i-1].Date {
			return bad(fmt.Sprintf("doses[%d].date", i), "is before the previous dose")
		}
	}
	return nil
}

func isDate(s string) bool {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return false
	}
	for i, c := range []byte(s) {
		if i == 4 || i == 7 {
			continue
		}
		if c < '0' || c > '9' {
			return false
		}
	}
	m := (s[5]-'0')*10 + s[6] - '0'
	d := (s[8]-'0')*10 + s[9] - '0'
	return m >= 1 && m <= 12 && d >= 1 && d <= 31
}
