package server

import (
	"context"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/issuance"
	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// checkingIssuer answers Check itself: no record in 112453, domestic
// only elsewhere (the issuance service's own checks are tested in
// issuance).
type checkingIssuer struct{ Issuer }

func (c checkingIssuer) Check(ctx context.Context, req issuance.CheckRequest) (*protocol.Checked, error) {
	if req.Municipality == "112453" {
		return nil, refusal.New(protocol.CodeNoRecord, nil)
	}
	return &protocol.Checked{RequestID: req.RequestID, CardDigest: protocol.CardDigest(req.Card), Kinds: []string{"domestic"}}, nil
}

// TestHelloListsEveryMunicipality: the participating municipalities with
// their kana and kind, the others apart, and the check feature only when
// the issuer answers checks.
func TestHelloListsEveryMunicipality(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Issuer = checkingIssuer{c.Issuer} })
	if err := h.st.UpsertMunicipality(context.Background(), store.Municipality{Code: "011002", NameJa: "札幌市", NameEn: "Sapporo City",
		AuthorityJa: "札幌市長", AuthorityEn: "Mayor of Sapporo City", Participating: true, Kana: "サッポロシ", Kind: protocol.KindDesignatedCity}); err != nil {
		t.Fatal(err)
	}
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	hl := c.hello
	if len(hl.Municipalities) != 2 || hl.Municipalities[0] != (protocol.Municipality{Code: "011002", NameJa: "札幌市", NameEn: "Sapporo City", Kana: "サッポロシ", Kind: protocol.KindDesignatedCity}) {
		t.Errorf("participating %+v", hl.Municipalities)
	}
	if len(hl.NotParticipating) != 1 || hl.NotParticipating[0].Code != "112453" {
		t.Errorf("not participating %+v, want Fujimino", hl.NotParticipating)
	}
	if !hl.HasFeature(protocol.FeatureCheck) {
		t.Errorf("features %v, want check", hl.Features)
	}

	card := testCard()
	rid := protocol.NewRequestID()
	c.send(protocol.Check{RequestID: rid, Municipality: "012041", Card: card})
	if m, ok := c.read().(protocol.Checked); !ok || m.RequestID != rid || m.CardDigest != protocol.CardDigest(card) {
		t.Errorf("check answered %+v, want checked for %s", m, rid)
	}
	rid = protocol.NewRequestID()
	c.send(protocol.Check{RequestID: rid, Municipality: "112453", Card: card})
	if e, ok := c.read().(*protocol.Error); !ok || e.Code != protocol.CodeNoRecord || e.RequestID != rid {
		t.Errorf("check answered %+v, want no_record for %s", e, rid)
	}
}

// plainIssuer hides the issuance service's Check.
type plainIssuer struct{ Issuer }

// TestCheckNotAnswered: a center whose issuer cannot check says so in the
// answer to the request, and does not announce the feature.
func TestCheckNotAnswered(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Issuer = plainIssuer{c.Issuer} })
	c, _, err := h.dial(t, h.enroll(t, "K1", store.KioskActive), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.hello.HasFeature(protocol.FeatureCheck) {
		t.Error("check announced without a checker")
	}
	rid := protocol.NewRequestID()
	c.send(protocol.Check{RequestID: rid, Municipality: "012041", Card: testCard()})
	if e, ok := c.read().(*protocol.Error); !ok || e.Code != protocol.CodeUnexpectedMessage || e.RequestID != rid {
		t.Errorf("answered %+v", e)
	}
}

// testCard is a set of card files (content does not matter to the fake).
func testCard() protocol.CardFiles {
	return carddata.Raw{MyNumber: []byte{1}, FourItems: []byte{2}, Signature: []byte{3}, Certificate: []byte{4}}
}
