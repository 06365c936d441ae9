package store

import (
	"context"
	"fmt"

	"github.com/kioskcert/kioskcert/pkg/lgcode"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// MunicipalityStore keeps the municipalities and whether each offers kiosk
// issuance. The center shows kiosks only participating municipalities and
// refuses requests for any other (brief §2).
type MunicipalityStore interface {
	// UpsertMunicipality adds the municipality or replaces all its fields.
	UpsertMunicipality(ctx context.Context, m Municipality) error
	// Municipality returns the municipality with the given code, or
	// ErrNotFound.
	Municipality(ctx context.Context, code string) (Municipality, error)
	// ListMunicipalities returns all municipalities ordered by code.
	ListMunicipalities(ctx context.Context) ([]Municipality, error)
	// ListParticipating returns the municipalities offering kiosk issuance,
	// ordered by code.
	ListParticipating(ctx context.Context) ([]Municipality, error)
	// SetParticipation changes whether a municipality offers kiosk
	// issuance; ErrNotFound if it is unknown.
	SetParticipation(ctx context.Context, code string, participating bool) error
}

// Municipality is a municipality (市区町村) as the certificate's issuer.
type Municipality struct {
	// Code is the 6-digit local government code with its check digit.
	Code string `json:"code"`
	// NameJa and NameEn are the names printed as issuer (旭川市,
	// Asahikawa City).
	NameJa string `json:"nameJa"`
	NameEn string `json:"nameEn"`
	// AuthorityJa and AuthorityEn are the issuing authority, the mayor
	// (旭川市長, Mayor of Asahikawa City).
	AuthorityJa string `json:"authorityJa"`
	AuthorityEn string `json:"authorityEn"`
	// Participating is true when the municipality offers kiosk issuance.
	Participating bool `json:"participating"`
	// Kana is the name's reading in full-width katakana (アサヒカワシ), as
	// the national list writes it; kiosks sort and index by it. Optional.
	Kana string `json:"kana,omitempty"`
	// Kind is city, designated_city, town, village or special_ward
	// (protocol.Kind…); optional.
	Kind string `json:"kind,omitempty"`
	// CounterJa and CounterEn name the municipal counter (窓口) where
	// residents the kiosk sends away apply instead (旭川市役所 総合庁舎1階
	// 市民課, Asahikawa City Hall, Citizens Division, 1st floor): the
	// kiosk's counter-only message names it. Optional; both or neither, each
	// at most protocol.MaxCounterBytes (it travels in every hello).
	CounterJa string `json:"counterJa,omitempty"`
	CounterEn string `json:"counterEn,omitempty"`
}

// Validate checks the code (with pkg/lgcode) and that every name is present.
func (m *Municipality) Validate() error {
	if err := lgcode.Validate(m.Code); err != nil {
		return fmt.Errorf("%w: municipality.code: %w", ErrInvalid, err)
	}
	for _, f := range []struct{ name, v string }{
		{"municipality.nameJa", m.NameJa},
		{"municipality.nameEn", m.NameEn},
		{"municipality.authorityJa", m.AuthorityJa},
		{"municipality.authorityEn", m.AuthorityEn},
	} {
		if f.v == "" || !isText(f.v, 200) {
			return invalid(f.name, "must be 1-200 bytes of text without control characters")
		}
	}
	if m.Kana != "" && (len(m.Kana) > 200 || !protocol.ValidKana(m.Kana)) {
		return invalid("municipality.kana", "must be at most 200 bytes of full-width katakana")
	}
	if (m.CounterJa == "") != (m.CounterEn == "") {
		return invalid("municipality.counterJa", "the counter's name is given in both languages or in neither")
	}
	for _, f := range []struct{ name, v string }{{"municipality.counterJa", m.CounterJa}, {"municipality.counterEn", m.CounterEn}} {
		if f.v != "" && !isText(f.v, protocol.MaxCounterBytes) {
			return invalid(f.name, fmt.Sprintf("must be 1-%d bytes of text without control characters", protocol.MaxCounterBytes))
		}
	}
	if m.Kind != "" && !protocol.ValidMunicipalityKind(m.Kind) {
		return invalid("municipality.kind", "must be city, designated_city, town, village or special_ward")
	}
	return nil
}
