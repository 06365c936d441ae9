package issuance

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv/demoledger"
	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
	"github.com/kioskcert/kioskcert/pkg/protocol"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/tlv"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// The fakes below are hand-written stand-ins for the store and the records
// vault: maps behind a mutex, with an optional injected error so the
// internal-error paths can be reached. The card verifier and both signers
// are the real ones with test keys.

const (
	testIssuerURL = "https://issuer.test/kioskcert"
	asahikawa     = "012041"
	sapporo       = "011002"
	fujimino      = "112453"
	goodKiosk     = "K-GOOD"
)

// testNow is the fixed clock of the tests: 2024-04-01 10:00 JST.
var testNow = time.Date(2024, 4, 1, 10, 0, 0, 0, time.FixedZone("JST", 9*3600))

type fakeKiosks struct {
	mu     sync.Mutex
	kiosks map[string]store.Kiosk
	err    error
}

func (f *fakeKiosks) Kiosk(ctx context.Context, id string) (store.Kiosk, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return store.Kiosk{}, f.err
	}
	k, ok := f.kiosks[id]
	if !ok {
		return store.Kiosk{}, store.ErrNotFound
	}
	return k, nil
}

type fakeMunicipalities struct {
	mu    sync.Mutex
	munis map[string]store.Municipality
	err   error
}

func (f *fakeMunicipalities) Municipality(ctx context.Context, code string) (store.Municipality, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return store.Municipality{}, f.err
	}
	m, ok := f.munis[code]
	if !ok {
		return store.Municipality{}, store.ErrNotFound
	}
	return m, nil
}

// fakeRecords holds records per municipality and My Number, and counts
// lookups so tests can check that refused requests never reach the records.
type fakeRecords struct {
	mu      sync.Mutex
	regions map[string]map[string]records.Record
	err     error
	lookups int
}

func (f *fakeRecords) Lookup(ctx context.Context, municipality, myNumber string) (records.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.err != nil {
		return records.Record{}, f.err
	}
	if mynumber.Validate(myNumber) != nil {
		return records.Record{}, records.ErrBadMyNumber
	}
	region, ok := f.regions[municipality]
	if !ok {
		return records.Record{}, records.ErrNoRegion
	}
	r, ok := region[myNumber]
	if !ok {
		return records.Record{}, records.ErrNoRecord
	}
	return r, nil
}

func (f *fakeRecords) put(myNumber string, r records.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.regions[r.Municipality] == nil {
		f.regions[r.Municipality] = map[string]records.Record{}
	}
	f.regions[r.Municipality][myNumber] = r
}

func (f *fakeRecords) lookupCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

// failingRegister is the real bbolt register with one fault injected:
// every write that carries an event of type failOn fails, as a full disk
// would fail it.
type failingRegister struct {
	*boltstore.Store
	mu     sync.Mutex
	failOn store.EventType
}

var errDiskFull = errors.New("fake register: disk full")

func (f *failingRegister) fails(events []store.Event) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range events {
		if f.failOn != "" && e.Type == f.failOn {
			return true
		}
	}
	return false
}

func (f *failingRegister) ClaimRequest(ctx context.Context, r store.Request, staleBefore time.Time, events ...store.Event) (store.Request, error) {
	if f.fails(events) {
		return store.Request{}, errDiskFull
	}
	return f.Store.ClaimRequest(ctx, r, staleBefore, events...)
}

// AppendEvent fails like the other writes (Check's counter_only event).
func (f *failingRegister) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	if f.fails([]store.Event{e}) {
		return store.Event{}, errDiskFull
	}
	return f.Store.AppendEvent(ctx, e)
}

func (f *failingRegister) FinishRequest(ctx context.Context, id string, attempt int, fin store.RequestFinish, events ...store.Event) (store.Request, error) {
	if f.fails(events) {
		return store.Request{}, errDiskFull
	}
	return f.Store.FinishRequest(ctx, id, attempt, fin, events...)
}

// all returns every audit event in append order.
func (f *failingRegister) all(t testing.TB) []store.Event {
	t.Helper()
	evs, err := f.Events(context.Background(), store.EventQuery{Limit: store.MaxEventLimit})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(evs, func(a, b store.Event) int { return int(a.Seq) - int(b.Seq) })
	return evs
}

// countingSHC wraps the real SMART Health Card issuer and counts signatures.
type countingSHC struct {
	mu    sync.Mutex
	inner *shc.Issuer
	calls int
}

func (c *countingSHC) Issue(cert *certificate.Certificate, nbf time.Time) (string, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.inner.Issue(cert, nbf)
}

func (c *countingSHC) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// countingVDS wraps the real VDS-NC signer, counts calls and remembers the
// last error.
type countingVDS struct {
	mu      sync.Mutex
	inner   *vdsnc.Signer
	calls   int
	lastErr error
}

func (c *countingVDS) Sign(d *vdsnc.Data) ([]byte, error) {
	doc, err := c.inner.Sign(d)
	c.mu.Lock()
	c.calls++
	c.lastErr = err
	c.mu.Unlock()
	return doc, err
}

func (c *countingVDS) result() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls, c.lastErr
}

// testKeys are made once per test binary: RSA-2048 generation is slow
// under the race detector.
type testKeys struct {
	auth      carddata.Authority
	otherAuth carddata.Authority // trusted by nobody
	apKey     *rsa.PrivateKey
	shcKey    *ecdsa.PrivateKey
	vdsKey    *ecdsa.PrivateKey
	vdsCert   []byte
	cscaCert  *x509.Certificate
	ridSecret []byte
}

var (
	keysOnce sync.Once
	keys     *testKeys
	keysErr  error
)

func loadKeys(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() { keys, keysErr = makeKeys() })
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return keys
}

func makeKeys() (*testKeys, error) {
	k := &testKeys{ridSecret: bytes.Repeat([]byte{0x5a}, shc.MinRIDSecretLen)}
	var err error
	for _, a := range []struct {
		dst  *carddata.Authority
		name string
	}{{&k.auth, "JLIS-TEST-ISSUAN"}, {&k.otherAuth, "UNTRUSTED-ISSUER"}} {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		a.dst.Signer = rk
		copy(a.dst.KeyID[:], a.name)
	}
	if k.apKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.shcKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	cscaKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cscaDER, err := vdsnc.CreateCSCA(rand.Reader, vdsnc.CSCATemplate{CommonName: "Issuance Test CSCA", Country: "JP",
		NotBefore: testNow.Add(-24 * time.Hour), NotAfter: testNow.Add(10 * 365 * 24 * time.Hour)}, cscaKey)
	if err != nil {
		return nil, err
	}
	if k.cscaCert, err = x509.ParseCertificate(cscaDER); err != nil {
		return nil, err
	}
	if k.vdsKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	k.vdsCert, err = vdsnc.CreateBarcodeSigner(rand.Reader, vdsnc.SignerTemplate{CommonName: "Issuance Test Signer", Country: "JP",
		NotBefore: testNow.Add(-24 * time.Hour), NotAfter: testNow.Add(2 * 365 * 24 * time.Hour)}, &k.vdsKey.PublicKey, cscaDER, cscaKey)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// syncBuffer collects the service's log for the personal-data scan.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is a Service over fakes with the demo municipalities, the demo
// residents' records and three kiosks: K-GOOD (active), K-SUSP (suspended)
// and K-REVOKED (revoked).
type fixture struct {
	keys    *testKeys
	demo    *demo.Data
	kiosks  *fakeKiosks
	munis   *fakeMunicipalities
	records *fakeRecords
	audit   *failingRegister
	shc     *countingSHC
	vds     *countingVDS
	log     *syncBuffer
	svc     *Service
}

type fixtureOption func(*Config)

// withoutVDS configures no VDS-NC signer (the overseas kind is not offered).
func withoutVDS(c *Config) { c.VDS = nil }

func newFixture(t testing.TB, opts ...fixtureOption) *fixture {
	t.Helper()
	k := loadKeys(t)
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		keys: k, demo: d,
		kiosks:  &fakeKiosks{kiosks: map[string]store.Kiosk{}},
		munis:   &fakeMunicipalities{munis: map[string]store.Municipality{}},
		records: &fakeRecords{regions: map[string]map[string]records.Record{}},
		log:     &syncBuffer{},
	}
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.audit = &failingRegister{Store: st}
	for _, st := range []struct {
		id     string
		status store.KioskStatus
	}{{goodKiosk, store.KioskActive}, {"K-SUSP", store.KioskSuspended}, {"K-REVOKED", store.KioskRevoked}} {
		f.kiosks.kiosks[st.id] = store.Kiosk{ID: st.id, StoreCode: "S-" + st.id, Status: st.status}
	}
	for _, m := range d.Municipalities {
		f.munis.munis[m.Code] = store.Municipality{Code: m.Code, NameJa: m.NameJa, NameEn: m.NameEn,
			AuthorityJa: m.AuthorityJa, AuthorityEn: m.AuthorityEn, Participating: m.Participating}
		entries, err := demoledger.FromDemo(d, m.Code)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			f.records.put(e.MyNumber, e.Record)
		}
	}
	ik, err := k.auth.IssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := carddata.NewVerifier(ik)
	if err != nil {
		t.Fatal(err)
	}
	shcIssuer, err := shc.NewIssuer(testIssuerURL, k.shcKey, k.ridSecret)
	if err != nil {
		t.Fatal(err)
	}
	f.shc = &countingSHC{inner: shcIssuer}
	vdsSigner, err := vdsnc.NewSigner(k.vdsKey, k.vdsCert)
	if err != nil {
		t.Fatal(err)
	}
	f.vds = &countingVDS{inner: vdsSigner}
	cfg := Config{
		Kiosks: f.kiosks, Municipalities: f.munis, Records: f.records, Register: f.audit,
		Cards: verifier, SHC: f.shc, VDS: f.vds, FeePerCopyYen: 120,
		Now: func() time.Time { return testNow },
		Log: slog.New(slog.NewJSONHandler(f.log, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if f.svc, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// issue calls Issue and maps its error the way the websocket edge does.
func (f *fixture) issue(ctx context.Context, req Request) (*protocol.CertificateResponse, *protocol.Error) {
	resp, err := f.svc.Issue(ctx, req)
	if err != nil {
		return resp, refusal.Public(req.RequestID, err)
	}
	return resp, nil
}

func (f *fixture) resident(t testing.TB, id string) demo.Resident {
	t.Helper()
	r, err := f.demo.Resident(id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// card makes the signed card files of a demo resident as the test
// authority personalises them; edit changes the four items first (a
// validly signed card whose holder differs from the record).
func (f *fixture) card(t testing.TB, id string, edit func(*carddata.FourItems)) carddata.Raw {
	t.Helper()
	return f.cardBy(t, f.keys.auth, f.resident(t, id), edit)
}

func (f *fixture) cardBy(t testing.TB, a carddata.Authority, r demo.Resident, edit func(*carddata.FourItems)) carddata.Raw {
	t.Helper()
	items := carddata.FourItems{Name: r.Name, Address: r.Address, BirthDate: r.CardBirthDate(), Sex: carddata.Sex(r.Sex[0])}
	if edit != nil {
		edit(&items)
	}
	var sub [carddata.KeyIDLen]byte
	copy(sub[:], r.ID)
	raw, err := a.Personalize(r.MyNumber, items, f.keys.apKey, sub)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// cardWithNumber makes a card that the AP key validly signs although its My
// Number has a wrong check digit: Personalize refuses such a number, so the
// signature file is rebuilt here the way the card's AP does it (DF 31 and
// DF 32 hashes, DF 33 over both TLVs).
func (f *fixture) cardWithNumber(t testing.TB, id, number string) carddata.Raw {
	t.Helper()
	raw := f.card(t, id, nil)
	raw.MyNumber = carddata.EncodeMyNumber(number)
	outer, err := tlv.ParseOne(raw.FourItems)
	if err != nil {
		t.Fatal(err)
	}
	_, signed, err := tlv.Next(outer.Value) // skip the DF 21 offsets header
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := sha256.Sum256(raw.MyNumber), sha256.Sum256(signed)
	value := append(tlv.Encode(carddata.TagMyNumberHash, h1[:]), tlv.Encode(carddata.TagFourItemsHash, h2[:])...)
	digest := sha256.Sum256(value)
	sig, err := f.keys.apKey.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	raw.Signature = tlv.Encode(carddata.TagSignatureFile, append(value, tlv.Encode(carddata.TagDataSignature, sig)...))
	return raw
}

// request is an issue request from K-GOOD for one copy.
func request(id, muni string, kind certificate.Kind, card carddata.Raw) Request {
	r := Request{KioskID: goodKiosk}
	r.RequestID, r.Municipality, r.Kind, r.Copies, r.Card = id, muni, kind, 1, card
	return r
}

// personalData lists a demo resident's identifying values: none may appear
// in an audit event or a log line.
func personalData(r demo.Resident) []string {
	out := []string{r.MyNumber, r.Name, r.Address, r.CardBirthDate()}
	if r.BirthDate != "" {
		out = append(out, r.BirthDate)
	}
	if r.PassportNumber != "" {
		out = append(out, r.PassportNumber)
	}
	if r.RomanFamily != "" {
		out = append(out, r.RomanFamily, r.RomanGiven)
	}
	return out
}

func refusalPublic(err error) *protocol.Error { return refusal.Public("", err) }
