// Package flowtest runs the kiosk's session flow in tests without an
// issuance center. It is for tests only: no production code imports it.
//
// It holds a fake center that answers the flow as the real one would for
// the demo residents, the demo cards and the PDF renderer (each made once
// per test binary), and Start, which runs a kiosk for the length of a test:
//
//	cards := flowtest.Cards(t)
//	center := flowtest.NewCenter(cards)
//	k, err := flow.New(flow.Config{Reader: slot, Verifier: cards.Verifier, Center: center,
//		Renderer: flowtest.Renderer(t), Printer: agent.Printer{P: printertest.New()}, ...})
//	flowtest.Start(t, k)                 // returns once the kiosk waits for a card
//	center.Refuse(protocol.CodeNoRecord) // refuse every request from now on
//	...
//	o := center.LastOutcome()            // what the kiosk reported
//
// The printer and the card slot need nothing here: printertest.Fake behind
// agent.Printer records jobs and injects faults (with agent.PrintCode for
// the reason codes), and demo.SlotCard (kiosk/internal/demo) puts a virtual
// card into a slot for headless.Run.
package flowtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/assets/municipalities"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/certpdf"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// FeePerCopyYen is the fee the fake center announces.
const FeePerCopyYen = 120

var (
	demoCards = sync.OnceValues(func() (*virtualcard.DemoSet, error) {
		a, err := virtualcard.GenerateAuthority("JLIS-FLOWTEST")
		if err != nil {
			return nil, err
		}
		return virtualcard.NewDemoSet(a)
	})
	renderer = sync.OnceValues(certpdf.NewRenderer)
)

// Cards returns the virtual cards of the demo residents, issued by a test
// card issuing authority made once per test binary. It fails tb on error.
func Cards(tb testing.TB) *virtualcard.DemoSet {
	tb.Helper()
	s, err := demoCards()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Renderer returns the certificate PDF renderer, made once per test binary.
// It fails tb on error.
func Renderer(tb testing.TB) *certpdf.Renderer {
	tb.Helper()
	r, err := renderer()
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// Start runs k until the test ends, and returns once k waits for a card:
// a card placed before that would be taken for one left on the reader by
// the previous resident.
func Start(tb testing.TB, k *flow.Kiosk) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !k.Snapshot().Ready {
		if time.Now().After(deadline) {
			tb.Fatal("flowtest: the kiosk did not become ready for a card within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Center is a fake issuance center (a flow.Center). It verifies the card
// data as the center does, finds the demo resident by the My Number read,
// and answers with certificates built from the resident's ledger record in
// the municipality asked for (certtest.FromRecord): a domestic one,
// preceded by an overseas one for overseas use. It refuses as the center
// does: card_invalid, no_record, counter_only (demo.Resident.SentToCounter),
// passport_required.
//
// The certificates of the n-th answer have the IDs FD0000000n (domestic)
// and FO0000000n (overseas). Their QR payloads are placeholders: the real
// center's signatures are tested end to end (kiosk/internal/e2e).
//
// It is safe for concurrent use.
type Center struct {
	verifier *carddata.Verifier
	data     *demo.Data

	mu       sync.Mutex
	refuse   protocol.Code
	holder   string
	sex      string
	answered int
	outcomes []protocol.Outcome
	noCheck  bool
	national nationalMode
	anyMuni  bool
	doses    int
	checks   []string
}

type nationalMode int

const (
	demoOnly nationalMode = iota
	nationalDemoParticipating
	nationalAllParticipating
)

// national is the shipped national list as the center sends it, made once.
var national = sync.OnceValues(func() ([]protocol.Municipality, error) {
	l, err := municipalities.Shipped()
	if err != nil {
		return nil, err
	}
	var out []protocol.Municipality
	for _, b := range l.Municipalities {
		if municipalities.NoAdministration(b.Code) {
			continue
		}
		out = append(out, protocol.Municipality{Code: b.Code, NameJa: b.Name, NameEn: b.EnglishName(), Kana: b.NameKana, Kind: string(b.Kind)})
	}
	return out, nil
})

// UseNationalList makes Hello list the 1,741 municipalities of the shipped
// national list (assets/municipalities): all participating when all is
// true, else only the demo's participating ones, the others listed as not
// participating.
func (c *Center) UseNationalList(all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.national = nationalDemoParticipating
	if all {
		c.national = nationalAllParticipating
	}
}

// WithoutCheck makes the center an older one that does not answer Check
// (Hello does not announce it): refusals then come from Issue.
func (c *Center) WithoutCheck() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noCheck = true
}

// CheckAnyMunicipality makes Check find the resident's record in every
// municipality (the domestic kind only where the demo has no record), for
// walking the municipality screen through every prefecture.
func (c *Center) CheckAnyMunicipality() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.anyMuni = true
}

// SetDoses makes later answers carry n doses (1 to
// certificate.MaxDoses): the resident's record, cut or extended with
// further doses a month apart; 0 answers the record as it is.
func (c *Center) SetDoses(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.doses = n
}

// Checks returns the municipalities checked so far, in order.
func (c *Center) Checks() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.checks...)
}

// NewCenter returns a center that accepts the cards of set.
func NewCenter(set *virtualcard.DemoSet) *Center {
	return &Center{verifier: set.Verifier, data: set.Residents}
}

// Refuse makes every later request fail with code, as the center refuses
// one ("" answers again).
func (c *Center) Refuse(code protocol.Code) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = code
}

// AnswerWithHolder makes later answers name another holder than the card's
// (name as registered, family and given name separated by an ideographic
// space), so that the kiosk's binding check must refuse to print.
func (c *Center) AnswerWithHolder(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holder = name
}

// AnswerWithSex makes later answers give the holder the ISO/IEC 5218 sex
// code sex instead of the record's ("" answers with the record's again).
func (c *Center) AnswerWithSex(sex string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sex = sex
}

// Hello implements flow.Center: the participating demo municipalities, both
// kinds, FeePerCopyYen a copy and at most 5 copies.
func (c *Center) Hello() (protocol.Hello, bool) {
	c.mu.Lock()
	mode, noCheck := c.national, c.noCheck
	c.mu.Unlock()
	h := protocol.Hello{
		ProtocolVersion: 1, KioskID: "K-FLOWTEST", Time: time.Now().Format(time.RFC3339),
		FeePerCopyYen: FeePerCopyYen, Kinds: []string{string(certificate.Domestic), string(certificate.Overseas)},
		MaxCopies: 5, HeartbeatSeconds: 15,
	}
	if !noCheck {
		h.Features = []string{protocol.FeatureCheck}
	}
	list, err := national()
	if err != nil {
		panic("flowtest: the shipped national list: " + err.Error())
	}
	demoPart := map[string]bool{}
	for _, m := range c.data.Municipalities {
		demoPart[m.Code] = m.Participating
		if mode == demoOnly {
			// With its reading and kind from the national list, as the
			// center sends them once the list is imported.
			pm := protocol.Municipality{Code: m.Code, NameJa: m.NameJa, NameEn: m.NameEn}
			if m.Participating {
				pm.CounterJa, pm.CounterEn = m.CounterJa, m.CounterEn
			}
			if i := slices.IndexFunc(list, func(x protocol.Municipality) bool { return x.Code == m.Code }); i >= 0 {
				pm.Kana, pm.Kind = list[i].Kana, list[i].Kind
			}
			if m.Participating {
				h.Municipalities = append(h.Municipalities, pm)
			} else {
				h.NotParticipating = append(h.NotParticipating, pm)
			}
		}
	}
	if mode != demoOnly {
		for _, m := range list {
			if mode == nationalAllParticipating || demoPart[m.Code] {
				h.Municipalities = append(h.Municipalities, m)
			} else {
				h.NotParticipating = append(h.NotParticipating, m)
			}
		}
	}
	return h, true
}

// Check implements flow.Checker as the center does: the record must be in
// that municipality (a Refuse code refuses checks too). It records the
// municipality checked.
func (c *Center) Check(ctx context.Context, req protocol.Check) (*protocol.Checked, error) {
	c.mu.Lock()
	refuse, anyMuni := c.refuse, c.anyMuni
	c.checks = append(c.checks, req.Municipality)
	c.mu.Unlock()
	if refuse != "" {
		return nil, protocol.NewError(req.RequestID, refuse, "")
	}
	r, perr := c.resident(req.RequestID, req.Card)
	if perr != nil {
		return nil, perr
	}
	i := slices.IndexFunc(r.Records, func(rec demo.Record) bool { return rec.Municipality == req.Municipality })
	has := i >= 0
	if !has && !anyMuni {
		return nil, protocol.NewError(req.RequestID, protocol.CodeNoRecord, "")
	}
	if has && r.SentToCounter(r.Records[i]) {
		return nil, protocol.NewError(req.RequestID, protocol.CodeCounterOnly, "")
	}
	kinds := []string{string(certificate.Domestic)}
	if has && r.PassportNumber != "" {
		kinds = append(kinds, string(certificate.Overseas))
	}
	return &protocol.Checked{RequestID: req.RequestID, CardDigest: protocol.CardDigest(req.Card), Kinds: kinds}, nil
}

// resident finds the demo resident whose verified card this is.
func (c *Center) resident(requestID string, card protocol.CardFiles) (*demo.Resident, *protocol.Error) {
	d, err := c.verifier.Verify(card)
	if err != nil {
		return nil, protocol.NewError(requestID, protocol.CodeCardInvalid, "")
	}
	for i := range c.data.Residents {
		if c.data.Residents[i].MyNumber == d.MyNumber {
			return &c.data.Residents[i], nil
		}
	}
	return nil, protocol.NewError(requestID, protocol.CodeNoRecord, "")
}

// Issue implements flow.Center.
func (c *Center) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	c.mu.Lock()
	refuse, holder, sex, doses := c.refuse, c.holder, c.sex, c.doses
	c.mu.Unlock()
	if refuse != "" {
		return nil, protocol.NewError(req.RequestID, refuse, "")
	}
	r, perr := c.resident(req.RequestID, req.Card)
	if perr != nil {
		return nil, perr
	}
	// As the center: residents sent to the counter, before the passport.
	if i := slices.IndexFunc(r.Records, func(rec demo.Record) bool { return rec.Municipality == req.Municipality }); i >= 0 && r.SentToCounter(r.Records[i]) {
		return nil, protocol.NewError(req.RequestID, protocol.CodeCounterOnly, "")
	}
	if req.Kind == certificate.Overseas && r.PassportNumber == "" {
		return nil, protocol.NewError(req.RequestID, protocol.CodePassportRequired, "")
	}
	kinds := []certificate.Kind{certificate.Domestic}
	if req.Kind == certificate.Overseas {
		kinds = []certificate.Kind{certificate.Overseas, certificate.Domestic}
	}
	var certs []certificate.Certificate
	for _, kind := range kinds {
		cert, err := certtest.FromRecord(c.data, *r, req.Municipality, kind)
		if errors.Is(err, certtest.ErrNoRecord) {
			return nil, protocol.NewError(req.RequestID, protocol.CodeNoRecord, "")
		}
		if err != nil {
			return nil, err
		}
		if holder != "" {
			cert.Holder.Name = holder
			cert.Holder.FamilyName, cert.Holder.GivenName, _ = strings.Cut(holder, "\u3000")
		}
		if sex != "" {
			cert.Holder.Sex = sex
		}
		if doses > 0 {
			cert.Doses = withDoses(cert.Doses, doses)
		}
		cert.SHC = "shc:/" + strings.Repeat("56", 40)
		if kind == certificate.Overseas {
			cert.VDSNC = `{"data":{"hdr":{"t":"icao.vacc","v":1,"is":"JPN"}},"sig":{}}`
		}
		certs = append(certs, *cert)
	}
	c.mu.Lock()
	c.answered++
	n := c.answered
	c.mu.Unlock()
	for i := range certs {
		certs[i].ID = fmt.Sprintf("FD%08d", n)
		if certs[i].Kind == certificate.Overseas {
			certs[i].ID = fmt.Sprintf("FO%08d", n)
		}
	}
	return &protocol.CertificateResponse{
		RequestID: req.RequestID, CardDigest: protocol.CardDigest(req.Card),
		Certificates: certs, Copies: req.Copies, FeeYen: FeePerCopyYen * req.Copies,
	}, nil
}

// withDoses cuts ds to n doses or extends it with copies of its last dose
// a month apart.
func withDoses(ds []certificate.Dose, n int) []certificate.Dose {
	if n <= len(ds) {
		return ds[:n]
	}
	out := slices.Clone(ds)
	last := ds[len(ds)-1]
	date, _ := time.Parse(time.DateOnly, last.Date)
	for len(out) < n {
		d := last
		d.Number = len(out) + 1
		date = date.AddDate(0, 1, 0)
		d.Date = date.Format(time.DateOnly)
		d.Lot = fmt.Sprintf("%s%d", last.Lot[:min(len(last.Lot), 4)], d.Number)
		out = append(out, d)
	}
	return out
}

// ReportOutcome implements flow.Center and records o.
func (c *Center) ReportOutcome(ctx context.Context, o protocol.Outcome) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outcomes = append(c.outcomes, o)
	return nil
}

// LastOutcome returns the outcome reported last (the zero Outcome if none).
func (c *Center) LastOutcome() protocol.Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.outcomes) == 0 {
		return protocol.Outcome{}
	}
	return c.outcomes[len(c.outcomes)-1]
}
