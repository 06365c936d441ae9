// Package demo embeds the synthetic demo residents and municipalities
// (residents.json) and decodes them for the virtual card, the center's demo
// data and the tests. See README.md in this folder for who is who.
package demo

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kioskcert/kioskcert/pkg/holder"
)

//go:embed residents.json
var residentsJSON []byte

// Municipality is a demo municipality.
type Municipality struct {
	Code          string `json:"code"`
	NameJa        string `json:"nameJa"`
	NameEn        string `json:"nameEn"`
	AuthorityJa   string `json:"authorityJa"`
	AuthorityEn   string `json:"authorityEn"`
	Participating bool   `json:"participating"`
	// CounterJa and CounterEn name the counter residents the kiosk sends
	// away apply at (issue 15).
	CounterJa string `json:"counterJa,omitempty"`
	CounterEn string `json:"counterEn,omitempty"`
}

// Resident is a demo resident: what the card holds and what the
// municipalities' ledgers hold about them.
type Resident struct {
	ID       string `json:"id"`
	About    string `json:"about"`
	MyNumber string `json:"myNumber"`
	PIN      string `json:"pin"`
	Name     string `json:"name"`
	// CardName is the name as the card holds it when it differs from the
	// ledger's: a former name or alias in brackets beside it (旧氏併記).
	CardName       string   `json:"cardName,omitempty"`
	NameKana       string   `json:"nameKana"`
	RomanFamily    string   `json:"romanFamily"`
	RomanGiven     string   `json:"romanGiven"`
	Address        string   `json:"address"`
	BirthDate      string   `json:"birthDate"` // YYYY-MM-DD
	Sex            string   `json:"sex"`       // ISO/IEC 5218 digit
	Nationality    string   `json:"nationality,omitempty"`
	PassportNumber string   `json:"passportNumber,omitempty"`
	Records        []Record `json:"records"`
}

// Record is one municipality's ledger entry for the resident.
type Record struct {
	Municipality   string `json:"municipality"`
	ResidentNumber string `json:"residentNumber"`
	TicketNumber   string `json:"ticketNumber"`
	// The ledger's flags (docs/RECORDS.md): the counter-only reason
	// (support_measure, alias_on_record, travel_document, staff_review),
	// the date of death, the date the resident moved out.
	CounterOnly  string `json:"counterOnly,omitempty"`
	DeceasedDate string `json:"deceasedDate,omitempty"`
	MovedOutDate string `json:"movedOutDate,omitempty"`
	Doses        []Dose `json:"doses"`
}

// Dose is one vaccination in a ledger.
type Dose struct {
	Number  int    `json:"number"`
	Date    string `json:"date"` // YYYY-MM-DD
	Product string `json:"product"`
	Lot     string `json:"lot"`
}

// NameOnCard is the name the resident's card holds.
func (r Resident) NameOnCard() string {
	if r.CardName != "" {
		return r.CardName
	}
	return r.Name
}

// SentToCounter reports whether the kiosk sends the resident to the
// municipal counter for the record rec (issue 15): a counter-only or
// deceased flag, or a former name or alias on the card.
func (r Resident) SentToCounter(rec Record) bool {
	return rec.CounterOnly != "" || rec.DeceasedDate != "" || holder.HasFormerName(r.NameOnCard())
}

// CardBirthDate is the birth date as the card stores it (YYYYMMDD).
func (r Resident) CardBirthDate() string { return strings.ReplaceAll(r.BirthDate, "-", "") }

// Data is the decoded residents.json.
type Data struct {
	Municipalities []Municipality `json:"municipalities"`
	Residents      []Resident     `json:"residents"`
}

// Load decodes the embedded demo data.
func Load() (*Data, error) {
	var d Data
	if err := json.Unmarshal(residentsJSON, &d); err != nil {
		return nil, fmt.Errorf("demo: residents.json: %w", err)
	}
	return &d, nil
}

// Resident returns the demo resident with the given id.
func (d *Data) Resident(id string) (Resident, error) {
	for _, r := range d.Residents {
		if r.ID == id {
			return r, nil
		}
	}
	return Resident{}, fmt.Errorf("demo: no resident %q (have %s)", id, strings.Join(d.ids(), ", "))
}

func (d *Data) ids() []string {
	var ids []string
	for _, r := range d.Residents {
		ids = append(ids, r.ID)
	}
	return ids
}
