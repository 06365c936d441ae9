// Package demoledger turns the synthetic demo residents (assets/demo) into
// the municipal ledger entries and CSV the records component imports. Tests
// and benchmarks use it; the production center does not link it, so no
// demo resident ships in the center.
package demoledger

import (
	"fmt"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/records"
)

// demoProduct is what a municipal ledger records about a product besides
// its code. The values are the ledger's own wording; the certificate's
// printed names come from the center's vaccine catalogue, not from here.
type demoProduct struct {
	manufacturer, vaccineType string
}

// demoProducts are the product codes of assets/demo/residents.json. The
// shared catalogue (pkg/vaccine) is the authority on codes; this list only
// lets the demo ledger be written and, by default, validated.
var demoProducts = map[string]demoProduct{
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

// KnownDemoProduct reports whether code is one of the demo's product codes.
func KnownDemoProduct(code string) bool {
	_, ok := demoProducts[code]
	return ok
}

// FromDemo returns the ledger of one municipality as the demo data holds
// it: one entry per demo resident with a record there.
func FromDemo(d *demo.Data, municipality string) ([]records.Entry, error) {
	var entries []records.Entry
	for _, res := range d.Residents {
		for _, rec := range res.Records {
			if rec.Municipality != municipality {
				continue
			}
			r := records.Record{
				Municipality:   rec.Municipality,
				ResidentNumber: rec.ResidentNumber,
				TicketNumber:   rec.TicketNumber,
				Name:           res.Name,
				NameKana:       res.NameKana,
				RomanFamily:    res.RomanFamily,
				RomanGiven:     res.RomanGiven,
				BirthDate:      res.BirthDate,
				Sex:            res.Sex,
				Nationality:    res.Nationality,
				PassportNumber: res.PassportNumber,
			}
			reason, err := records.ParseCounterReason(rec.CounterOnly)
			if err != nil {
				return nil, fmt.Errorf("ledgercsv: demo resident %s: %w", res.ID, err)
			}
			r.Flags = records.Flags{CounterOnly: reason, DeceasedOn: rec.DeceasedDate, MovedOutOn: rec.MovedOutDate}
			for _, dose := range rec.Doses {
				p, ok := demoProducts[dose.Product]
				if !ok {
					return nil, fmt.Errorf("ledgercsv: demo resident %s: unknown product code %q", res.ID, dose.Product)
				}
				r.Doses = append(r.Doses, records.Dose{
					Number: dose.Number, Date: dose.Date, Product: dose.Product,
					Manufacturer: p.manufacturer, Lot: dose.Lot, VaccineType: p.vaccineType,
				})
			}
			entries = append(entries, records.Entry{MyNumber: res.MyNumber, Record: r})
		}
	}
	return entries, nil
}
