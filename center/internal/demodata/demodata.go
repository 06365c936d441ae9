// Package demodata loads the synthetic demo municipalities and residents
// (assets/demo) into a center through its operator interface, exactly as
// an operator would load real ones: municipalities one by one, each
// municipality's ledger as a CSV import. The demo, the tests and the load
// generator use it; the production issuance-center command does not link
// it, so no demo resident ships in the center.
package demodata

import (
	"bytes"
	"context"
	"fmt"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Load puts the demo municipalities and their records into the center
// behind ops and returns the number of persons imported.
func Load(ctx context.Context, ops admin.Operations, a admin.Actor) (int, error) {
	d, err := demo.Load()
	if err != nil {
		return 0, err
	}
	persons := 0
	for _, m := range d.Municipalities {
		if err := ops.PutMunicipality(ctx, a, store.Municipality{
			Code: m.Code, NameJa: m.NameJa, NameEn: m.NameEn, AuthorityJa: m.AuthorityJa, AuthorityEn: m.AuthorityEn,
			Participating: m.Participating,
		}); err != nil {
			return 0, fmt.Errorf("demodata: municipality %s: %w", m.Code, err)
		}
		var csv bytes.Buffer
		n, err := d.WriteLedger(&csv, m.Code)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			continue
		}
		res, err := ops.ImportRecords(ctx, a, m.Code, admin.ImportOptions{}, &csv)
		if err != nil {
			return 0, fmt.Errorf("demodata: records of %s: %w", m.Code, err)
		}
		persons += res.Persons
	}
	return persons, nil
}
