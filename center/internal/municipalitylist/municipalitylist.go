// Package municipalitylist imports Japan's list of local public bodies
// (assets/municipalities: the shipped copy, or a newer official file the
// operator converted to the same columns) into the center's municipality
// store, so that kiosks can offer every municipality by prefecture and
// kana.
//
// An import reads and checks the whole file before it writes anything. For
// a municipality the store already knows it keeps the participation flag
// (opting in or out is the operator's decision, never the list's) and the
// English and authority names the operator set, unless the Japanese name
// changed (a merger or renaming), when all names are derived afresh. New
// municipalities start as not participating. The six Northern Territories
// villages are skipped: they have codes but nobody can be registered there.
// Municipalities the store holds but the list no longer has (merged away)
// are left as they are and reported, for the operator to disable.
package municipalitylist

import (
	"context"
	"fmt"
	"io"

	"github.com/kioskcert/kioskcert/assets/municipalities"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// Store is the part of store.MunicipalityStore an import uses.
type Store interface {
	ListMunicipalities(ctx context.Context) ([]store.Municipality, error)
	UpsertMunicipality(ctx context.Context, m store.Municipality) error
}

// BatchStore is a Store that can write many municipalities in one
// transaction (boltstore); Import uses it when the store has it, so the
// list lands whole or not at all.
type BatchStore interface {
	UpsertMunicipalities(ctx context.Context, ms []store.Municipality) error
}

// Result says what an import changed.
type Result struct {
	Added     int // new municipalities (not participating)
	Updated   int // known municipalities whose names, kana or kind changed
	Unchanged int
	Skipped   int // without administration (Northern Territories)
	// Missing are codes the store holds that the list does not: left as
	// they are.
	Missing []string
}

// Plan returns the municipalities an import of list writes over existing
// (only those that change), and what it would report. It writes nothing.
func Plan(existing []store.Municipality, list *municipalities.List) ([]store.Municipality, Result) {
	var res Result
	known := make(map[string]store.Municipality, len(existing))
	for _, m := range existing {
		known[m.Code] = m
	}
	inList := make(map[string]bool, len(list.Municipalities))
	var writes []store.Municipality
	for _, b := range list.Municipalities {
		inList[b.Code] = true
		if municipalities.NoAdministration(b.Code) {
			res.Skipped++
			continue
		}
		old, ok := known[b.Code]
		m := store.Municipality{
			Code: b.Code, NameJa: b.Name, NameEn: b.EnglishName(),
			AuthorityJa: b.AuthorityJa(), AuthorityEn: b.AuthorityEn(),
			Kana: b.NameKana, Kind: string(b.Kind),
		}
		switch {
		case !ok:
			res.Added++
			writes = append(writes, m)
			continue
		case old.NameJa == b.Name:
			// The operator's names stand while the municipality keeps its name.
			m.NameEn, m.AuthorityJa, m.AuthorityEn = old.NameEn, old.AuthorityJa, old.AuthorityEn
		}
		m.Participating = old.Participating
		// The counter's names come from the operator, never the list.
		m.CounterJa, m.CounterEn = old.CounterJa, old.CounterEn
		if m == old {
			res.Unchanged++
			continue
		}
		res.Updated++
		writes = append(writes, m)
	}
	for _, m := range existing {
		if !inList[m.Code] {
			res.Missing = append(res.Missing, m.Code)
		}
	}
	return writes, res
}

// Import reads a list from r (municipalities.Parse checks every row),
// plans the changes against st, validates each, and writes them.
func Import(ctx context.Context, st Store, r io.Reader) (Result, error) {
	list, err := municipalities.Parse(r)
	if err != nil {
		return Result{}, fmt.Errorf("municipalitylist: %w", err)
	}
	existing, err := st.ListMunicipalities(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("municipalitylist: list the store's municipalities: %w", err)
	}
	writes, res := Plan(existing, list)
	// Everything is checked before the first write: a bad row must not
	// leave half a list behind.
	for i := range writes {
		if err := writes[i].Validate(); err != nil {
			return Result{}, fmt.Errorf("municipalitylist: %s: %w", writes[i].Code, err)
		}
	}
	if b, ok := st.(BatchStore); ok {
		if err := b.UpsertMunicipalities(ctx, writes); err != nil {
			return Result{}, fmt.Errorf("municipalitylist: write the list (nothing was written): %w", err)
		}
		return res, nil
	}
	for _, m := range writes {
		if err := st.UpsertMunicipality(ctx, m); err != nil {
			return Result{}, fmt.Errorf("municipalitylist: write %s (the municipalities before it are written; run the import again): %w", m.Code, err)
		}
	}
	return res, nil
}
