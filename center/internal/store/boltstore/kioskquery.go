package boltstore

import (
	"bytes"
	"context"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// kioskSummary is what a kiosk query filters on, kept beside the kiosk's
// record so a query over tens of thousands of kiosks decodes no JSON.
type kioskSummary struct {
	status, chain, prefecture, region string
}

func putKioskSummary(tx *bolt.Tx, k *store.Kiosk) error {
	v := []byte(string(k.Status) + "\x00" + k.Chain + "\x00" + k.Prefecture + "\x00" + k.Region)
	return tx.Bucket(bucketKioskSummary).Put([]byte(k.ID), v)
}

func parseKioskSummary(v []byte) kioskSummary {
	parts := bytes.SplitN(v, []byte{0}, 4)
	for len(parts) < 4 {
		parts = append(parts, nil)
	}
	return kioskSummary{string(parts[0]), string(parts[1]), string(parts[2]), string(parts[3])}
}

// QueryKiosks implements store.KioskStore: it scans the summaries in ID
// order (from the prefix, or only the listed IDs), counts every match and
// decodes only the page's kiosks.
func (s *Store) QueryKiosks(ctx context.Context, q store.KioskQuery) (store.KioskPage, error) {
	if err := q.Validate(); err != nil {
		return store.KioskPage{}, err
	}
	limit := q.EffectiveLimit()
	var page store.KioskPage
	err := s.view(ctx, func(tx *bolt.Tx) error {
		sums := tx.Bucket(bucketKioskSummary)
		var ids []string
		match := func(id []byte, v []byte) bool {
			if !bytes.HasPrefix(id, []byte(q.IDPrefix)) {
				return false
			}
			sum := parseKioskSummary(v)
			return (q.Chain == "" || sum.chain == q.Chain) && (q.Prefecture == "" || sum.prefecture == q.Prefecture) &&
				(q.Region == "" || sum.region == q.Region) && (q.Status == "" || sum.status == string(q.Status))
		}
		take := func(id []byte) {
			page.Total++
			if string(id) <= q.After && q.After != "" {
				return
			}
			if len(ids) < limit {
				ids = append(ids, string(id))
			} else {
				page.More = true
			}
		}
		n := 0
		if len(q.IDs) > 0 {
			sorted := slices.Clone(q.IDs)
			slices.Sort(sorted)
			for _, id := range slices.Compact(sorted) {
				if n++; n%iterCheckEvery == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				if v := sums.Get([]byte(id)); v != nil && match([]byte(id), v) {
					take([]byte(id))
				}
			}
		} else {
			c := sums.Cursor()
			for k, v := c.Seek([]byte(q.IDPrefix)); k != nil && bytes.HasPrefix(k, []byte(q.IDPrefix)); k, v = c.Next() {
				if n++; n%iterCheckEvery == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				if match(k, v) {
					take(k)
				}
			}
		}
		page.Kiosks = make([]store.Kiosk, len(ids))
		for i, id := range ids {
			if err := getKiosk(tx, id, &page.Kiosks[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return page, err
}
