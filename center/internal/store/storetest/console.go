package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// The operations console's queries: audit search with paging, settlement
// counts, kiosk pages, operator accounts and API tokens.

func testAuditSearch(t *testing.T, s store.Store) {
	ctx := context.Background()
	type ev = store.Event
	in := []ev{
		{Time: base.Add(1 * time.Minute), Type: store.EventIssued, KioskID: "kiosk-a", Municipality: "012041", Kind: certificate.Domestic, Copies: 1, CertificateID: "CERT00000001", RequestID: "r1", Result: "ok"},
		{Time: base.Add(2 * time.Minute), Type: store.EventRefused, KioskID: "kiosk-b", Municipality: "011002", RequestID: "r2", Result: "no_record"},
		{Time: base.Add(3 * time.Minute), Type: store.EventParticipation, Municipality: "012041", Result: "not_participating", Operator: "op-tanaka", Source: "192.0.2.1"},
		{Time: base.Add(3 * time.Minute), Type: store.EventKeyRotated, Result: "ok", Operator: "op-suzuki", Source: "local", Object: "kid-new"},
		{Time: base.Add(4 * time.Minute), Type: store.EventPrinted, KioskID: "kiosk-a", Municipality: "012041", Kind: certificate.Domestic, Copies: 1, CertificateID: "CERT00000001", RequestID: "r1", Result: "ok"},
		{Time: base.Add(5 * time.Minute), Type: store.EventRefused, KioskID: "kiosk-a", Municipality: "012041", RequestID: "r3", Result: "no_record"},
	}
	for i := range in {
		got, err := s.AppendEvent(ctx, in[i])
		mustNil(t, "AppendEvent", err)
		in[i] = got
	}
	name := func(evs []ev) string {
		var out []string
		for _, e := range evs {
			out = append(out, fmt.Sprintf("%s@%s", e.Type, e.Time.Format("04")))
		}
		return "[" + strings.Join(out, " ") + "]"
	}
	tests := []struct {
		name string
		q    store.EventQuery
		want string
	}{
		{"certificate", store.EventQuery{CertificateID: "CERT00000001"}, "[issued@31 printed@34]"},
		{"municipality", store.EventQuery{Municipality: "012041"}, "[issued@31 municipality_participation@33 printed@34 refused@35]"},
		{"operator", store.EventQuery{Operator: "op-tanaka"}, "[municipality_participation@33]"},
		{"result", store.EventQuery{Result: "no_record"}, "[refused@32 refused@35]"},
		{"type", store.EventQuery{Type: store.EventRefused}, "[refused@32 refused@35]"},
		{"combined", store.EventQuery{Municipality: "012041", Result: "no_record"}, "[refused@35]"},
		{"combined with kiosk", store.EventQuery{KioskID: "kiosk-a", Type: store.EventPrinted}, "[printed@34]"},
		{"combined with time", store.EventQuery{Result: "ok", From: base.Add(2 * time.Minute), To: base.Add(4 * time.Minute)}, "[key_rotated@33]"},
		{"no match", store.EventQuery{CertificateID: "NONE", Municipality: "012041"}, "[]"},
		{"descending", store.EventQuery{Descending: true}, "[refused@35 printed@34 key_rotated@33 municipality_participation@33 refused@32 issued@31]"},
		{"descending with limit", store.EventQuery{Descending: true, Limit: 2}, "[refused@35 printed@34]"},
		{"descending in range", store.EventQuery{Descending: true, From: base.Add(2 * time.Minute), To: base.Add(4 * time.Minute)}, "[key_rotated@33 municipality_participation@33 refused@32]"},
		{"descending by index", store.EventQuery{Descending: true, Municipality: "012041", Limit: 3}, "[refused@35 printed@34 municipality_participation@33]"},
		{"after", store.EventQuery{After: in[2].Position()}, "[key_rotated@33 printed@34 refused@35]"},
		{"after by index", store.EventQuery{Municipality: "012041", After: in[0].Position()}, "[municipality_participation@33 printed@34 refused@35]"},
		{"after descending", store.EventQuery{Descending: true, After: in[3].Position()}, "[municipality_participation@33 refused@32 issued@31]"},
		{"after descending by index", store.EventQuery{Descending: true, Municipality: "012041", After: in[4].Position()}, "[municipality_participation@33 issued@31]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Events(ctx, tc.q)
			mustNil(t, "Events", err)
			if n := name(got); n != tc.want {
				t.Errorf("Events(%+v) = %s, want %s", tc.q, n, tc.want)
			}
		})
	}

	// Paging through everything, in both orders, visits each event once.
	for _, desc := range []bool{false, true} {
		var seen []uint64
		q := store.EventQuery{Limit: 2, Descending: desc}
		for range 10 {
			page, err := s.Events(ctx, q)
			mustNil(t, "Events page", err)
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				seen = append(seen, e.Seq)
			}
			q.After = page[len(page)-1].Position()
		}
		if len(seen) != len(in) {
			t.Errorf("paging (descending %v) saw %d events, want %d: %v", desc, len(seen), len(in), seen)
		}
	}

	// The object of an operator action survives the round trip.
	got, err := s.Events(ctx, store.EventQuery{Operator: "op-suzuki"})
	mustNil(t, "Events", err)
	if len(got) != 1 || got[0] != in[3] {
		t.Errorf("round trip: got %+v, want %+v", got, in[3])
	}
	bad := in[3]
	bad.Object = "名前"
	_, err = s.AppendEvent(ctx, bad)
	mustIs(t, "event with a non-identifier object", err, store.ErrInvalid)
}

func testSettlementCounts(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := NewKiosk("a"), NewKiosk("b")
	b.Chain = "othermart"
	mustNil(t, "EnrollKiosk", s.EnrollKiosk(ctx, a))
	mustNil(t, "EnrollKiosk", s.EnrollKiosk(ctx, b))
	jst := time.FixedZone("JST", 9*3600)
	at := func(month time.Month, day, hour int) time.Time {
		return time.Date(2024, month, day, hour, 0, 0, 0, jst)
	}
	printed := func(t time.Time, kiosk, muni string, kind certificate.Kind, copies int) store.Event {
		return store.Event{Time: t, Type: store.EventPrinted, KioskID: kiosk, Municipality: muni, Kind: kind, Copies: copies, Result: "ok"}
	}
	for _, e := range []store.Event{
		printed(at(4, 1, 0), a.ID, "012041", certificate.Domestic, 1), // 1 April JST (31 March UTC)
		printed(at(4, 1, 10), a.ID, "012041", certificate.Domestic, 1),
		printed(at(4, 1, 11), a.ID, "012041", certificate.Domestic, 2),
		printed(at(4, 1, 12), b.ID, "012041", certificate.Overseas, 1),
		printed(at(4, 2, 9), b.ID, "011002", certificate.Domestic, 1),
		printed(at(4, 30, 23), a.ID, "011002", certificate.Domestic, 3),
		printed(at(5, 1, 9), a.ID, "012041", certificate.Domestic, 1),
		printed(at(4, 3, 9), "kiosk-unknown", "012041", certificate.Domestic, 1),
		// Not settled: not printed, or without a municipality.
		{Time: at(4, 1, 13), Type: store.EventIssued, KioskID: a.ID, Municipality: "012041", Kind: certificate.Domestic, Copies: 1, Result: "ok"},
		{Time: at(4, 1, 14), Type: store.EventPrintFailed, KioskID: a.ID, Municipality: "012041", Kind: certificate.Domestic, Copies: 1, Result: "paper_out"},
		{Time: at(4, 1, 15), Type: store.EventPrinted, KioskID: a.ID, Kind: certificate.Domestic, Copies: 1, Result: "ok"},
	} {
		_, err := s.AppendEvent(ctx, e)
		mustNil(t, "AppendEvent", err)
	}
	str := func(cs []store.SettlementCount) string {
		var out []string
		for _, c := range cs {
			out = append(out, fmt.Sprintf("%s/%s/%s/%s/%d=%d", c.Period, c.Municipality, c.Chain, c.Kind, c.Copies, c.Issuances))
		}
		return strings.Join(out, " ")
	}
	tests := []struct {
		name string
		q    store.SettlementQuery
		want string
	}{
		{"one day", store.SettlementQuery{FirstDay: "2024-04-01", LastDay: "2024-04-01"},
			"2024-04-01/012041/othermart/overseas/1=1 2024-04-01/012041/testmart/domestic/1=2 2024-04-01/012041/testmart/domestic/2=1"},
		{"days", store.SettlementQuery{FirstDay: "2024-04-02", LastDay: "2024-04-03"},
			"2024-04-02/011002/othermart/domestic/1=1 2024-04-03/012041//domestic/1=1"},
		{"whole month", store.SettlementQuery{FirstDay: "2024-04-01", LastDay: "2024-04-30", Monthly: true},
			"2024-04/011002/othermart/domestic/1=1 2024-04/011002/testmart/domestic/3=1 2024-04/012041//domestic/1=1 2024-04/012041/othermart/overseas/1=1 2024-04/012041/testmart/domestic/1=2 2024-04/012041/testmart/domestic/2=1"},
		{"part of a month", store.SettlementQuery{FirstDay: "2024-04-02", LastDay: "2024-05-31", Monthly: true},
			"2024-04/011002/othermart/domestic/1=1 2024-04/011002/testmart/domestic/3=1 2024-04/012041//domestic/1=1 2024-05/012041/testmart/domestic/1=1"},
		{"municipality", store.SettlementQuery{FirstDay: "2024-04-01", LastDay: "2024-05-31", Monthly: true, Municipality: "011002"},
			"2024-04/011002/othermart/domestic/1=1 2024-04/011002/testmart/domestic/3=1"},
		{"chain", store.SettlementQuery{FirstDay: "2024-04-01", LastDay: "2024-04-30", Chain: "othermart"},
			"2024-04-01/012041/othermart/overseas/1=1 2024-04-02/011002/othermart/domestic/1=1"},
		{"nothing", store.SettlementQuery{FirstDay: "2024-06-01", LastDay: "2024-06-30"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.SettlementCounts(ctx, tc.q)
			mustNil(t, "SettlementCounts", err)
			if g := str(got); g != tc.want {
				t.Errorf("SettlementCounts(%+v)\n got %s\nwant %s", tc.q, g, tc.want)
			}
		})
	}
	for _, q := range []store.SettlementQuery{
		{FirstDay: "2024-04-02", LastDay: "2024-04-01"},
		{FirstDay: "2024-4-1", LastDay: "2024-04-01"},
		{FirstDay: "2024-04-01", LastDay: "2024-04-01", Municipality: "012042"},
		{FirstDay: "2024-04-01", LastDay: "2024-04-01", Chain: "セブン"},
	} {
		_, err := s.SettlementCounts(ctx, q)
		mustIs(t, fmt.Sprintf("SettlementCounts(%+v)", q), err, store.ErrInvalid)
	}
}

func testKioskQuery(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 12 {
		k := NewKiosk(fmt.Sprintf("%02d", i))
		if i%3 == 0 {
			k.Chain = "othermart"
		}
		if i%4 == 0 {
			k.Prefecture, k.Region = "13", "tokyo"
		}
		mustNil(t, "EnrollKiosk", s.EnrollKiosk(ctx, k))
	}
	mustNil(t, "SetKioskStatus", s.SetKioskStatus(ctx, "kiosk-05", store.KioskSuspended, "inspection", base.Add(time.Hour)))
	mustNil(t, "SetKioskStatus", s.SetKioskStatus(ctx, "kiosk-06", store.KioskRevoked, "stolen", base.Add(time.Hour)))
	ids := func(p store.KioskPage) string {
		var out []string
		for _, k := range p.Kiosks {
			out = append(out, strings.TrimPrefix(k.ID, "kiosk-"))
		}
		return fmt.Sprintf("%s total=%d more=%v", strings.Join(out, ","), p.Total, p.More)
	}
	tests := []struct {
		name string
		q    store.KioskQuery
		want string
	}{
		{"page", store.KioskQuery{Limit: 3}, "00,01,02 total=12 more=true"},
		{"next page", store.KioskQuery{Limit: 3, After: "kiosk-02"}, "03,04,05 total=12 more=true"},
		{"last page", store.KioskQuery{Limit: 5, After: "kiosk-08"}, "09,10,11 total=12 more=false"},
		{"prefix", store.KioskQuery{IDPrefix: "kiosk-1"}, "10,11 total=2 more=false"},
		{"chain", store.KioskQuery{Chain: "othermart"}, "00,03,06,09 total=4 more=false"},
		{"prefecture", store.KioskQuery{Prefecture: "13"}, "00,04,08 total=3 more=false"},
		{"region", store.KioskQuery{Region: "tokyo", Chain: "othermart"}, "00 total=1 more=false"},
		{"status", store.KioskQuery{Status: store.KioskSuspended}, "05 total=1 more=false"},
		{"status after a change", store.KioskQuery{Status: store.KioskActive, Chain: "othermart"}, "00,03,09 total=3 more=false"},
		{"listed", store.KioskQuery{IDs: []string{"kiosk-07", "kiosk-01", "kiosk-zz", "kiosk-07"}}, "01,07 total=2 more=false"},
		{"listed and filtered", store.KioskQuery{IDs: []string{"kiosk-06", "kiosk-01"}, Status: store.KioskRevoked}, "06 total=1 more=false"},
		{"nothing", store.KioskQuery{Chain: "nomart"}, " total=0 more=false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.QueryKiosks(ctx, tc.q)
			mustNil(t, "QueryKiosks", err)
			if g := ids(p); g != tc.want {
				t.Errorf("QueryKiosks(%+v) = %s, want %s", tc.q, g, tc.want)
			}
		})
	}
	p, err := s.QueryKiosks(ctx, store.KioskQuery{IDPrefix: "kiosk-05"})
	mustNil(t, "QueryKiosks", err)
	if len(p.Kiosks) != 1 || p.Kiosks[0].Status != store.KioskSuspended || p.Kiosks[0].StatusReason != "inspection" {
		t.Errorf("QueryKiosks returned %+v, want the whole suspended kiosk", p.Kiosks)
	}
	_, err = s.QueryKiosks(ctx, store.KioskQuery{Status: "lost"})
	mustIs(t, "QueryKiosks with an unknown status", err, store.ErrInvalid)
}

// NewOperator returns a valid console operator account.
func NewOperator(id string, role store.OperatorRole) store.Operator {
	o := store.Operator{ID: id, Role: role, PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
		TOTPSecret: []byte{1, 2, 3, 4}, Created: base, Updated: base}
	if role == store.RoleMunicipality {
		o.Municipality = "012041"
	}
	return o
}

func testOperators(t *testing.T, s store.Store) {
	ctx := context.Background()
	admin := NewOperator("op-suzuki", store.RoleAdministrator)
	mustNil(t, "CreateOperator", s.CreateOperator(ctx, admin))
	mustIs(t, "CreateOperator twice", s.CreateOperator(ctx, admin), store.ErrExists)
	muni := NewOperator("asahikawa-1", store.RoleMunicipality)
	mustNil(t, "CreateOperator", s.CreateOperator(ctx, muni))
	cli := store.Operator{ID: "op-cli", Role: store.RoleOperator, Created: base} // tokens only
	mustNil(t, "CreateOperator without a password", s.CreateOperator(ctx, cli))

	got, err := s.Operator(ctx, "op-suzuki")
	mustNil(t, "Operator", err)
	want := admin
	store.NormaliseOperator(&want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Operator = %+v, want %+v", got, want)
	}
	_, err = s.Operator(ctx, "nobody")
	mustIs(t, "Operator unknown", err, store.ErrNotFound)
	list, err := s.ListOperators(ctx)
	mustNil(t, "ListOperators", err)
	if len(list) != 3 || list[0].ID != "asahikawa-1" || list[1].ID != "op-cli" || list[2].ID != "op-suzuki" {
		t.Errorf("ListOperators = %v, want ordered by ID", list)
	}

	for _, bad := range []func(*store.Operator){
		func(o *store.Operator) { o.ID = "名前" },
		func(o *store.Operator) { o.Role = "root" },
		func(o *store.Operator) { o.Role = store.RoleMunicipality },
		func(o *store.Operator) { o.Municipality = "012041" },
		func(o *store.Operator) { o.TOTPSecret = nil },
		func(o *store.Operator) { o.PasswordHash = "has space" },
		func(o *store.Operator) { o.Created = time.Time{} },
	} {
		o := NewOperator("op-bad", store.RoleViewer)
		bad(&o)
		mustIs(t, fmt.Sprintf("CreateOperator(%+v)", o), s.CreateOperator(ctx, o), store.ErrInvalid)
	}

	// Updates are atomic: concurrent failed logins are all counted.
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateOperator(ctx, "op-suzuki", func(o *store.Operator) error { o.FailedLogins++; return nil })
			if err != nil {
				t.Errorf("UpdateOperator: %v", err)
			}
		}()
	}
	wg.Wait()
	got, err = s.Operator(ctx, "op-suzuki")
	mustNil(t, "Operator", err)
	if got.FailedLogins != 16 {
		t.Errorf("FailedLogins = %d after 16 concurrent updates", got.FailedLogins)
	}
	locked := base.Add(15*time.Minute + 789*time.Nanosecond)
	got, err = s.UpdateOperator(ctx, "op-suzuki", func(o *store.Operator) error { o.LockedUntil = locked; return nil })
	mustNil(t, "UpdateOperator", err)
	if !got.LockedUntil.Equal(store.Time(locked)) {
		t.Errorf("LockedUntil = %v, want %v", got.LockedUntil, store.Time(locked))
	}
	refuse := fmt.Errorf("refused by the caller")
	_, err = s.UpdateOperator(ctx, "op-suzuki", func(o *store.Operator) error { o.FailedLogins = 0; return refuse })
	mustIs(t, "UpdateOperator refused by change", err, refuse)
	_, err = s.UpdateOperator(ctx, "op-suzuki", func(o *store.Operator) error { o.ID = "op-other"; return nil })
	mustIs(t, "UpdateOperator changing the ID", err, store.ErrInvalid)
	_, err = s.UpdateOperator(ctx, "op-suzuki", func(o *store.Operator) error { o.Role = "root"; return nil })
	mustIs(t, "UpdateOperator to an invalid role", err, store.ErrInvalid)
	_, err = s.UpdateOperator(ctx, "nobody", func(o *store.Operator) error { return nil })
	mustIs(t, "UpdateOperator unknown", err, store.ErrNotFound)
	got, err = s.Operator(ctx, "op-suzuki")
	mustNil(t, "Operator", err)
	if got.FailedLogins != 16 || got.Role != store.RoleAdministrator {
		t.Errorf("a refused update was written: %+v", got)
	}
}

func testAPITokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustNil(t, "CreateOperator", s.CreateOperator(ctx, NewOperator("op-a", store.RoleOperator)))
	mustNil(t, "CreateOperator", s.CreateOperator(ctx, NewOperator("op-b", store.RoleViewer)))
	tok := func(id, op string, at time.Time) store.APIToken {
		return store.APIToken{ID: id, Operator: op, SHA256: fingerprint(id), Label: "cli", Created: at}
	}
	t1, t2, t3 := tok("tok-1", "op-a", base.Add(2*time.Minute)), tok("tok-2", "op-a", base.Add(time.Minute)), tok("tok-3", "op-b", base)
	t3.Expires = base.Add(24 * time.Hour)
	for _, tk := range []store.APIToken{t1, t2, t3} {
		mustNil(t, "PutAPIToken", s.PutAPIToken(ctx, tk))
	}
	mustIs(t, "PutAPIToken same ID", s.PutAPIToken(ctx, t1), store.ErrExists)
	dup := tok("tok-4", "op-a", base)
	dup.SHA256 = t1.SHA256
	mustIs(t, "PutAPIToken same hash", s.PutAPIToken(ctx, dup), store.ErrExists)
	mustIs(t, "PutAPIToken unknown operator", s.PutAPIToken(ctx, tok("tok-5", "nobody", base)), store.ErrNotFound)
	bad := tok("tok-6", "op-a", base)
	bad.SHA256 = "ABC"
	mustIs(t, "PutAPIToken bad hash", s.PutAPIToken(ctx, bad), store.ErrInvalid)

	got, err := s.APITokenByHash(ctx, t3.SHA256)
	mustNil(t, "APITokenByHash", err)
	if got.ID != "tok-3" || got.Operator != "op-b" || !got.Expires.Equal(store.Time(t3.Expires)) || !got.Usable(base) || got.Usable(base.Add(25*time.Hour)) {
		t.Errorf("APITokenByHash = %+v", got)
	}
	_, err = s.APITokenByHash(ctx, fingerprint("none"))
	mustIs(t, "APITokenByHash unknown", err, store.ErrNotFound)
	list, err := s.ListAPITokens(ctx, "op-a")
	mustNil(t, "ListAPITokens", err)
	if len(list) != 2 || list[0].ID != "tok-2" || list[1].ID != "tok-1" {
		t.Errorf("ListAPITokens(op-a) = %+v, want tok-2, tok-1 (creation order)", list)
	}
	all, err := s.ListAPITokens(ctx, "")
	mustNil(t, "ListAPITokens", err)
	if len(all) != 3 {
		t.Errorf("ListAPITokens() = %d tokens, want 3", len(all))
	}
	mustNil(t, "RevokeAPIToken", s.RevokeAPIToken(ctx, "tok-1", base.Add(time.Hour)))
	mustIs(t, "RevokeAPIToken twice", s.RevokeAPIToken(ctx, "tok-1", base.Add(time.Hour)), store.ErrTransition)
	mustIs(t, "RevokeAPIToken unknown", s.RevokeAPIToken(ctx, "tok-9", base), store.ErrNotFound)
	got, err = s.APITokenByHash(ctx, t1.SHA256)
	mustNil(t, "APITokenByHash revoked", err)
	if got.Usable(base.Add(2*time.Hour)) || !got.Revoked.Equal(store.Time(base.Add(time.Hour))) {
		t.Errorf("revoked token = %+v, still usable", got)
	}
}
