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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
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
// does: card_invalid, no_record, passport_required.
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
	var ms []protocol.Municipality
	for _, m := range c.data.Municipalities {
		if m.Participating {
			ms = append(ms, protocol.Municipality{Code: m.Code, NameJa: m.NameJa, NameEn: m.NameEn})
		}
	}
	return protocol.Hello{
		ProtocolVersion: 1, KioskID: "K-FLOWTEST", Time: time.Now().Format(time.RFC3339),
		Municipalities: ms, FeePerCopyYen: FeePerCopyYen, Kinds: []string{string(certificate.Domestic), string(certificate.Overseas)},
		MaxCopies: 5, HeartbeatSeconds: 15,
	}, true
}

// Issue implements flow.Center.
func (c *Center) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	c.mu.Lock()
	refuse, holder, sex := c.refuse, c.holder, c.sex
	c.mu.Unlock()
	if refuse != "" {
		return nil, protocol.NewError(req.RequestID, refuse, "")
	}
	d, err := c.verifier.Verify(req.Card)
	if err != nil {
		return nil, protocol.NewError(req.RequestID, protocol.CodeCardInvalid, "")
	}
	var r *demo.Resident
	for i := range c.data.Residents {
		if c.data.Residents[i].MyNumber == d.MyNumber {
			r = &c.data.Residents[i]
		}
	}
	if r == nil {
		return nil, protocol.NewError(req.RequestID, protocol.CodeNoRecord, "")
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
