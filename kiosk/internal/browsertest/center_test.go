package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
)

// fakeCenter verifies the card like the center and answers with
// certificates built from the demo residents' records. Its QR payloads are
// placeholders: the real center's signatures are tested end to end
// elsewhere; here only the screen matters.
type fakeCenter struct {
	verifier *carddata.Verifier
	data     *demo.Data
	gate     *gate // holds the answer, so the progress screen can be checked

	mu       sync.Mutex
	outcomes []protocol.Outcome
	n        int
}

func (f *fakeCenter) Hello() (protocol.Hello, bool) {
	var ms []protocol.Municipality
	for _, m := range f.data.Municipalities {
		if m.Participating {
			ms = append(ms, protocol.Municipality{Code: m.Code, NameJa: m.NameJa, NameEn: m.NameEn})
		}
	}
	return protocol.Hello{
		ProtocolVersion: 1, KioskID: "K-BROWSER", Time: time.Now().Format(time.RFC3339),
		Municipalities: ms, FeePerCopyYen: 120, Kinds: []string{"domestic", "overseas"}, MaxCopies: 5, HeartbeatSeconds: 15,
	}, true
}

func (f *fakeCenter) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	if err := f.gate.wait(ctx, 0); err != nil {
		return nil, err
	}
	d, err := f.verifier.Verify(req.Card)
	if err != nil {
		return nil, protocol.NewError(req.RequestID, protocol.CodeCardInvalid, "")
	}
	var r *demo.Resident
	for i := range f.data.Residents {
		if f.data.Residents[i].MyNumber == d.MyNumber {
			r = &f.data.Residents[i]
		}
	}
	if r == nil {
		return nil, protocol.NewError(req.RequestID, protocol.CodeNoRecord, "")
	}
	var rec *demo.Record
	for i := range r.Records {
		if r.Records[i].Municipality == req.Municipality {
			rec = &r.Records[i]
		}
	}
	if rec == nil {
		return nil, protocol.NewError(req.RequestID, protocol.CodeNoRecord, "")
	}
	if req.Kind == certificate.Overseas && r.PassportNumber == "" {
		return nil, protocol.NewError(req.RequestID, protocol.CodePassportRequired, "")
	}
	var muni demo.Municipality
	for _, m := range f.data.Municipalities {
		if m.Code == req.Municipality {
			muni = m
		}
	}
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	family, given, _ := strings.Cut(r.Name, "　")
	c := certificate.Certificate{
		ID: fmt.Sprintf("BT%08d", n), Kind: certificate.Domestic, IssueDate: "2026-11-23",
		Issuer: certificate.Issuer{MunicipalityCode: muni.Code, NameJa: muni.NameJa, NameEn: muni.NameEn, AuthorityJa: muni.AuthorityJa, AuthorityEn: muni.AuthorityEn},
		Holder: certificate.Holder{Name: r.Name, FamilyName: family, GivenName: given, BirthDate: r.BirthDate, Sex: r.Sex},
		SHC:    "shc:/" + strings.Repeat("56", 40),
	}
	for _, dose := range rec.Doses {
		p, err := vaccine.Lookup(dose.Product)
		if err != nil {
			return nil, err
		}
		c.Doses = append(c.Doses, certificate.Dose{Number: dose.Number, Date: dose.Date, Product: dose.Product, ProductName: p.Name,
			ManufacturerJa: p.ManufacturerJa, ManufacturerEn: p.ManufacturerEn, VaccineTypeJa: p.TypeJa, VaccineTypeEn: p.TypeEn, Lot: dose.Lot, Country: "JPN"})
	}
	certs := []certificate.Certificate{c}
	if req.Kind == certificate.Overseas {
		o := c
		o.ID = fmt.Sprintf("BO%08d", n)
		o.Kind = certificate.Overseas
		o.Holder.RomanFamily, o.Holder.RomanGiven = r.RomanFamily, r.RomanGiven
		o.Holder.Nationality, o.Holder.PassportNumber = r.Nationality, r.PassportNumber
		o.VDSNC = `{"data":{"hdr":{"t":"icao.vacc","v":1,"is":"JPN"}},"sig":{}}`
		certs = []certificate.Certificate{o, c}
	}
	return &protocol.CertificateResponse{
		RequestID: req.RequestID, CardDigest: protocol.CardDigest(req.Card),
		Certificates: certs, Copies: req.Copies, FeeYen: 120 * req.Copies,
	}, nil
}

func (f *fakeCenter) ReportOutcome(ctx context.Context, o protocol.Outcome) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outcomes = append(f.outcomes, o)
	return nil
}

func (f *fakeCenter) lastOutcome() protocol.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.outcomes) == 0 {
		return protocol.Outcome{}
	}
	return f.outcomes[len(f.outcomes)-1]
}

// fakePrinter records jobs; its gate holds a job, so the printing screen
// can be checked.
type fakePrinter struct {
	gate *gate

	mu     sync.Mutex
	jobs   int
	copies []int
}

func (p *fakePrinter) Print(ctx context.Context, name string, pdf []byte, copies int) error {
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		return errors.New("fakePrinter: not a PDF")
	}
	if err := p.gate.wait(ctx, 0); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jobs++
	p.copies = append(p.copies, copies)
	return nil
}

func (p *fakePrinter) printed() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.copies...)
}
