// Package vaccine is the catalogue of COVID-19 vaccine products used in
// Japan's vaccination programme, keyed by the product codes the municipal
// ledgers and the demo data use ("comirnaty", "spikevax-bivalent-ba45", …).
//
// For each product it gives what the printed certificate shows (product name,
// manufacturer and vaccine type in Japanese and English) and the codes the two
// QR payloads need: the CVX code for the SMART Health Card's
// Immunization.vaccineCode, and the ICD-11 vaccine code for the ICAO VDS-NC
// ve.des field. DiseaseICD11 is the ICD-11 code of the disease itself
// (ve.dis).
//
//	p, err := vaccine.Lookup("comirnaty")
//	if errors.Is(err, vaccine.ErrUnknownProduct) { … }
//	fmt.Println(p.Name, p.CVX) // Comirnaty 208
//
// The catalogue is fixed at build time: a product the ministry adds is a code
// change, reviewed like any other, because its codes end up in signed
// credentials.
//
// # Where the codes come from
//
// CVX codes are the CDC's "vaccines administered" code set
// (https://www2a.cdc.gov/vaccines/iis/iisstandards/vaccines.asp?rpt=cvx and
// https://www.cdc.gov/vaccines/programs/iis/COVID-19-related-codes.html, as
// mirrored in the HL7/WHO DDCC CodeSystem-WHODDCCcvx and HL7 terminology).
// CVX codes name a US formulation (strength and volume), not a variant: 300
// is "COVID-19, mRNA, LNP-S, bivalent booster, PF, 30 mcg/0.3 mL dose", 229
// is "…bivalent booster, PF, 50 mcg/0.5 mL or 25mcg/0.25 mL dose", 309 is
// "COVID-19, mRNA, LNP-S, PF, tris-sucrose, 30 mcg/0.3 mL" (the 2023-2024
// formula, XBB.1.5). The original/BA.1 bivalents were never authorised in the
// United States and have no code of their own, so they carry the code of the
// same formulation (300 for Pfizer, 229 for Moderna); the printed product
// name and the VDS-NC nam field still tell them apart.
//
// ICD-11 codes are extension codes from the ICD-11 MMS "COVID-19 vaccines"
// group (XM68M6), as listed in the WHO SMART Immunizations DAK and the WHO
// DDCC value sets: XM0GQ8 "COVID-19 vaccine, RNA based", XM9QW8 "COVID-19
// vaccine, non-replicating viral vector", XM5JC5 "COVID-19 vaccine, virus
// protein subunit". Vaxzevria (ChAdOx1) and Jcovden (Ad26) are both
// non-replicating vectors (CVX 210 and 212 say "vector-nr"), so both use
// XM9QW8. RA01.0 is "COVID-19, virus identified".
package vaccine

import (
	"errors"
	"fmt"
)

// Product is one vaccine product as the certificate names it.
type Product struct {
	// Code is the catalogue key used by ledgers and the certificate model.
	Code string
	// Name is the product (brand) name in Latin script, printed as
	// 製品名 / Product Name and carried in VDS-NC ve.nam.
	Name           string
	ManufacturerJa string // メーカー
	ManufacturerEn string // Manufacturer
	TypeJa         string // ワクチンの種類
	TypeEn         string // Vaccine Type
	// CVX is the CDC CVX code for the SMART Health Card (system
	// http://hl7.org/fhir/sid/cvx).
	CVX string
	// ICD11 is the ICD-11 vaccine code for VDS-NC ve.des.
	ICD11 string
}

// DiseaseICD11 is the ICD-11 code for COVID-19 (VDS-NC ve.dis).
const DiseaseICD11 = "RA01.0"

// GenericICD11 is the ICD-11 code for "COVID-19 vaccines" in general, for a
// product whose type-specific code is not known.
const GenericICD11 = "XM68M6"

// ErrUnknownProduct is returned by Lookup for a code not in the catalogue.
var ErrUnknownProduct = errors.New("vaccine: unknown product code")

// Manufacturer and type labels shared by several products.
const (
	pfizerJa, pfizerEn         = "ファイザー", "Pfizer"
	modernaJa, modernaEn       = "モデルナ", "Moderna"
	takedaJa, takedaEn         = "武田", "Takeda (Novavax)"
	astraJa, astraEn           = "アストラゼネカ", "AstraZeneca"
	janssenJa, janssenEn       = "ヤンセン", "Janssen"
	mrnaJa, mrnaEn             = "mRNAワクチン", "mRNA vaccine"
	proteinJa, proteinEn       = "組換えタンパクワクチン", "recombinant protein vaccine"
	vectorJa, vectorEn         = "ウイルスベクターワクチン", "viral vector vaccine"
	icdRNA, icdVector, icdProt = "XM0GQ8", "XM9QW8", "XM5JC5"
)

// catalogue lists the products in the order they entered the programme.
var catalogue = []Product{
	{"comirnaty", "Comirnaty", pfizerJa, pfizerEn, mrnaJa, mrnaEn, "208", icdRNA},
	{"comirnaty-5-11", "Comirnaty (ages 5-11)", pfizerJa, pfizerEn, mrnaJa, mrnaEn, "218", icdRNA},
	{"comirnaty-6m-4y", "Comirnaty (ages 6 months-4 years)", pfizerJa, pfizerEn, mrnaJa, mrnaEn, "219", icdRNA},
	{"comirnaty-bivalent-ba1", "Comirnaty Original/Omicron BA.1", pfizerJa, pfizerEn, mrnaJa, mrnaEn, "300", icdRNA},
	{"comirnaty-bivalent-ba45", "Comirnaty Original/Omicron BA.4-5", pfizerJa, pfizerEn, mrnaJa, mrnaEn, "300", icdRNA},
	{"comirnaty-xbb", "Comirnaty Omicron XBB.1.5", pfizerJa, pfizerEn, mrnaJa, mrnaEn, "309", icdRNA},
	{"spikevax", "Spikevax", modernaJa, modernaEn, mrnaJa, mrnaEn, "207", icdRNA},
	{"spikevax-bivalent-ba1", "Spikevax Bivalent Original/Omicron BA.1", modernaJa, modernaEn, mrnaJa, mrnaEn, "229", icdRNA},
	{"spikevax-bivalent-ba45", "Spikevax Bivalent Original/Omicron BA.4-5", modernaJa, modernaEn, mrnaJa, mrnaEn, "229", icdRNA},
	{"nuvaxovid", "Nuvaxovid", takedaJa, takedaEn, proteinJa, proteinEn, "211", icdProt},
	{"vaxzevria", "Vaxzevria", astraJa, astraEn, vectorJa, vectorEn, "210", icdVector},
	{"jcovden", "Jcovden", janssenJa, janssenEn, vectorJa, vectorEn, "212", icdVector},
}

var byCode = func() map[string]int {
	m := make(map[string]int, len(catalogue))
	for i, p := range catalogue {
		m[p.Code] = i
	}
	return m
}()

// Lookup returns the product with the given catalogue code. An unknown code
// is an error wrapping ErrUnknownProduct: a ledger entry naming a product the
// catalogue lacks must stop issuance rather than print a guess.
func Lookup(code string) (Product, error) {
	i, ok := byCode[code]
	if !ok {
		return Product{}, fmt.Errorf("%w %q: add it to pkg/vaccine before issuing", ErrUnknownProduct, code)
	}
	return catalogue[i], nil
}

// All returns every product in catalogue order. The slice is a copy.
func All() []Product {
	return append([]Product(nil), catalogue...)
}
