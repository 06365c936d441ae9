package flowtest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

func cardOf(t *testing.T, set *virtualcard.DemoSet, id string) carddata.Raw {
	t.Helper()
	r, err := set.Residents.Resident(id)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := virtualcard.Personalize(set.Authority, r)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestCenterAnswers walks the fake center through its answers and
// refusals, in order (the certificate IDs count the answers).
func TestCenterAnswers(t *testing.T) {
	set := Cards(t)
	c := NewCenter(set)
	tampered := cardOf(t, set, "hanako")
	tampered.FourItems = bytes.Clone(tampered.FourItems)
	tampered.FourItems[len(tampered.FourItems)-1] ^= 1
	tests := []struct {
		name     string
		resident string
		card     *carddata.Raw
		muni     string
		kind     certificate.Kind
		setup    func()
		code     protocol.Code
		ids      []string
		holder   string
	}{
		{name: "domestic", resident: "hanako", muni: "012041", kind: certificate.Domestic, ids: []string{"FD00000001"}, holder: "試験　花子"},
		{name: "overseas", resident: "an", muni: "011002", kind: certificate.Overseas, ids: []string{"FO00000002", "FD00000002"}},
		{name: "no passport", resident: "takasaki", muni: "012041", kind: certificate.Overseas, code: protocol.CodePassportRequired},
		{name: "no record there", resident: "hanako", muni: "011002", kind: certificate.Domestic, code: protocol.CodeNoRecord},
		{name: "tampered card", resident: "hanako", card: &tampered, muni: "012041", kind: certificate.Domestic, code: protocol.CodeCardInvalid},
		{name: "other holder", resident: "hanako", muni: "012041", kind: certificate.Domestic, setup: func() { c.AnswerWithHolder("試験　太郎") },
			ids: []string{"FD00000003"}, holder: "試験　太郎"},
		{name: "refused", resident: "hanako", muni: "012041", kind: certificate.Domestic, setup: func() { c.Refuse(protocol.CodeUnavailable) },
			code: protocol.CodeUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			card := cardOf(t, set, tc.resident)
			if tc.card != nil {
				card = *tc.card
			}
			req := protocol.Issue{RequestID: "0123456789abcdef0123456789abcdef", Municipality: tc.muni, Kind: tc.kind, Copies: 2, Card: card}
			resp, err := c.Issue(context.Background(), req)
			if tc.code != "" {
				var pe *protocol.Error
				if !errors.As(err, &pe) || pe.Code != tc.code {
					t.Fatalf("Issue = %v, want %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.RequestID != req.RequestID || resp.CardDigest != protocol.CardDigest(card) || resp.FeeYen != 2*FeePerCopyYen || len(resp.Certificates) != len(tc.ids) {
				t.Fatalf("response %s, %d certificates, %d yen", resp.RequestID, len(resp.Certificates), resp.FeeYen)
			}
			for i, cert := range resp.Certificates {
				if cert.ID != tc.ids[i] || cert.Issuer.MunicipalityCode != tc.muni {
					t.Errorf("certificate %d: ID %s, issuer %s", i, cert.ID, cert.Issuer.MunicipalityCode)
				}
				if err := cert.Validate(); err != nil {
					t.Errorf("certificate %d: %v", i, err)
				}
				if tc.holder != "" && cert.Holder.Name != tc.holder {
					t.Errorf("certificate %d names the wrong holder", i)
				}
			}
		})
	}
}

func TestCenterHelloAndOutcomes(t *testing.T) {
	c := NewCenter(Cards(t))
	h, ok := c.Hello()
	if !ok || len(h.Municipalities) != 2 || len(h.Kinds) != 2 {
		t.Fatalf("Hello = %+v, %v; want the two participating municipalities and both kinds", h, ok)
	}
	if o := c.LastOutcome(); o != (protocol.Outcome{}) {
		t.Fatalf("outcome before any report: %+v", o)
	}
	for _, o := range []protocol.Outcome{{Outcome: protocol.OutcomePrinted, Copies: 1}, {Outcome: protocol.OutcomeCancelled}} {
		if err := c.ReportOutcome(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	if o := c.LastOutcome(); o.Outcome != protocol.OutcomeCancelled {
		t.Fatalf("last outcome %+v", o)
	}
}
