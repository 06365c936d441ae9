package demo

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
)

// ledgerColumns is the header of a municipal ledger export as the center
// imports it (docs/RECORDS.md). The center's own parser is the authority on
// the format; a test there parses what WriteLedger writes.
var ledgerColumns = []string{
	"municipality_code", "my_number", "resident_number", "ticket_number",
	"name", "name_kana", "roman_family", "roman_given", "birth_date", "sex",
	"nationality", "passport_number",
	"dose_number", "vaccination_date", "product_code", "manufacturer", "lot_number", "vaccine_type",
	"counter_only", "deceased_date", "moved_out_date",
}

// ledgerProduct is what a municipal ledger records about a product besides
// its code, in the ledger's own wording; the certificate's printed names
// come from the center's vaccine catalogue, not from here.
type ledgerProduct struct {
	manufacturer, vaccineType string
}

var ledgerProducts = map[string]ledgerProduct{
	"comirnaty":               {"ファイザー", "mRNAワクチン"},
	"comirnaty-bivalent-ba1":  {"ファイザー", "mRNAワクチン(2価:起源株/オミクロン株BA.1)"},
	"comirnaty-bivalent-ba45": {"ファイザー", "mRNAワクチン(2価:起源株/オミクロン株BA.4-5)"},
	"comirnaty-xbb":           {"ファイザー", "mRNAワクチン(1価:オミクロン株XBB.1.5)"},
	"spikevax":                {"モデルナ", "mRNAワクチン"},
	"spikevax-bivalent-ba45":  {"モデルナ", "mRNAワクチン(2価:起源株/オミクロン株BA.4-5)"},
	"nuvaxovid":               {"武田薬品工業(ノババックス)", "組換えタンパクワクチン"},
	"vaxzevria":               {"アストラゼネカ", "ウイルスベクターワクチン"},
	"jcovden":                 {"ヤンセンファーマ", "ウイルスベクターワクチン"},
}

// WriteLedger writes one municipality's ledger export as that
// municipality's system would: the header, then one row per dose of every
// demo resident with a record there. It returns the number of persons.
func (d *Data) WriteLedger(w io.Writer, municipality string) (int, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(ledgerColumns); err != nil {
		return 0, fmt.Errorf("demo: write ledger: %w", err)
	}
	persons := 0
	for _, res := range d.Residents {
		for _, rec := range res.Records {
			if rec.Municipality != municipality {
				continue
			}
			persons++
			for _, dose := range rec.Doses {
				p, ok := ledgerProducts[dose.Product]
				if !ok {
					return 0, fmt.Errorf("demo: resident %s: unknown product code %q", res.ID, dose.Product)
				}
				row := []string{
					rec.Municipality, res.MyNumber, rec.ResidentNumber, rec.TicketNumber,
					res.Name, res.NameKana, res.RomanFamily, res.RomanGiven, res.BirthDate, res.Sex,
					res.Nationality, res.PassportNumber,
					strconv.Itoa(dose.Number), dose.Date, dose.Product, p.manufacturer, dose.Lot, p.vaccineType,
					rec.CounterOnly, rec.DeceasedDate, rec.MovedOutDate,
				}
				if err := cw.Write(row); err != nil {
					return 0, fmt.Errorf("demo: write ledger: %w", err)
				}
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return 0, fmt.Errorf("demo: write ledger: %w", err)
	}
	return persons, nil
}
