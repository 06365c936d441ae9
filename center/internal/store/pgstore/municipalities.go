package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

const municipalityColumns = `code, name_ja, name_en, authority_ja, authority_en, participating, kana, kind, counter_ja, counter_en`

func scanMunicipality(row pgx.Row, m *store.Municipality) error {
	return row.Scan(&m.Code, &m.NameJa, &m.NameEn, &m.AuthorityJa, &m.AuthorityEn, &m.Participating, &m.Kana, &m.Kind, &m.CounterJa, &m.CounterEn)
}

// UpsertMunicipality implements store.MunicipalityStore.
func (s *Store) UpsertMunicipality(ctx context.Context, m store.Municipality) error {
	if err := m.Validate(); err != nil {
		return err
	}
	return s.tx(ctx, "upsert municipality", func(tx pgx.Tx) error { return upsertMunicipality(ctx, tx, m) })
}

// UpsertMunicipalities writes ms in one transaction, all or none (the
// national list's import, municipalitylist).
func (s *Store) UpsertMunicipalities(ctx context.Context, ms []store.Municipality) error {
	for i := range ms {
		if err := ms[i].Validate(); err != nil {
			return err
		}
	}
	return s.tx(ctx, "upsert municipalities", func(tx pgx.Tx) error {
		for _, m := range ms {
			if err := upsertMunicipality(ctx, tx, m); err != nil {
				return err
			}
		}
		return nil
	})
}

func upsertMunicipality(ctx context.Context, tx pgx.Tx, m store.Municipality) error {
	_, err := tx.Exec(ctx, `INSERT INTO municipalities (`+municipalityColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (code) DO UPDATE SET name_ja = excluded.name_ja, name_en = excluded.name_en,
			authority_ja = excluded.authority_ja, authority_en = excluded.authority_en, participating = excluded.participating,
			kana = excluded.kana, kind = excluded.kind,
			counter_ja = excluded.counter_ja, counter_en = excluded.counter_en`,
		m.Code, m.NameJa, m.NameEn, m.AuthorityJa, m.AuthorityEn, m.Participating, m.Kana, m.Kind, m.CounterJa, m.CounterEn)
	if err != nil {
		return err
	}
	return notify(ctx, tx, store.ChangeMunicipality, m.Code)
}

// Municipality implements store.MunicipalityStore.
func (s *Store) Municipality(ctx context.Context, code string) (store.Municipality, error) {
	var m store.Municipality
	if err := s.check(ctx); err != nil {
		return m, err
	}
	err := scanMunicipality(s.pool.QueryRow(ctx, `SELECT `+municipalityColumns+` FROM municipalities WHERE code = $1`, code), &m)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Municipality{}, fmt.Errorf("%w: municipality %q", store.ErrNotFound, code)
	}
	return m, s.result(ctx, "read municipality", err)
}

// ListMunicipalities implements store.MunicipalityStore.
func (s *Store) ListMunicipalities(ctx context.Context) ([]store.Municipality, error) {
	return s.listMunicipalities(ctx, "")
}

// ListParticipating implements store.MunicipalityStore.
func (s *Store) ListParticipating(ctx context.Context) ([]store.Municipality, error) {
	return s.listMunicipalities(ctx, "WHERE participating")
}

func (s *Store) listMunicipalities(ctx context.Context, where string) ([]store.Municipality, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+municipalityColumns+` FROM municipalities `+where+` ORDER BY code`)
	if err != nil {
		return nil, s.result(ctx, "list municipalities", err)
	}
	out, err := collect(ctx, rows, func(r pgx.Rows, m *store.Municipality) error { return scanMunicipality(r, m) })
	return out, s.result(ctx, "list municipalities", err)
}

// SetParticipation implements store.MunicipalityStore.
func (s *Store) SetParticipation(ctx context.Context, code string, participating bool) error {
	return s.tx(ctx, "set participation", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE municipalities SET participating = $2 WHERE code = $1`, code, participating)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: municipality %q", store.ErrNotFound, code)
		}
		return notify(ctx, tx, store.ChangeMunicipality, code)
	})
}
