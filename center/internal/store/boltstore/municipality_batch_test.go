package boltstore

import (
	"context"
	"errors"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// TestUpsertMunicipalities: all or none.
func TestUpsertMunicipalities(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	good := []store.Municipality{
		{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City", AuthorityJa: "旭川市長", AuthorityEn: "Mayor of Asahikawa City", Kana: "アサヒカワシ", Kind: "city"},
		{Code: "011002", NameJa: "札幌市", NameEn: "Sapporo City", AuthorityJa: "札幌市長", AuthorityEn: "Mayor of Sapporo City", Participating: true},
	}
	bad := append([]store.Municipality{{Code: "131016", NameJa: "千代田区", NameEn: "Chiyoda City", AuthorityJa: "千代田区長", AuthorityEn: "Mayor of Chiyoda City"}},
		store.Municipality{Code: "012040", NameJa: "x", NameEn: "x", AuthorityJa: "x", AuthorityEn: "x"})
	if err := s.UpsertMunicipalities(ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a batch with a bad code: %v, want ErrInvalid", err)
	}
	if all, _ := s.ListMunicipalities(ctx); len(all) != 0 {
		t.Fatalf("%d written from a refused batch", len(all))
	}
	if err := s.UpsertMunicipalities(ctx, good); err != nil {
		t.Fatal(err)
	}
	m, err := s.Municipality(ctx, "012041")
	if err != nil || m != good[0] {
		t.Fatalf("Municipality = %+v, %v", m, err)
	}
	if part, _ := s.ListParticipating(ctx); len(part) != 1 || part[0].Code != "011002" {
		t.Errorf("participating %+v", part)
	}
}
