package shc

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// VerifyOptions says what a card is checked against.
type VerifyOptions struct {
	// Keys is the issuer's key set (required).
	Keys *JWKS
	// Issuer, if set, is the only iss accepted. Set it whenever Keys came
	// from a particular issuer's jwks.json, so a key set cannot vouch for a
	// card claiming another issuer.
	Issuer string
	// Now is the verification time; zero means time.Now().
	Now time.Time
	// CRLs are revocation lists, matched to the card by kid.
	CRLs []*CRL
}

// Card is a verified health card, reduced to what a verifier compares with
// the printed page.
type Card struct {
	Issuer      string
	KeyID       string
	NotBefore   time.Time
	Expires     time.Time // zero if the card has no exp
	Types       []string
	FHIRVersion string
	RID         string
	// RevocationChecked is true when a CRL for the card's key was consulted.
	RevocationChecked bool
	Holder            Holder
	Doses             []Dose
}

// Holder is the Patient of the card.
type Holder struct {
	Family    string
	Given     []string
	BirthDate string
}

// Name joins family and given names with spaces.
func (h Holder) Name() string {
	return strings.Join(append([]string{h.Family}, h.Given...), " ")
}

// Dose is one Immunization of the card.
type Dose struct {
	Status    string
	CVX       string
	Date      string
	Lot       string
	Performer string
}

// Verify checks QR text ("shc:/…") and returns the card it carries.
func Verify(qrText string, opts VerifyOptions) (*Card, error) {
	jws, err := DecodeQR(qrText)
	if err != nil {
		return nil, err
	}
	return VerifyJWS(jws, opts)
}

// VerifyJWS checks a compact JWS and returns the card it carries. The
// signature is checked before the payload is decompressed or parsed.
func VerifyJWS(jws string, opts VerifyOptions) (*Card, error) {
	j, err := ParseJWS(jws)
	if err != nil {
		return nil, err
	}
	pub, jwk, err := opts.Keys.Key(j.Kid)
	if err != nil {
		return nil, err
	}
	if err := j.VerifySignature(pub); err != nil {
		return nil, err
	}
	raw, err := inflate(j.Payload, MaxPayloadSize)
	if err != nil {
		return nil, err
	}
	var p Payload
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	card, err := checkPayload(&p, opts.Issuer, now)
	if err != nil {
		return nil, err
	}
	card.KeyID = j.Kid
	for _, crl := range opts.CRLs {
		if crl == nil || crl.Kid != j.Kid {
			continue
		}
		if crl.Method != "rid" {
			return nil, fmt.Errorf("%w: method must be \"rid\"", ErrCRL)
		}
		if jwk.CRLVersion > crl.Ctr {
			return nil, fmt.Errorf("%w: list ctr %d, key set announces %d; fetch the list again", ErrCRLStale, crl.Ctr, jwk.CRLVersion)
		}
		card.RevocationChecked = true
		if crl.Revoked(card.RID, card.NotBefore) {
			return nil, ErrRevoked
		}
	}
	return card, nil
}

// checkPayload applies the specification's rules to a signed payload.
func checkPayload(p *Payload, wantIssuer string, now time.Time) (*Card, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrPayload}, a...)...)
	}
	if err := checkIssuerURL(p.Iss); err != nil {
		return nil, bad("iss is not an https URL without a trailing slash")
	}
	if wantIssuer != "" && p.Iss != wantIssuer {
		return nil, ErrIssuer
	}
	if p.Nbf <= 0 {
		return nil, bad("nbf is missing")
	}
	if p.NotBefore().After(now.Add(ClockSkew)) {
		return nil, ErrNotYetValid
	}
	if p.Exp != nil && now.After(p.Expires()) {
		return nil, ErrExpired
	}
	if !slices.Contains(p.VC.Type, TypeHealthCard) {
		return nil, bad("vc.type lacks %s", TypeHealthCard)
	}
	if p.VC.RID != "" && !validRID(p.VC.RID) {
		return nil, bad("vc.rid is not 1-%d base64url characters", MaxRIDLen)
	}
	cs := p.VC.CredentialSubject
	if cs.FHIRVersion == "" {
		return nil, bad("fhirVersion is missing")
	}
	b := cs.FHIRBundle
	if b.ResourceType != "Bundle" {
		return nil, bad("fhirBundle is not a Bundle")
	}
	card := &Card{
		Issuer: p.Iss, NotBefore: p.NotBefore(), Expires: p.Expires(),
		Types: p.VC.Type, FHIRVersion: cs.FHIRVersion, RID: p.VC.RID,
	}
	patientURL := ""
	for i, e := range b.Entry {
		r := e.Resource
		switch r.ResourceType {
		case "Patient":
			if patientURL != "" {
				return nil, bad("bundle has more than one Patient")
			}
			if len(r.Name) == 0 {
				return nil, bad("Patient has no name")
			}
			patientURL = e.FullURL
			card.Holder = Holder{Family: r.Name[0].Family, Given: r.Name[0].Given, BirthDate: r.BirthDate}
		case "Immunization":
			if r.VaccineCode == nil {
				return nil, bad("entry %d has no vaccineCode", i)
			}
			d := Dose{Status: r.Status, Date: r.OccurrenceDateTime, Lot: r.LotNumber}
			for _, c := range r.VaccineCode.Coding {
				if c.System == CVXSystem {
					d.CVX = c.Code
				}
			}
			if len(r.Performer) > 0 {
				d.Performer = r.Performer[0].Actor.Display
			}
			card.Doses = append(card.Doses, d)
		}
	}
	if patientURL == "" {
		return nil, bad("bundle has no Patient")
	}
	// Every Immunization must be about the one Patient in the bundle.
	for i, e := range b.Entry {
		if e.Resource.ResourceType == "Immunization" &&
			(e.Resource.Patient == nil || e.Resource.Patient.Reference != patientURL) {
			return nil, bad("entry %d does not refer to the bundle's Patient", i)
		}
	}
	return card, nil
}
