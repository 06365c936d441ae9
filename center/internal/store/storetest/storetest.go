// Package storetest is the conformance suite every store.Store
// implementation runs, so the bbolt store and the PostgreSQL store behave
// the same wherever the center relies on it.
//
// An implementation's test calls Run with a function that returns a new,
// empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openEmpty(t) })
//	}
//
// Each subtest gets its own store; Run closes it when the subtest ends.
package storetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// Factory returns a new, empty store for one subtest.
type Factory func(t *testing.T) store.Store

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"KioskEnrollAndGet", testKioskEnrollAndGet},
		{"KioskValidation", testKioskValidation},
		{"KioskStatus", testKioskStatus},
		{"KioskTouch", testKioskTouch},
		{"MunicipalityUpsertAndList", testMunicipalityUpsertAndList},
		{"MunicipalityValidation", testMunicipalityValidation},
		{"SigningKeys", testSigningKeys},
		{"SigningKeyRefusesPrivateMaterial", testSigningKeyRefusesPrivate},
		{"AuditAppendAndQuery", testAuditAppendAndQuery},
		{"AuditValidation", testAuditValidation},
		{"AuditDailyCounts", testAuditDailyCounts},
		{"AuditConcurrentAppends", testAuditConcurrentAppends},
		{"AuditSearch", testAuditSearch},
		{"SettlementCounts", testSettlementCounts},
		{"KioskQuery", testKioskQuery},
		{"Operators", testOperators},
		{"APITokens", testAPITokens},
		{"AuditChain", testAuditChain},
		{"Revocations", testRevocations},
		{"RequestLifecycle", testRequestLifecycle},
		{"RequestRefusedAndReleased", testRequestRefusedAndReleased},
		{"RequestTakeOver", testRequestTakeOver},
		{"RequestConcurrentClaims", testRequestConcurrentClaims},
		{"RequestExpiry", testRequestExpiry},
		{"RequestValidation", testRequestValidation},
		{"EnrollmentCode", testEnrollmentCode},
		{"EnrollmentCodeExpiry", testEnrollmentCodeExpiry},
		{"EnrollmentCodeAttempts", testEnrollmentCodeAttempts},
		{"EnrollmentCodeValidation", testEnrollmentCodeValidation},
		{"EnrollmentCodeConcurrent", testEnrollmentCodeConcurrent},
		{"KioskRenewCertificate", testKioskRenewCertificate},
		{"CancelledContext", testCancelledContext},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

// base is a fixed instant with nanoseconds, so precision handling shows.
var base = time.Date(2024, 4, 1, 9, 30, 0, 123456789, time.FixedZone("JST", 9*3600))

func fingerprint(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return hex.EncodeToString(sum[:])
}

// NewKiosk returns a valid kiosk for tests; seed makes ID and certificate
// unique.
func NewKiosk(seed string) store.Kiosk {
	return store.Kiosk{
		ID:         "kiosk-" + seed,
		StoreName:  "テスト店 " + seed,
		StoreCode:  "S" + seed,
		Chain:      "testmart",
		Prefecture: "01",
		Region:     "hokkaido",
		CertSerial: "1a2b" + hex.EncodeToString([]byte(seed)),
		CertSHA256: fingerprint(seed),
		EnrolledAt: base,
	}
}

func mustNil(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func testKioskEnrollAndGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, seed := range []string{"b", "a", "c"} {
		mustNil(t, "EnrollKiosk "+seed, s.EnrollKiosk(ctx, NewKiosk(seed)))
	}
	got, err := s.Kiosk(ctx, "kiosk-a")
	mustNil(t, "Kiosk", err)
	want := NewKiosk("a")
	want.EnrolledAt = store.Time(base)
	want.Status, want.StatusAt = store.KioskActive, store.Time(base)
	if !kioskEqual(got, want) {
		t.Errorf("Kiosk = %+v, want %+v", got, want)
	}
	if got.EnrolledAt.Location() != time.UTC {
		t.Errorf("EnrolledAt in %v, want UTC", got.EnrolledAt.Location())
	}

	byCert, err := s.KioskByCertificate(ctx, fingerprint("c"))
	mustNil(t, "KioskByCertificate", err)
	if byCert.ID != "kiosk-c" {
		t.Errorf("KioskByCertificate = %s, want kiosk-c", byCert.ID)
	}
	_, err = s.KioskByCertificate(ctx, fingerprint("zz"))
	mustIs(t, "KioskByCertificate unknown", err, store.ErrNotFound)
	_, err = s.Kiosk(ctx, "kiosk-zz")
	mustIs(t, "Kiosk unknown", err, store.ErrNotFound)

	list, err := s.ListKiosks(ctx)
	mustNil(t, "ListKiosks", err)
	var ids []string
	for _, k := range list {
		ids = append(ids, k.ID)
	}
	if fmt.Sprint(ids) != "[kiosk-a kiosk-b kiosk-c]" {
		t.Errorf("ListKiosks order = %v, want by ID", ids)
	}

	dupID := NewKiosk("a")
	dupID.CertSHA256 = fingerprint("other")
	mustIs(t, "enroll duplicate ID", s.EnrollKiosk(ctx, dupID), store.ErrExists)
	dupCert := NewKiosk("d")
	dupCert.CertSHA256 = fingerprint("a")
	mustIs(t, "enroll duplicate certificate", s.EnrollKiosk(ctx, dupCert), store.ErrExists)
	_, err = s.Kiosk(ctx, "kiosk-d")
	mustIs(t, "kiosk refused for duplicate certificate", err, store.ErrNotFound)

	// A caller cannot enroll a kiosk pre-suspended or pre-seen.
	preset := NewKiosk("e")
	preset.Status, preset.LastSeen = store.KioskRevoked, base
	mustNil(t, "EnrollKiosk with preset status", s.EnrollKiosk(ctx, preset))
	got, err = s.Kiosk(ctx, "kiosk-e")
	mustNil(t, "Kiosk e", err)
	if got.Status != store.KioskActive || !got.LastSeen.IsZero() {
		t.Errorf("enrolled kiosk status %s, last seen %v; want active, never", got.Status, got.LastSeen)
	}
}

func kioskEqual(a, b store.Kiosk) bool {
	return a.ID == b.ID && a.StoreName == b.StoreName && a.StoreCode == b.StoreCode && a.Chain == b.Chain &&
		a.Prefecture == b.Prefecture && a.Region == b.Region && a.CertSerial == b.CertSerial &&
		a.CertSHA256 == b.CertSHA256 && a.EnrolledAt.Equal(b.EnrolledAt) && a.Status == b.Status &&
		a.StatusReason == b.StatusReason && a.StatusAt.Equal(b.StatusAt) && a.LastSeen.Equal(b.LastSeen)
}

func testKioskValidation(t *testing.T, s store.Store) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mutate func(*store.Kiosk)
	}{
		{"empty ID", func(k *store.Kiosk) { k.ID = "" }},
		{"ID with space", func(k *store.Kiosk) { k.ID = "kiosk 1" }},
		{"kanji in store code", func(k *store.Kiosk) { k.StoreCode = "店1" }},
		{"no store name", func(k *store.Kiosk) { k.StoreName = "" }},
		{"control character in store name", func(k *store.Kiosk) { k.StoreName = "a\nb" }},
		{"prefecture 48", func(k *store.Kiosk) { k.Prefecture = "48" }},
		{"prefecture 00", func(k *store.Kiosk) { k.Prefecture = "00" }},
		{"upper-case fingerprint", func(k *store.Kiosk) { k.CertSHA256 = "AB" + k.CertSHA256[2:] }},
		{"short fingerprint", func(k *store.Kiosk) { k.CertSHA256 = k.CertSHA256[:62] }},
		{"no serial", func(k *store.Kiosk) { k.CertSerial = "" }},
		{"no enrolment time", func(k *store.Kiosk) { k.EnrolledAt = time.Time{} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := NewKiosk("v")
			tc.mutate(&k)
			mustIs(t, "EnrollKiosk", s.EnrollKiosk(ctx, k), store.ErrInvalid)
		})
	}
	list, err := s.ListKiosks(ctx)
	mustNil(t, "ListKiosks", err)
	if len(list) != 0 {
		t.Errorf("%d invalid kiosks were stored", len(list))
	}
}

func testKioskStatus(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustNil(t, "EnrollKiosk", s.EnrollKiosk(ctx, NewKiosk("s")))
	id := "kiosk-s"
	steps := []struct {
		status store.KioskStatus
		reason string
		want   error
	}{
		{store.KioskSuspended, "", store.ErrInvalid}, // a reason is required
		{store.KioskSuspended, "paper jam investigation", nil},
		{store.KioskActive, "", nil},
		{"broken", "x", store.ErrInvalid},
		{store.KioskRevoked, "certificate compromised", nil},
		{store.KioskActive, "", store.ErrTransition},
		{store.KioskSuspended, "again", store.ErrTransition},
	}
	for i, st := range steps {
		at := base.Add(time.Duration(i+1) * time.Hour)
		err := s.SetKioskStatus(ctx, id, st.status, st.reason, at)
		if st.want == nil {
			mustNil(t, fmt.Sprintf("step %d: → %s", i, st.status), err)
			k, err := s.Kiosk(ctx, id)
			mustNil(t, "Kiosk", err)
			if k.Status != st.status || k.StatusReason != st.reason || !k.StatusAt.Equal(store.Time(at)) {
				t.Errorf("step %d: got %s %q %v", i, k.Status, k.StatusReason, k.StatusAt)
			}
			continue
		}
		mustIs(t, fmt.Sprintf("step %d: → %s", i, st.status), err, st.want)
	}
	k, err := s.Kiosk(ctx, id)
	mustNil(t, "Kiosk", err)
	if k.Status != store.KioskRevoked {
		t.Errorf("final status %s, want revoked", k.Status)
	}
	mustIs(t, "status of unknown kiosk", s.SetKioskStatus(ctx, "kiosk-zz", store.KioskActive, "", base), store.ErrNotFound)
}

func testKioskTouch(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustNil(t, "EnrollKiosk", s.EnrollKiosk(ctx, NewKiosk("t")))
	later := base.Add(time.Hour)
	mustNil(t, "TouchKiosk", s.TouchKiosk(ctx, "kiosk-t", later))
	mustNil(t, "TouchKiosk older", s.TouchKiosk(ctx, "kiosk-t", base))
	k, err := s.Kiosk(ctx, "kiosk-t")
	mustNil(t, "Kiosk", err)
	if !k.LastSeen.Equal(store.Time(later)) {
		t.Errorf("LastSeen = %v, want %v (last-seen only moves forward)", k.LastSeen, store.Time(later))
	}
	mustIs(t, "TouchKiosk unknown", s.TouchKiosk(ctx, "kiosk-zz", later), store.ErrNotFound)
}

// Municipalities are the demo's three (brief §8 check digits).
func municipalities() []store.Municipality {
	return []store.Municipality{
		{Code: "112453", NameJa: "ふじみ野市", NameEn: "Fujimino City", AuthorityJa: "ふじみ野市長", AuthorityEn: "Mayor of Fujimino City"},
		{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City", AuthorityJa: "旭川市長", AuthorityEn: "Mayor of Asahikawa City", Participating: true, Kana: "アサヒカワシ", Kind: "city"},
		{Code: "011002", NameJa: "札幌市", NameEn: "Sapporo City", AuthorityJa: "札幌市長", AuthorityEn: "Mayor of Sapporo City", Participating: true, Kana: "サッポロシ", Kind: "designated_city"},
	}
}

func codes(ms []store.Municipality) string {
	var c []string
	for _, m := range ms {
		c = append(c, m.Code)
	}
	return fmt.Sprint(c)
}

func testMunicipalityUpsertAndList(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, m := range municipalities() {
		mustNil(t, "UpsertMunicipality "+m.Code, s.UpsertMunicipality(ctx, m))
	}
	all, err := s.ListMunicipalities(ctx)
	mustNil(t, "ListMunicipalities", err)
	if got := codes(all); got != "[011002 012041 112453]" {
		t.Errorf("ListMunicipalities = %s, want all ordered by code", got)
	}
	part, err := s.ListParticipating(ctx)
	mustNil(t, "ListParticipating", err)
	if got := codes(part); got != "[011002 012041]" {
		t.Errorf("ListParticipating = %s", got)
	}

	mustNil(t, "SetParticipation", s.SetParticipation(ctx, "112453", true))
	mustNil(t, "SetParticipation", s.SetParticipation(ctx, "011002", false))
	part, err = s.ListParticipating(ctx)
	mustNil(t, "ListParticipating", err)
	if got := codes(part); got != "[012041 112453]" {
		t.Errorf("ListParticipating after change = %s", got)
	}
	mustIs(t, "SetParticipation unknown", s.SetParticipation(ctx, "011011", true), store.ErrNotFound)

	// The reading and kind are kept.
	sapporo, err := s.Municipality(ctx, "011002")
	mustNil(t, "Municipality", err)
	if sapporo.Kana != "サッポロシ" || sapporo.Kind != "designated_city" {
		t.Errorf("Municipality 011002 = %+v, want its kana and kind kept", sapporo)
	}

	// Upsert replaces every field, the counter's names too.
	m := municipalities()[1]
	m.AuthorityEn = "Mayor of the City of Asahikawa"
	m.Participating = false
	m.CounterJa, m.CounterEn = "旭川市役所 市民課（総合庁舎1階）", "Asahikawa City Hall, Citizens Division (1st floor)"
	mustNil(t, "UpsertMunicipality replace", s.UpsertMunicipality(ctx, m))
	got, err := s.Municipality(ctx, "012041")
	mustNil(t, "Municipality", err)
	if got != m {
		t.Errorf("Municipality = %+v, want %+v", got, m)
	}
	_, err = s.Municipality(ctx, "011011")
	mustIs(t, "Municipality unknown", err, store.ErrNotFound)
}

func testMunicipalityValidation(t *testing.T, s store.Store) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mutate func(*store.Municipality)
	}{
		{"bad check digit", func(m *store.Municipality) { m.Code = "012040" }},
		{"five digits", func(m *store.Municipality) { m.Code = "01204" }},
		{"prefecture 99", func(m *store.Municipality) { m.Code = "990001" }},
		{"no Japanese name", func(m *store.Municipality) { m.NameJa = "" }},
		{"no English authority", func(m *store.Municipality) { m.AuthorityEn = "" }},
		{"kana in hiragana", func(m *store.Municipality) { m.Kana = "あさひかわし" }},
		{"unknown kind", func(m *store.Municipality) { m.Kind = "metropolis" }},
		{"counter in Japanese only", func(m *store.Municipality) { m.CounterJa = "市民課" }},
		{"counter in English only", func(m *store.Municipality) { m.CounterEn = "Citizens Division" }},
		{"counter name with a newline", func(m *store.Municipality) { m.CounterJa, m.CounterEn = "市民課\n2階", "Citizens Division" }},
		{"counter name too long", func(m *store.Municipality) { m.CounterJa, m.CounterEn = strings.Repeat("窓", 67), "Counter" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := municipalities()[1]
			tc.mutate(&m)
			mustIs(t, "UpsertMunicipality", s.UpsertMunicipality(ctx, m), store.ErrInvalid)
		})
	}
	all, err := s.ListMunicipalities(ctx)
	mustNil(t, "ListMunicipalities", err)
	if len(all) != 0 {
		t.Errorf("%d invalid municipalities stored", len(all))
	}
}

// testKeys returns a fresh P-256 key's public PEM and its PKCS#8 private PEM.
func testKeys(t *testing.T) (pubPEM, privPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mustNil(t, "GenerateKey", err)
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	mustNil(t, "MarshalPKIXPublicKey", err)
	priv, err := x509.MarshalPKCS8PrivateKey(k)
	mustNil(t, "MarshalPKCS8PrivateKey", err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})
}

const publicJWK = `{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","use":"sig","alg":"ES256","kid":"k1"}`

func testSigningKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	pubPEM, _ := testKeys(t)
	keys := []store.SigningKey{
		{KID: "shc-2025", Purpose: store.PurposeSHC, Format: store.FormatJWK, PublicKey: []byte(publicJWK), Created: base.Add(2 * time.Hour), NotAfter: base.AddDate(1, 0, 0)},
		{KID: "shc-2024", Purpose: store.PurposeSHC, Format: store.FormatJWK, PublicKey: []byte(publicJWK), Created: base, NotAfter: base.AddDate(1, 0, 0)},
		{KID: "vds-2024", Purpose: store.PurposeVDSNC, Format: store.FormatPEM, PublicKey: pubPEM, Created: base.Add(time.Hour), NotAfter: base.AddDate(1, 0, 0), Status: store.KeyActive},
	}
	for _, k := range keys {
		mustNil(t, "PutSigningKey "+k.KID, s.PutSigningKey(ctx, k))
	}
	mustIs(t, "PutSigningKey duplicate", s.PutSigningKey(ctx, keys[0]), store.ErrExists)

	got, err := s.SigningKey(ctx, "vds-2024")
	mustNil(t, "SigningKey", err)
	if got.Status != store.KeyActive || !got.StatusAt.Equal(store.Time(keys[2].Created)) ||
		string(got.PublicKey) != string(pubPEM) || !got.NotAfter.Equal(store.Time(keys[2].NotAfter)) {
		t.Errorf("SigningKey = %+v", got)
	}
	_, err = s.SigningKey(ctx, "nope")
	mustIs(t, "SigningKey unknown", err, store.ErrNotFound)

	all, err := s.ListSigningKeys(ctx, "")
	mustNil(t, "ListSigningKeys", err)
	var kids []string
	for _, k := range all {
		kids = append(kids, k.KID)
	}
	if fmt.Sprint(kids) != "[shc-2024 vds-2024 shc-2025]" {
		t.Errorf("ListSigningKeys = %v, want by creation time", kids)
	}
	shc, err := s.ListSigningKeys(ctx, store.PurposeSHC)
	mustNil(t, "ListSigningKeys shc", err)
	if len(shc) != 2 {
		t.Errorf("ListSigningKeys(shc) has %d keys, want 2", len(shc))
	}

	steps := []struct {
		kid    string
		status store.KeyStatus
		want   error
	}{
		{"shc-2024", store.KeyRetired, nil},
		{"shc-2024", store.KeyActive, store.ErrTransition},
		{"shc-2024", store.KeyRetired, store.ErrTransition},
		{"shc-2024", store.KeyWithdrawn, nil},
		{"shc-2024", store.KeyRetired, store.ErrTransition},
		{"vds-2024", store.KeyWithdrawn, nil},
		{"shc-2025", "lost", store.ErrInvalid},
		{"nope", store.KeyRetired, store.ErrNotFound},
	}
	for i, st := range steps {
		at := base.Add(time.Duration(i+10) * time.Hour)
		err := s.SetSigningKeyStatus(ctx, st.kid, st.status, at)
		if st.want != nil {
			mustIs(t, fmt.Sprintf("step %d", i), err, st.want)
			continue
		}
		mustNil(t, fmt.Sprintf("step %d", i), err)
		k, err := s.SigningKey(ctx, st.kid)
		mustNil(t, "SigningKey", err)
		if k.Status != st.status || !k.StatusAt.Equal(store.Time(at)) {
			t.Errorf("step %d: status %s at %v", i, k.Status, k.StatusAt)
		}
	}

	retired := keys[0]
	retired.KID, retired.Status = "shc-new-retired", store.KeyRetired
	mustIs(t, "PutSigningKey not active", s.PutSigningKey(ctx, retired), store.ErrInvalid)
}

func testSigningKeyRefusesPrivate(t *testing.T, s store.Store) {
	ctx := context.Background()
	pubPEM, privPEM := testKeys(t)
	tests := []struct {
		name   string
		format store.KeyFormat
		key    string
	}{
		{"JWK with d", store.FormatJWK, `{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}`},
		{"symmetric JWK", store.FormatJWK, `{"kty":"oct","k":"c2VjcmV0"}`},
		{"RSA JWK with primes", store.FormatJWK, `{"kty":"RSA","n":"a","e":"AQAB","p":"b","q":"c"}`},
		{"JWK without kty", store.FormatJWK, `{"crv":"P-256"}`},
		{"not JSON", store.FormatJWK, `kty=EC`},
		{"PKCS#8 private key PEM", store.FormatPEM, string(privPEM)},
		{"public then private PEM", store.FormatPEM, string(pubPEM) + string(privPEM)},
		{"EC PRIVATE KEY label", store.FormatPEM, "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"},
		{"no PEM block", store.FormatPEM, "just text"},
		{"garbage after block", store.FormatPEM, string(pubPEM) + "trailing"},
		{"PUBLIC KEY that does not parse", store.FormatPEM, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
		{"unknown format", "der", string(pubPEM)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := store.SigningKey{KID: "k", Purpose: store.PurposeSHC, Format: tc.format, PublicKey: []byte(tc.key), Created: base, NotAfter: base.Add(time.Hour)}
			mustIs(t, "PutSigningKey", s.PutSigningKey(ctx, k), store.ErrInvalid)
		})
	}
	all, err := s.ListSigningKeys(ctx, "")
	mustNil(t, "ListSigningKeys", err)
	if len(all) != 0 {
		t.Errorf("%d refused keys were stored", len(all))
	}
}

func event(at time.Time, typ store.EventType, kiosk, muni string, kind certificate.Kind, copies int) store.Event {
	return store.Event{
		Time: at, Type: typ, KioskID: kiosk, StoreCode: "S1", Municipality: muni, Kind: kind,
		Copies: copies, CertificateID: "AB12CD34EF56", RequestID: "req-" + at.Format("150405.000000"),
		Result: "ok", Latency: 42 * time.Millisecond,
	}
}

func testAuditAppendAndQuery(t *testing.T, s store.Store) {
	ctx := context.Background()
	// Appended out of time order on purpose: queries order by time.
	in := []store.Event{
		event(base.Add(3*time.Minute), store.EventIssued, "kiosk-a", "012041", certificate.Domestic, 1),
		event(base.Add(1*time.Minute), store.EventRequested, "kiosk-a", "012041", "", 0),
		event(base.Add(2*time.Minute), store.EventRequested, "kiosk-b", "011002", "", 0),
		event(base.Add(2*time.Minute), store.EventRefused, "kiosk-b", "011002", certificate.Overseas, 0),
		event(base.Add(4*time.Minute), store.EventPrinted, "kiosk-a", "012041", certificate.Domestic, 2),
		event(base.Add(5*time.Minute), store.EventKioskStatus, "", "", "", 0),
	}
	var lastSeq uint64
	for i, e := range in {
		got, err := s.AppendEvent(ctx, e)
		mustNil(t, fmt.Sprintf("AppendEvent %d", i), err)
		if got.Seq <= lastSeq {
			t.Errorf("event %d: Seq %d not increasing after %d", i, got.Seq, lastSeq)
		}
		lastSeq = got.Seq
		if !got.Time.Equal(store.Time(e.Time)) || got.Time.Location() != time.UTC {
			t.Errorf("event %d: Time %v, want %v in UTC", i, got.Time, store.Time(e.Time))
		}
		in[i] = got
	}

	order := func(evs []store.Event) string {
		var s []string
		for _, e := range evs {
			s = append(s, fmt.Sprintf("%s@%s", e.Type, e.Time.Format("04")))
		}
		return fmt.Sprint(s)
	}
	tests := []struct {
		name string
		q    store.EventQuery
		want string
	}{
		{"all", store.EventQuery{}, "[requested@31 requested@32 refused@32 issued@33 printed@34 kiosk_status@35]"},
		{"range is half-open", store.EventQuery{From: base.Add(2 * time.Minute), To: base.Add(4 * time.Minute)}, "[requested@32 refused@32 issued@33]"},
		{"from only", store.EventQuery{From: base.Add(4 * time.Minute)}, "[printed@34 kiosk_status@35]"},
		{"to only", store.EventQuery{To: base.Add(2 * time.Minute)}, "[requested@31]"},
		{"kiosk", store.EventQuery{KioskID: "kiosk-a"}, "[requested@31 issued@33 printed@34]"},
		{"kiosk and range", store.EventQuery{KioskID: "kiosk-a", From: base.Add(2 * time.Minute), To: base.Add(4 * time.Minute)}, "[issued@33]"},
		{"unknown kiosk", store.EventQuery{KioskID: "kiosk-zz"}, "[]"},
		{"limit", store.EventQuery{Limit: 2}, "[requested@31 requested@32]"},
		{"request", store.EventQuery{RequestID: in[2].RequestID}, "[requested@32 refused@32]"},
		{"request of another kiosk", store.EventQuery{RequestID: in[2].RequestID, KioskID: "kiosk-a"}, "[]"},
		{"request and kiosk", store.EventQuery{RequestID: in[0].RequestID, KioskID: "kiosk-a"}, "[issued@33]"},
		{"unknown request", store.EventQuery{RequestID: "req-none"}, "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Events(ctx, tc.q)
			mustNil(t, "Events", err)
			if o := order(got); o != tc.want {
				t.Errorf("Events = %s, want %s", o, tc.want)
			}
		})
	}

	// Every field survives the round trip.
	all, err := s.Events(ctx, store.EventQuery{KioskID: "kiosk-a", Limit: 1})
	mustNil(t, "Events", err)
	if len(all) != 1 || all[0] != in[1] {
		t.Errorf("round trip: got %+v, want %+v", all, in[1])
	}
}

func testAuditValidation(t *testing.T, s store.Store) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mutate func(*store.Event)
	}{
		{"no time", func(e *store.Event) { e.Time = time.Time{} }},
		{"no type", func(e *store.Event) { e.Type = "" }},
		{"upper-case type", func(e *store.Event) { e.Type = "Issued" }},
		{"bad municipality check digit", func(e *store.Event) { e.Municipality = "012040" }},
		{"unknown kind", func(e *store.Event) { e.Kind = "travel" }},
		{"negative copies", func(e *store.Event) { e.Copies = -1 }},
		{"too many copies", func(e *store.Event) { e.Copies = store.MaxCopies + 1 }},
		{"certificate ID too long", func(e *store.Event) { e.CertificateID = "ABCDEFGHIJKLM" }},
		// The audit log has no room for personal data: text outside the
		// identifier alphabets is refused wherever it is put.
		{"name in result", func(e *store.Event) { e.Result = "試験花子" }},
		{"name in request ID", func(e *store.Event) { e.RequestID = "試験 花子" }},
		{"My Number in kiosk ID with space", func(e *store.Event) { e.KioskID = "314159265352 x" }},
		{"negative latency", func(e *store.Event) { e.Latency = -time.Second }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := event(base, store.EventIssued, "kiosk-a", "012041", certificate.Domestic, 1)
			tc.mutate(&e)
			_, err := s.AppendEvent(ctx, e)
			mustIs(t, "AppendEvent", err, store.ErrInvalid)
		})
	}
	evs, err := s.Events(ctx, store.EventQuery{})
	mustNil(t, "Events", err)
	if len(evs) != 0 {
		t.Errorf("%d invalid events stored", len(evs))
	}
}

func testAuditDailyCounts(t *testing.T, s store.Store) {
	ctx := context.Background()
	// 2024-04-01 14:59:59.999999 UTC is 23:59:59 in Japan; one microsecond
	// later is the next settlement day.
	lastOfDay1 := time.Date(2024, 4, 1, 14, 59, 59, 999999000, time.UTC)
	firstOfDay2 := lastOfDay1.Add(time.Microsecond)
	evs := []store.Event{
		event(lastOfDay1, store.EventPrinted, "kiosk-a", "012041", certificate.Domestic, 2),
		event(lastOfDay1.Add(-time.Hour), store.EventPrinted, "kiosk-b", "012041", certificate.Domestic, 1),
		event(lastOfDay1, store.EventPrinted, "kiosk-a", "012041", certificate.Overseas, 3),
		event(lastOfDay1, store.EventRefused, "kiosk-a", "011002", certificate.Domestic, 0),
		event(firstOfDay2, store.EventPrinted, "kiosk-a", "012041", certificate.Domestic, 1),
		event(lastOfDay1, store.EventKioskStatus, "kiosk-a", "", "", 0), // no municipality: not counted
		event(time.Date(2024, 3, 31, 3, 0, 0, 0, time.UTC), store.EventPrinted, "kiosk-a", "012041", certificate.Domestic, 5),
	}
	for i, e := range evs {
		_, err := s.AppendEvent(ctx, e)
		mustNil(t, fmt.Sprintf("AppendEvent %d", i), err)
	}
	got, err := s.DailyCounts(ctx, "2024-04-01", "2024-04-02")
	mustNil(t, "DailyCounts", err)
	want := []store.DailyCount{
		{Day: "2024-04-01", Municipality: "011002", Type: store.EventRefused, Kind: certificate.Domestic, Events: 1, Copies: 0},
		{Day: "2024-04-01", Municipality: "012041", Type: store.EventPrinted, Kind: certificate.Domestic, Events: 2, Copies: 3},
		{Day: "2024-04-01", Municipality: "012041", Type: store.EventPrinted, Kind: certificate.Overseas, Events: 1, Copies: 3},
		{Day: "2024-04-02", Municipality: "012041", Type: store.EventPrinted, Kind: certificate.Domestic, Events: 1, Copies: 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("DailyCounts =\n%v\nwant\n%v", got, want)
	}
	one, err := s.DailyCounts(ctx, "2024-03-31", "2024-03-31")
	mustNil(t, "DailyCounts one day", err)
	if len(one) != 1 || one[0].Copies != 5 {
		t.Errorf("DailyCounts(2024-03-31) = %v", one)
	}
	for _, bad := range [][2]string{{"2024-04-02", "2024-04-01"}, {"2024-4-1", "2024-04-02"}, {"2024-04-01", "tomorrow"}} {
		_, err := s.DailyCounts(ctx, bad[0], bad[1])
		mustIs(t, fmt.Sprintf("DailyCounts(%s, %s)", bad[0], bad[1]), err, store.ErrInvalid)
	}
}

func testAuditConcurrentAppends(t *testing.T, s store.Store) {
	ctx := context.Background()
	const workers, each = 4, 25
	var wg sync.WaitGroup
	seqs := make(chan uint64, workers*each)
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := event(base.Add(time.Duration(i)*time.Second), store.EventPrinted, fmt.Sprintf("kiosk-%d", w), "012041", certificate.Domestic, 1)
				got, err := s.AppendEvent(ctx, e)
				if err != nil {
					errs <- err
					return
				}
				seqs <- got.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	close(errs)
	for err := range errs {
		t.Fatalf("AppendEvent: %v", err)
	}
	seen := map[uint64]bool{}
	for q := range seqs {
		if seen[q] {
			t.Fatalf("sequence number %d assigned twice", q)
		}
		seen[q] = true
	}
	counts, err := s.DailyCounts(ctx, store.SettlementDay(base), store.SettlementDay(base))
	mustNil(t, "DailyCounts", err)
	if len(counts) != 1 || counts[0].Events != workers*each || counts[0].Copies != workers*each {
		t.Errorf("DailyCounts after concurrent appends = %v, want %d events", counts, workers*each)
	}
}

func testRevocations(t *testing.T, s store.Store) {
	ctx := context.Background()
	revs := []store.Revocation{
		{CertificateID: "C0000000002B", KID: "kid-2", RevokedAt: base.Add(time.Hour), Reason: "misprint"},
		{CertificateID: "C0000000001A", KID: "kid-1", RevokedAt: base.Add(time.Hour), Reason: "holder_request"},
		{CertificateID: "C0000000003C", KID: "kid-1", RevokedAt: base, Reason: "misprint"},
	}
	for _, r := range revs {
		mustNil(t, "RevokeCertificate "+r.CertificateID, s.RevokeCertificate(ctx, r))
	}
	mustIs(t, "revoke twice", s.RevokeCertificate(ctx, revs[0]), store.ErrExists)

	ids := func(rs []store.Revocation) string {
		var s []string
		for _, r := range rs {
			s = append(s, r.CertificateID)
		}
		return fmt.Sprint(s)
	}
	all, err := s.Revocations(ctx, "")
	mustNil(t, "Revocations", err)
	if got := ids(all); got != "[C0000000003C C0000000001A C0000000002B]" {
		t.Errorf("Revocations(all) = %s, want by time then ID", got)
	}
	k1, err := s.Revocations(ctx, "kid-1")
	mustNil(t, "Revocations kid-1", err)
	if got := ids(k1); got != "[C0000000003C C0000000001A]" {
		t.Errorf("Revocations(kid-1) = %s", got)
	}
	none, err := s.Revocations(ctx, "kid-9")
	mustNil(t, "Revocations kid-9", err)
	if len(none) != 0 {
		t.Errorf("Revocations(kid-9) = %v", none)
	}
	r, err := s.Revocation(ctx, "C0000000001A")
	mustNil(t, "Revocation", err)
	if r.KID != "kid-1" || r.Reason != "holder_request" || !r.RevokedAt.Equal(store.Time(base.Add(time.Hour))) {
		t.Errorf("Revocation = %+v", r)
	}
	_, err = s.Revocation(ctx, "C000000000ZZ")
	mustIs(t, "Revocation unknown", err, store.ErrNotFound)

	bad := []store.Revocation{
		{CertificateID: "", KID: "k", RevokedAt: base, Reason: "misprint"},
		{CertificateID: "C0000000000000", KID: "k", RevokedAt: base, Reason: "misprint"},
		{CertificateID: "C1", KID: "", RevokedAt: base, Reason: "misprint"},
		{CertificateID: "C1", KID: "k", Reason: "misprint"},
		{CertificateID: "C1", KID: "k", RevokedAt: base, Reason: "the holder 試験花子 asked"},
	}
	for i, r := range bad {
		mustIs(t, fmt.Sprintf("bad revocation %d", i), s.RevokeCertificate(ctx, r), store.ErrInvalid)
	}
}

func testCancelledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"EnrollKiosk":        func() error { return s.EnrollKiosk(ctx, NewKiosk("x")) },
		"Kiosk":              func() error { _, err := s.Kiosk(ctx, "kiosk-x"); return err },
		"ListKiosks":         func() error { _, err := s.ListKiosks(ctx); return err },
		"UpsertMunicipality": func() error { return s.UpsertMunicipality(ctx, municipalities()[0]) },
		"ListParticipating":  func() error { _, err := s.ListParticipating(ctx); return err },
		"AppendEvent": func() error {
			_, err := s.AppendEvent(ctx, event(base, store.EventIssued, "k", "012041", "", 0))
			return err
		},
		"Events":      func() error { _, err := s.Events(ctx, store.EventQuery{}); return err },
		"DailyCounts": func() error { _, err := s.DailyCounts(ctx, "2024-04-01", "2024-04-01"); return err },
		"Revocations": func() error { _, err := s.Revocations(ctx, ""); return err },
		"ClaimRequest": func() error {
			_, err := s.ClaimRequest(ctx, NewRequest("req-x", "kiosk-x", base), time.Time{})
			return err
		},
		"Request": func() error { _, err := s.Request(ctx, "req-x"); return err },
	}
	for name, call := range calls {
		mustIs(t, name, call(), context.Canceled)
	}
	// Nothing was written.
	list, err := s.ListKiosks(context.Background())
	mustNil(t, "ListKiosks", err)
	if len(list) != 0 {
		t.Error("a write with a cancelled context was committed")
	}
}

func testClosed(t *testing.T, s store.Store) {
	mustNil(t, "Close", s.Close())
	if _, err := s.ListKiosks(context.Background()); err == nil {
		t.Error("ListKiosks after Close succeeded")
	}
	if err := s.EnrollKiosk(context.Background(), NewKiosk("y")); err == nil {
		t.Error("EnrollKiosk after Close succeeded")
	}
}
