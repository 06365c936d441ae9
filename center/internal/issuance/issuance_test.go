package issuance

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certid"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

func TestSplitName(t *testing.T) {
	tests := []struct{ name, family, given string }{
		{"試験　花子", "試験", "花子"},
		{"試験 花子", "試験", "花子"},
		{"グエン　ヴァン　アン", "グエン", "ヴァン　アン"},
		{"試験　　花子", "試験", "花子"},
		{"試験　花子　", "試験", "花子"},
		{"試験花子", "試験花子", ""},
		{"　試験花子", "　試験花子", ""}, // a leading space splits nothing
		{"試験　", "試験", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			family, given := splitName(tt.name)
			if family != tt.family || given != tt.given {
				t.Fatalf("splitName(%q) = %q, %q; want %q, %q", tt.name, family, given, tt.family, tt.given)
			}
		})
	}
}

func TestNewRequiresDependencies(t *testing.T) {
	f := newFixture(t)
	full := f.svc.cfg
	tests := []struct {
		name  string
		strip func(*Config)
	}{
		{"kiosks", func(c *Config) { c.Kiosks = nil }},
		{"municipalities", func(c *Config) { c.Municipalities = nil }},
		{"records", func(c *Config) { c.Records = nil }},
		{"register", func(c *Config) { c.Register = nil }},
		{"card verifier", func(c *Config) { c.Cards = nil }},
		{"SHC issuer", func(c *Config) { c.SHC = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := full
			tt.strip(&c)
			if _, err := New(c); err == nil || !strings.HasPrefix(err.Error(), "issuance: ") {
				t.Fatalf("New without %s: %v", tt.name, err)
			}
		})
	}
	if got := fmt.Sprint(f.svc.Kinds()); got != "[domestic overseas]" {
		t.Errorf("Kinds with a VDS-NC signer = %s", got)
	}
	if got := fmt.Sprint(newFixture(t, withoutVDS).svc.Kinds()); got != "[domestic]" {
		t.Errorf("Kinds without a VDS-NC signer = %s", got)
	}
	if f.svc.FeePerCopyYen() != 120 {
		t.Errorf("FeePerCopyYen = %d", f.svc.FeePerCopyYen())
	}
}

// TestRefusals drives every refusal Issue can return and checks that each
// is audited with its code, answers the request it refuses, signs nothing
// and, where the refusal comes before step 6, never touches the records.
func TestRefusals(t *testing.T) {
	const chiyoda = "131016" // participating here, but no records region
	tests := []struct {
		name    string
		setup   func(*fixture)
		req     func(t *testing.T, f *fixture) Request
		want    protocol.Code
		lookups int // record lookups expected
	}{
		{"kiosk not enrolled", nil, func(t *testing.T, f *fixture) Request {
			r := request("00000000000000000000000000000001", asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
			r.KioskID = "K-NOBODY"
			return r
		}, protocol.CodeKioskNotAllowed, 0},
		{"kiosk suspended", nil, func(t *testing.T, f *fixture) Request {
			r := request("00000000000000000000000000000002", asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
			r.KioskID = "K-SUSP"
			return r
		}, protocol.CodeKioskNotAllowed, 0},
		{"kiosk revoked", nil, func(t *testing.T, f *fixture) Request {
			r := request("00000000000000000000000000000003", asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
			r.KioskID = "K-REVOKED"
			return r
		}, protocol.CodeKioskNotAllowed, 0},
		{"unknown municipality", nil, func(t *testing.T, f *fixture) Request {
			return request("00000000000000000000000000000004", "131016", certificate.Domestic, f.card(t, "hanako", nil))
		}, protocol.CodeUnknownMunicipality, 0},
		{"municipality not participating", nil, func(t *testing.T, f *fixture) Request {
			return request("00000000000000000000000000000005", fujimino, certificate.Domestic, f.card(t, "hanako", nil))
		}, protocol.CodeNotParticipating, 0},
		{"no copies", nil, func(t *testing.T, f *fixture) Request {
			r := request("00000000000000000000000000000006", asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
			r.Copies = 0
			return r
		}, protocol.CodeTooManyCopies, 0},
		{"too many copies", nil, func(t *testing.T, f *fixture) Request {
			r := request("00000000000000000000000000000007", asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
			r.Copies = protocol.MaxCopies + 1
			return r
		}, protocol.CodeTooManyCopies, 0},
		{"four items tampered", nil, func(t *testing.T, f *fixture) Request {
			c := f.card(t, "hanako", nil)
			c.FourItems[len(c.FourItems)-3] ^= 1
			return request("00000000000000000000000000000008", asahikawa, certificate.Domestic, c)
		}, protocol.CodeCardInvalid, 0},
		{"My Number swapped for another valid one", nil, func(t *testing.T, f *fixture) Request {
			c := f.card(t, "hanako", nil)
			c.MyNumber = carddata.EncodeMyNumber(f.resident(t, "taro").MyNumber)
			return request("00000000000000000000000000000009", asahikawa, certificate.Domestic, c)
		}, protocol.CodeCardInvalid, 0},
		{"signature file truncated", nil, func(t *testing.T, f *fixture) Request {
			c := f.card(t, "hanako", nil)
			c.Signature = c.Signature[:40]
			return request("0000000000000000000000000000000a", asahikawa, certificate.Domestic, c)
		}, protocol.CodeCardInvalid, 0},
		{"card from an untrusted issuing authority", nil, func(t *testing.T, f *fixture) Request {
			c := f.cardBy(t, f.keys.otherAuth, f.resident(t, "hanako"), nil)
			return request("0000000000000000000000000000000b", asahikawa, certificate.Domestic, c)
		}, protocol.CodeCardIssuerUnknown, 0},
		{"signed My Number with a wrong check digit", nil, func(t *testing.T, f *fixture) Request {
			n := f.resident(t, "hanako").MyNumber
			bad := n[:11] + string('0'+(n[11]-'0'+1)%10)
			return request("0000000000000000000000000000000c", asahikawa, certificate.Domestic, f.cardWithNumber(t, "hanako", bad))
		}, protocol.CodeMyNumberInvalid, 0},
		{"records refuse the My Number", func(f *fixture) { f.records.err = records.ErrBadMyNumber }, func(t *testing.T, f *fixture) Request {
			return request("0000000000000000000000000000000d", asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
		}, protocol.CodeMyNumberInvalid, 1},
		{"no record anywhere", nil, func(t *testing.T, f *fixture) Request {
			return request("0000000000000000000000000000000e", asahikawa, certificate.Domestic, f.card(t, "norecord", nil))
		}, protocol.CodeNoRecord, 1},
		{"record only in another municipality", nil, func(t *testing.T, f *fixture) Request {
			return request("0000000000000000000000000000000f", sapporo, certificate.Domestic, f.card(t, "hanako", nil))
		}, protocol.CodeNoRecord, 1},
		{"municipality without a records region", func(f *fixture) {
			f.munis.munis[chiyoda] = store.Municipality{Code: chiyoda, NameJa: "千代田区", NameEn: "Chiyoda City", AuthorityJa: "千代田区長", AuthorityEn: "Mayor of Chiyoda City", Participating: true}
		}, func(t *testing.T, f *fixture) Request {
			return request("00000000000000000000000000000010", chiyoda, certificate.Domestic, f.card(t, "hanako", nil))
		}, protocol.CodeNoRecord, 1},
		{"card holder's name differs from the record", nil, func(t *testing.T, f *fixture) Request {
			c := f.card(t, "hanako", func(fi *carddata.FourItems) { fi.Name = "試験　花代" })
			return request("00000000000000000000000000000011", asahikawa, certificate.Domestic, c)
		}, protocol.CodeHolderMismatch, 1},
		{"card holder's birth date differs from the record", nil, func(t *testing.T, f *fixture) Request {
			c := f.card(t, "hanako", func(fi *carddata.FourItems) { fi.BirthDate = "19850403" })
			return request("00000000000000000000000000000012", asahikawa, certificate.Domestic, c)
		}, protocol.CodeHolderMismatch, 1},
		{"variant kanji folded on the card", nil, func(t *testing.T, f *fixture) Request {
			c := f.card(t, "takasaki", func(fi *carddata.FourItems) { fi.Name = "高崎　花子" })
			return request("00000000000000000000000000000013", asahikawa, certificate.Domestic, c)
		}, protocol.CodeHolderMismatch, 1},
		{"overseas without passport data", nil, func(t *testing.T, f *fixture) Request {
			return request("00000000000000000000000000000014", asahikawa, certificate.Overseas, f.card(t, "takasaki", nil))
		}, protocol.CodePassportRequired, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			req := tt.req(t, f)
			resp, perr := f.issue(context.Background(), req)
			if resp != nil || perr == nil {
				t.Fatalf("Issue = %+v, %v; want refusal %s", resp, perr, tt.want)
			}
			if perr.Code != tt.want || perr.RequestID != req.RequestID || perr.Retryable {
				t.Fatalf("refusal %+v; want code %s for request %s, not retryable", perr, tt.want, req.RequestID)
			}
			if perr.Message.Ja == "" || perr.Message.En == "" {
				t.Error("refusal without resident messages")
			}
			if n := f.shc.count(); n != 0 {
				t.Errorf("%d SMART Health Cards signed for a refused request", n)
			}
			if n, _ := f.vds.result(); n != 0 {
				t.Errorf("%d VDS-NC documents signed for a refused request", n)
			}
			if n := f.records.lookupCount(); n != tt.lookups {
				t.Errorf("%d record lookups, want %d", n, tt.lookups)
			}
			evs := f.audit.all(t)
			if len(evs) != 2 || evs[0].Type != store.EventRequested || evs[1].Type != store.EventRefused {
				t.Fatalf("audit events %+v; want requested then refused", evs)
			}
			for _, e := range evs {
				if e.RequestID != req.RequestID || e.KioskID != req.KioskID || e.Municipality != req.Municipality || e.Kind != req.Kind {
					t.Errorf("event %+v does not name the request", e)
				}
			}
			if evs[1].Result != string(tt.want) || evs[1].CertificateID != "" {
				t.Errorf("refused event %+v; want result %s and no certificate", evs[1], tt.want)
			}
			f.checkNoPersonalData(t, evs, perr.Detail)
		})
	}
}

// TestIssue issues both kinds and checks the response's binding, the
// signed payloads, and the audit trail before and after.
func TestIssue(t *testing.T) {
	tests := []struct {
		resident string
		muni     string
		kind     certificate.Kind
		copies   int
		doses    []int
	}{
		{"hanako", asahikawa, certificate.Domestic, 1, []int{1, 2}},
		{"hanako", asahikawa, certificate.Overseas, 2, []int{1, 2}},
		{"taro", asahikawa, certificate.Domestic, 5, []int{1, 2, 3, 4, 5, 6, 7}},
		{"an", sapporo, certificate.Overseas, 1, []int{1, 2, 3}},
		{"takasaki", asahikawa, certificate.Domestic, 1, []int{1, 2}},
		{"ichiro", sapporo, certificate.Domestic, 1, []int{1, 2}},
		{"ichiro", asahikawa, certificate.Overseas, 1, []int{3, 4}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%s", tt.resident, tt.muni, tt.kind), func(t *testing.T) {
			f := newFixture(t)
			r := f.resident(t, tt.resident)
			card := f.card(t, tt.resident, nil)
			req := request(protocol.NewRequestID(), tt.muni, tt.kind, card)
			req.Copies = tt.copies
			resp, perr := f.issue(context.Background(), req)
			if perr != nil {
				t.Fatalf("Issue: %v", perr)
			}
			if resp.RequestID != req.RequestID || resp.CardDigest != protocol.CardDigest(card) || resp.Copies != tt.copies || resp.FeeYen != 120*tt.copies || resp.Replayed {
				t.Fatalf("response not bound to its request: %+v", resp)
			}
			kinds := []certificate.Kind{certificate.Domestic}
			if tt.kind == certificate.Overseas {
				kinds = []certificate.Kind{certificate.Overseas, certificate.Domestic}
			}
			if len(resp.Certificates) != len(kinds) {
				t.Fatalf("%d certificates, want %d", len(resp.Certificates), len(kinds))
			}
			jwks, err := shc.NewJWKS(&f.keys.shcKey.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]bool{}
			for i, c := range resp.Certificates {
				if c.Kind != kinds[i] {
					t.Fatalf("certificate %d is %s, want %s", i, c.Kind, kinds[i])
				}
				if err := c.Validate(); err != nil {
					t.Fatalf("certificate %d: %v", i, err)
				}
				if err := certid.Validate(c.ID); err != nil || ids[c.ID] {
					t.Fatalf("certificate ID %q: %v (or repeated)", c.ID, err)
				}
				ids[c.ID] = true
				if c.IssueDate != "2024-04-01" || c.Issuer.MunicipalityCode != tt.muni {
					t.Errorf("issue date %s, issuer %s", c.IssueDate, c.Issuer.MunicipalityCode)
				}
				if c.Holder.Name != r.Name || c.Holder.BirthDate != r.BirthDate {
					t.Errorf("holder %q %s is not the card's", c.Holder.Name, c.Holder.BirthDate)
				}
				var got []int
				for _, d := range c.Doses {
					got = append(got, d.Number)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.doses) {
					t.Errorf("doses %v, want %v", got, tt.doses)
				}
				verified, err := shc.Verify(c.SHC, shc.VerifyOptions{Keys: jwks, Issuer: testIssuerURL, Now: testNow})
				if err != nil {
					t.Fatalf("SMART Health Card of %s: %v", c.Kind, err)
				}
				if verified.Holder.BirthDate != r.BirthDate || len(verified.Doses) != len(tt.doses) {
					t.Errorf("SMART Health Card content: %+v", verified.Holder)
				}
				if want := shc.RID(f.keys.ridSecret, jwks.Keys[0].Kid, c.ID); verified.RID != want {
					t.Errorf("rid %q, want %q (revocation would miss this card)", verified.RID, want)
				}
				if c.Kind == certificate.Overseas {
					v, err := vdsnc.Verify([]byte(c.VDSNC), vdsnc.VerifyOptions{CSCAs: []*x509.Certificate{f.keys.cscaCert}, Now: testNow})
					if err != nil {
						t.Fatalf("VDS-NC: %v", err)
					}
					if v.Data.Msg.UVCI != c.ID || v.Data.Msg.Pid.I != r.PassportNumber {
						t.Errorf("VDS-NC uvci %q passport %q; certificate %q", v.Data.Msg.UVCI, v.Data.Msg.Pid.I, c.ID)
					}
				} else if c.Holder.PassportNumber != "" || c.Holder.RomanFamily != "" {
					t.Error("the domestic certificate carries passport data")
				}
			}
			if n := f.shc.count(); n != len(kinds) {
				t.Errorf("%d SMART Health Cards signed, want %d", n, len(kinds))
			}

			// Audit: requested before, one issued per certificate after.
			evs := f.audit.all(t)
			if len(evs) != 1+len(kinds) || evs[0].Type != store.EventRequested {
				t.Fatalf("audit events %+v", evs)
			}
			if e := evs[0]; e.Kind != tt.kind || e.Copies != tt.copies || e.CertificateID != "" || e.Result != "" {
				t.Errorf("requested event %+v", e)
			}
			for i, e := range evs[1:] {
				c := resp.Certificates[i]
				if e.Type != store.EventIssued || e.Result != "ok" || e.CertificateID != c.ID || e.Kind != c.Kind || e.Copies != tt.copies {
					t.Errorf("issued event %+v for certificate %s %s", e, c.Kind, c.ID)
				}
			}
			for _, e := range evs {
				if e.RequestID != req.RequestID || e.KioskID != goodKiosk || e.Municipality != tt.muni {
					t.Errorf("event %+v does not name the request", e)
				}
				// The store code is known once the kiosk was looked up.
				if e.Type == store.EventIssued && e.StoreCode != "S-"+goodKiosk {
					t.Errorf("issued event %+v lacks the store code", e)
				}
			}
			f.checkNoPersonalData(t, evs, "")
		})
	}
}

// TestInternalErrors: a failing dependency ends as internal_error (or
// unavailable when the deadline passed), is audited as failed and hands
// out no certificate.
func TestInternalErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	tests := []struct {
		name   string
		setup  func(*fixture)
		ctx    func() (context.Context, context.CancelFunc)
		want   protocol.Code
		signed int // SMART Health Cards signed before the failure
		events []store.EventType
	}{
		{"kiosk registry fails", func(f *fixture) { f.kiosks.err = boom }, nil, protocol.CodeInternal, 0,
			[]store.EventType{store.EventRequested, store.EventFailed}},
		{"municipality registry fails", func(f *fixture) { f.munis.err = boom }, nil, protocol.CodeInternal, 0,
			[]store.EventType{store.EventRequested, store.EventFailed}},
		{"records fail", func(f *fixture) { f.records.err = boom }, nil, protocol.CodeInternal, 0,
			[]store.EventType{store.EventRequested, store.EventFailed}},
		{"records fail after the deadline", func(f *fixture) { f.records.err = context.DeadlineExceeded }, func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		}, protocol.CodeUnavailable, 0, []store.EventType{store.EventRequested, store.EventFailed}},
		{"audit of the request fails", func(f *fixture) { f.audit.failOn = store.EventRequested }, nil, protocol.CodeUnavailable, 0,
			nil},
		{"audit of the issuance fails", func(f *fixture) { f.audit.failOn = store.EventIssued }, nil, protocol.CodeUnavailable, 1,
			[]store.EventType{store.EventRequested, store.EventFailed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tt.setup(f)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			req := request(protocol.NewRequestID(), asahikawa, certificate.Domestic, f.card(t, "hanako", nil))
			resp, perr := f.issue(ctx, req)
			if resp != nil || perr == nil || perr.Code != tt.want || !perr.Retryable || perr.RequestID != req.RequestID {
				t.Fatalf("Issue = %+v, %+v; want retryable %s", resp, perr, tt.want)
			}
			if perr.Detail != "" {
				t.Errorf("internal cause %q sent to the kiosk", perr.Detail)
			}
			if n := f.shc.count(); n != tt.signed {
				t.Errorf("%d SMART Health Cards signed, want %d", n, tt.signed)
			}
			evs := f.audit.all(t)
			var types []store.EventType
			for _, e := range evs {
				types = append(types, e.Type)
			}
			if fmt.Sprint(types) != fmt.Sprint(tt.events) {
				t.Fatalf("audit events %v, want %v", types, tt.events)
			}
			if len(evs) > 0 {
				if last := evs[len(evs)-1]; last.Type != store.EventFailed || last.CertificateID != "" {
					t.Errorf("failed event %+v", last)
				}
			}
			if !strings.Contains(f.log.String(), `"msg":"issuance failed"`) {
				t.Error("the failure was not logged for operators")
			}
			f.checkNoPersonalData(t, evs, "")
		})
	}
}

// TestLintBeforeSigning: a record that would make a certificate break a
// content rule is refused at lint, so nothing is signed at all.
func TestLintBeforeSigning(t *testing.T) {
	tests := []struct {
		name string
		kind certificate.Kind
		edit func(*records.Record)
	}{
		{"lot longer than 20", certificate.Domestic, func(r *records.Record) { r.Doses[0].Lot = strings.Repeat("L", 21) }},
		{"lot longer than 20, overseas", certificate.Overseas, func(r *records.Record) { r.Doses[1].Lot = strings.Repeat("9", 21) }},
		{"doses out of order", certificate.Domestic, func(r *records.Record) { r.Doses[0].Number, r.Doses[1].Number = 2, 1 }},
		{"eleven doses", certificate.Domestic, func(r *records.Record) {
			for len(r.Doses) < certificate.MaxDoses+1 {
				d := r.Doses[len(r.Doses)-1]
				d.Number++
				r.Doses = append(r.Doses, d)
			}
		}},
		{"passport number longer than 11", certificate.Overseas, func(r *records.Record) { r.PassportNumber = "TK12345678901" }},
		{"romanized name not ASCII", certificate.Overseas, func(r *records.Record) { r.RomanFamily = "SHİKEN" }},
		{"product not in the catalogue", certificate.Domestic, func(r *records.Record) { r.Doses[0].Product = "sputnik" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.resident(t, "hanako")
			rec := f.records.regions[asahikawa][r.MyNumber]
			rec.Doses = append([]records.Dose(nil), rec.Doses...)
			tt.edit(&rec)
			f.records.put(r.MyNumber, rec)

			req := request(protocol.NewRequestID(), asahikawa, tt.kind, f.card(t, "hanako", nil))
			resp, perr := f.issue(context.Background(), req)
			if resp != nil || perr == nil || perr.Code != protocol.CodeInternal {
				t.Fatalf("Issue = %+v, %+v; want internal_error", resp, perr)
			}
			if n := f.shc.count(); n != 0 {
				t.Errorf("%d SMART Health Cards signed for a certificate that failed lint", n)
			}
			if n, _ := f.vds.result(); n != 0 {
				t.Errorf("%d VDS-NC documents signed for a certificate that failed lint", n)
			}
			evs := f.audit.all(t)
			if len(evs) != 2 || evs[1].Type != store.EventFailed || evs[1].Result != string(protocol.CodeInternal) {
				t.Fatalf("audit events %+v; want requested then failed", evs)
			}
			if log := f.log.String(); !strings.Contains(log, "issuance: ") {
				t.Errorf("log does not say what failed: %s", log)
			}
			f.checkNoPersonalData(t, evs, "")
		})
	}
}

// TestVDSTooLarge: a record whose VDS-NC passes the field rules but does not
// fit one QR code at error correction M (ten doses of ten products, 20-
// character lots, a 39-character travel name) fails when the VDS-NC is
// signed. The overseas SMART Health Card was signed once and is discarded;
// the domestic one is never signed; the result is internal_error.
func TestVDSTooLarge(t *testing.T) {
	f := newFixture(t)
	r := f.resident(t, "taro")
	rec := f.records.regions[asahikawa][r.MyNumber]
	all := vaccine.All()
	rec.Doses = nil
	for i := 0; i < certificate.MaxDoses; i++ {
		rec.Doses = append(rec.Doses, records.Dose{
			Number: i + 1, Date: fmt.Sprintf("2021-%02d-01", i+1), Product: all[i%len(all)].Code,
			Manufacturer: "テスト製薬", Lot: strings.Repeat("L", certificate.MaxLotLen), VaccineType: "mRNAワクチン",
		})
	}
	rec.RomanFamily, rec.RomanGiven = strings.Repeat("F", 19), strings.Repeat("G", 19)
	f.records.put(r.MyNumber, rec)

	req := request(protocol.NewRequestID(), asahikawa, certificate.Overseas, f.card(t, "taro", nil))
	resp, perr := f.issue(context.Background(), req)
	if resp != nil || perr == nil || perr.Code != protocol.CodeInternal {
		t.Fatalf("Issue = %+v, %+v; want internal_error", resp, perr)
	}
	calls, err := f.vds.result()
	if calls != 1 || !errors.Is(err, vdsnc.ErrTooLarge) {
		t.Fatalf("VDS-NC signer called %d times, last error %v; want once with ErrTooLarge", calls, err)
	}
	if n := f.shc.count(); n != 1 {
		t.Errorf("SMART Health Card signed %d times, want once (the overseas one, before the VDS-NC)", n)
	}
	evs := f.audit.all(t)
	if len(evs) != 2 || evs[0].Type != store.EventRequested || evs[1].Type != store.EventFailed || evs[1].Result != string(protocol.CodeInternal) {
		t.Fatalf("audit events %+v; want requested then failed", evs)
	}
	for _, e := range evs {
		if e.Type == store.EventIssued {
			t.Fatal("an issued event for a certificate that was not handed out")
		}
	}
	if !strings.Contains(f.log.String(), "document too large") {
		t.Error("the log does not say the VDS-NC was too large")
	}
}

// TestConcurrentIssue runs issuances in parallel on one Service: each gets
// its own certificate IDs and the audit log accounts for every one.
func TestConcurrentIssue(t *testing.T) {
	f := newFixture(t)
	cards := map[string]carddata.Raw{"hanako": f.card(t, "hanako", nil), "taro": f.card(t, "taro", nil)}
	const n = 16
	type result struct {
		req  Request
		resp *protocol.CertificateResponse
		err  *protocol.Error
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		who := []string{"hanako", "taro"}[i%2]
		go func() {
			req := request(protocol.NewRequestID(), asahikawa, certificate.Domestic, cards[who])
			resp, err := f.issue(context.Background(), req)
			results <- result{req, resp, err}
		}()
	}
	issued := map[string]string{} // certificate ID → request ID
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil {
			t.Fatalf("Issue: %v", r.err)
		}
		if r.resp.RequestID != r.req.RequestID || r.resp.CardDigest != protocol.CardDigest(r.req.Card) {
			t.Fatal("response bound to another request")
		}
		id := r.resp.Certificates[0].ID
		if _, dup := issued[id]; dup {
			t.Fatalf("certificate ID %s issued twice", id)
		}
		issued[id] = r.req.RequestID
	}
	count := 0
	for _, e := range f.audit.all(t) {
		if e.Type == store.EventIssued {
			count++
			if issued[e.CertificateID] != e.RequestID {
				t.Errorf("issued event for %s names request %s", e.CertificateID, e.RequestID)
			}
		}
	}
	if count != n {
		t.Errorf("%d issued events for %d certificates", count, n)
	}
}

// checkNoPersonalData scans audit events, a refusal's detail and the log
// for every demo resident's identifying values.
func (f *fixture) checkNoPersonalData(t *testing.T, evs []store.Event, detail string) {
	t.Helper()
	b, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	haystacks := map[string]string{"audit events": string(b), "refusal detail": detail, "log": f.log.String()}
	for _, r := range f.demo.Residents {
		for _, needle := range personalData(r) {
			if len(needle) < 4 {
				continue // too short to tell from an identifier
			}
			for where, h := range haystacks {
				if strings.Contains(h, needle) {
					t.Errorf("%s carry personal data of demo resident %s", where, r.ID)
				}
			}
		}
	}
}

// TestHolderSexMismatch: a card saying one sex for a record saying another
// is refused with its own code (the card's holder and the record's
// disagree though name and birth date match).
func TestHolderSexMismatch(t *testing.T) {
	f := newFixture(t)
	c := f.card(t, "hanako", func(fi *carddata.FourItems) { fi.Sex = '1' })
	req := request(protocol.NewRequestID(), asahikawa, certificate.Domestic, c)
	if _, perr := f.issue(context.Background(), req); perr == nil || perr.Code != protocol.CodeHolderSexMismatch {
		t.Fatalf("card sex 1 for a record with sex 2: %v", perr)
	}
	if n := f.shc.count(); n != 0 {
		t.Errorf("%d cards signed", n)
	}
	// A record whose sex is not an ISO/IEC 5218 code matches no card.
	r := f.resident(t, "hanako")
	rec := f.records.regions[asahikawa][r.MyNumber]
	rec.Sex = "7"
	f.records.put(r.MyNumber, rec)
	req = request(protocol.NewRequestID(), asahikawa, certificate.Overseas, f.card(t, "hanako", nil))
	if _, perr := f.issue(context.Background(), req); perr == nil || perr.Code != protocol.CodeHolderSexMismatch {
		t.Fatalf("record with sex 7: %v", perr)
	}
}

// TestCounterOnly: every reason a municipality sends a resident to its
// counter gets the same public answer at the same step — no certificate
// signed, no record detail on the wire — and the audit event records the
// reason for the municipality.
func TestCounterOnly(t *testing.T) {
	tests := []struct {
		name      string
		flags     records.Flags
		cardName  string
		wantEvent store.EventType
	}{
		{"support measure", records.Flags{CounterOnly: records.CounterSupportMeasure}, "", "counter_only.support_measure"},
		{"alias on record", records.Flags{CounterOnly: records.CounterAliasOnRecord}, "", "counter_only.alias_on_record"},
		{"travel document", records.Flags{CounterOnly: records.CounterTravelDocument}, "", "counter_only.travel_document"},
		{"staff review", records.Flags{CounterOnly: records.CounterStaffReview}, "", "counter_only.staff_review"},
		{"deceased", records.Flags{DeceasedOn: "2023-01-05"}, "", "counter_only.deceased"},
		{"former name on the card", records.Flags{}, "試験　花子［鈴木］", "counter_only.alias_on_card"},
	}
	var answers []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.resident(t, "hanako")
			rec := f.records.regions[asahikawa][r.MyNumber]
			rec.Flags = tt.flags
			f.records.put(r.MyNumber, rec)
			card := f.card(t, "hanako", func(fi *carddata.FourItems) {
				if tt.cardName != "" {
					fi.Name = tt.cardName
				}
			})
			req := request(protocol.NewRequestID(), asahikawa, certificate.Domestic, card)
			resp, perr := f.issue(context.Background(), req)
			if resp != nil || perr == nil || perr.Code != protocol.CodeCounterOnly || perr.Detail != "" || perr.Retryable {
				t.Fatalf("Issue = %+v, %+v; want counter_only without detail", resp, perr)
			}
			b, _ := json.Marshal(perr)
			answers = append(answers, strings.Replace(string(b), req.RequestID, "R", 1))
			if f.shc.count() != 0 {
				t.Error("signed for a resident sent to the counter")
			}
			evs := f.audit.all(t)
			if got := eventTypes(evs); got != "[requested "+string(tt.wantEvent)+"]" {
				t.Fatalf("events %s, want requested then %s", got, tt.wantEvent)
			}
			// The early check answers the same, at the same point, and
			// records the same event: a kiosk stops at this refusal.
			checkID := protocol.NewRequestID()
			_, err := f.svc.Check(context.Background(), CheckRequest{KioskID: goodKiosk,
				Check: protocol.Check{RequestID: checkID, Municipality: asahikawa, Card: card}})
			if code, _ := refusal.CodeOf(err); code != protocol.CodeCounterOnly {
				t.Fatalf("Check: %v, want counter_only", err)
			}
			evs = f.audit.all(t)
			if got := eventTypes(evs); got != "[requested "+string(tt.wantEvent)+" "+string(tt.wantEvent)+"]" {
				t.Fatalf("events after Check %s, want a second %s", got, tt.wantEvent)
			}
			if e := evs[2]; e.RequestID != checkID || e.KioskID != goodKiosk || e.Municipality != asahikawa || e.Result != "counter_only" {
				t.Errorf("Check's event %+v", e)
			}
			f.checkNoPersonalData(t, evs, perr.Detail)
		})
	}
	for _, a := range answers[1:] {
		if a != answers[0] {
			t.Fatalf("the kiosk can tell the reasons apart:\n%s\n%s", answers[0], a)
		}
	}
	t.Run("moved out", func(t *testing.T) {
		f := newFixture(t)
		r := f.resident(t, "taro")
		rec := f.records.regions[asahikawa][r.MyNumber]
		rec.Flags = records.Flags{MovedOutOn: rec.Doses[2].Date}
		f.records.put(r.MyNumber, rec)
		resp, perr := f.issue(context.Background(), request(protocol.NewRequestID(), asahikawa, certificate.Domestic, f.card(t, "taro", nil)))
		if perr != nil {
			t.Fatalf("a moved-out resident's doses from while registered: %v", perr)
		}
		if n := len(resp.Certificates[0].Doses); n != 3 {
			t.Errorf("%d doses certified, want the 3 given before the move", n)
		}
	})
}

// TestCheckCounterOnlyAuditFails: a counter_only refusal the municipality
// cannot count is not given; the kiosk may ask again.
func TestCheckCounterOnlyAuditFails(t *testing.T) {
	f := newFixture(t)
	r := f.resident(t, "hanako")
	rec := f.records.regions[asahikawa][r.MyNumber]
	rec.Flags = records.Flags{CounterOnly: records.CounterSupportMeasure}
	f.records.put(r.MyNumber, rec)
	f.audit.mu.Lock()
	f.audit.failOn = "counter_only.support_measure"
	f.audit.mu.Unlock()
	_, err := f.svc.Check(context.Background(), CheckRequest{KioskID: goodKiosk,
		Check: protocol.Check{RequestID: protocol.NewRequestID(), Municipality: asahikawa, Card: f.card(t, "hanako", nil)}})
	if code, _ := refusal.CodeOf(err); code != protocol.CodeUnavailable {
		t.Fatalf("Check with the audit log failing: %v, want unavailable", err)
	}
	if evs := f.audit.all(t); len(evs) != 0 {
		t.Errorf("events %v", eventTypes(evs))
	}
}
