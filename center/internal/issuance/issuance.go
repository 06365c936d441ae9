// Package issuance is the narrow, audited path from a kiosk's request to a
// signed vaccination certificate. The websocket handler calls Issue and
// never holds a key; Issue takes its signers as interfaces backed by
// crypto.Signer and runs, in order:
//
//  1. audit "requested" (so refused requests are accounted for too);
//  2. the kiosk is enrolled and active;
//  3. the municipality exists and offers kiosk issuance; kind and copies are offered;
//  4. the card data verifies against the configured issuing-authority keys;
//  5. My Number's check digit is right (before any lookup);
//  6. the record is found in that municipality's region;
//  7. the card's holder is the record's holder (birth date, and name after
//     normalising width and spaces);
//  8. the overseas kind has passport data on record;
//  9. the certificates are built and linted (lint mints the only value sign accepts);
//  10. the QR payloads are signed;
//  11. audit "issued" (or "refused"/"failed" with the reason);
//  12. the response is bound to the request ID and the card-data digest.
//
// Nothing about the request outlives Issue but the audit events, which hold
// identifiers, codes and counts only.
package issuance

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certid"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
	"github.com/kioskcert/kioskcert/pkg/protocol"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// Kiosks looks up enrolled kiosks.
type Kiosks interface {
	Kiosk(ctx context.Context, id string) (store.Kiosk, error)
}

// Municipalities looks up municipalities.
type Municipalities interface {
	Municipality(ctx context.Context, code string) (store.Municipality, error)
}

// Records looks up a person's record in one municipality's region.
type Records interface {
	Lookup(ctx context.Context, municipality, myNumber string) (records.Record, error)
}

// Audit appends audit events.
type Audit interface {
	AppendEvent(ctx context.Context, e store.Event) (store.Event, error)
}

// CardVerifier verifies card data (carddata.Verifier).
type CardVerifier interface {
	Verify(raw carddata.Raw) (*carddata.Data, error)
}

// SHCIssuer signs SMART Health Cards (shc.Issuer).
type SHCIssuer interface {
	Issue(c *certificate.Certificate, nbf time.Time) (string, error)
}

// VDSSigner signs ICAO VDS-NC documents (vdsnc.Signer).
type VDSSigner interface {
	Sign(d *vdsnc.Data) ([]byte, error)
}

// Config wires the service. Every field but VDS is required; without VDS
// the overseas kind is not offered.
type Config struct {
	Kiosks         Kiosks
	Municipalities Municipalities
	Records        Records
	Audit          Audit
	Cards          CardVerifier
	SHC            SHCIssuer
	VDS            VDSSigner
	FeePerCopyYen  int
	// Now is the clock; Rand the entropy for certificate IDs. Tests inject both.
	Now  func() time.Time
	Rand io.Reader
	Log  *slog.Logger
}

// Service issues certificates. It is safe for concurrent use.
type Service struct {
	cfg Config
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Kiosks == nil || cfg.Municipalities == nil || cfg.Records == nil || cfg.Audit == nil || cfg.Cards == nil || cfg.SHC == nil {
		return nil, errors.New("issuance: kiosks, municipalities, records, audit, card verifier and SHC issuer are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Service{cfg: cfg}, nil
}

// Kinds returns the certificate kinds this service offers.
func (s *Service) Kinds() []string {
	if s.cfg.VDS == nil {
		return []string{string(certificate.Domestic)}
	}
	return []string{string(certificate.Domestic), string(certificate.Overseas)}
}

// FeePerCopyYen returns the fee per copy.
func (s *Service) FeePerCopyYen() int { return s.cfg.FeePerCopyYen }

// Request is one kiosk's issue request, after the kiosk was authenticated.
type Request struct {
	KioskID string
	protocol.Issue
}

// jst is Japan Standard Time, the calendar the issue date is printed in.
var jst = time.FixedZone("JST", 9*60*60)

// Issue runs the numbered steps of the package documentation. Refusals and
// failures come back as *protocol.Error with a stable code.
func (s *Service) Issue(ctx context.Context, req Request) (*protocol.CertificateResponse, *protocol.Error) {
	start := s.cfg.Now()
	ev := store.Event{
		Type: store.EventRequested, KioskID: req.KioskID, RequestID: req.RequestID,
		Municipality: req.Municipality, Kind: req.Kind, Copies: req.Copies,
	}
	// 1. Audit before anything else.
	if err := s.audit(ctx, ev, start); err != nil {
		return nil, s.fail(ctx, ev, start, protocol.CodeInternal, fmt.Errorf("audit requested: %w", err))
	}
	resp, perr, cause := s.issue(ctx, req, &ev)
	if perr != nil {
		if perr.Code == protocol.CodeInternal || perr.Code == protocol.CodeUnavailable {
			return nil, s.fail(ctx, ev, start, perr.Code, cause)
		}
		return nil, s.refuse(ctx, ev, start, perr)
	}
	// 11. Audit the issuance, one event per certificate.
	for _, c := range resp.Certificates {
		e := ev
		e.Type, e.Kind, e.CertificateID, e.Result = store.EventIssued, c.Kind, c.ID, "ok"
		if err := s.audit(ctx, e, start); err != nil {
			// A certificate we cannot account for is not handed out.
			return nil, s.fail(ctx, ev, start, protocol.CodeInternal, fmt.Errorf("audit issued: %w", err))
		}
	}
	return resp, nil
}

func (s *Service) issue(ctx context.Context, req Request, ev *store.Event) (*protocol.CertificateResponse, *protocol.Error, error) {
	refuse := func(code protocol.Code, detail string) (*protocol.CertificateResponse, *protocol.Error, error) {
		return nil, protocol.NewError(req.RequestID, code, detail), nil
	}
	internal := func(err error) (*protocol.CertificateResponse, *protocol.Error, error) {
		if ctx.Err() != nil {
			return nil, protocol.NewError(req.RequestID, protocol.CodeUnavailable, "deadline passed"), err
		}
		return nil, protocol.NewError(req.RequestID, protocol.CodeInternal, ""), err
	}

	// 2. The kiosk must be enrolled and active. The handshake checked this
	//    too; checking again closes the window of a suspension mid-connection.
	k, err := s.cfg.Kiosks.Kiosk(ctx, req.KioskID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(protocol.CodeKioskNotAllowed, "kiosk not enrolled")
	case err != nil:
		return internal(fmt.Errorf("look up kiosk: %w", err))
	case k.Status != store.KioskActive:
		return refuse(protocol.CodeKioskNotAllowed, "kiosk is "+string(k.Status))
	}
	ev.StoreCode = k.StoreCode

	// 3. Only participating municipalities; only offered kinds and copies.
	m, err := s.cfg.Municipalities.Municipality(ctx, req.Municipality)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(protocol.CodeUnknownMunicipality, "")
	case err != nil:
		return internal(fmt.Errorf("look up municipality: %w", err))
	case !m.Participating:
		return refuse(protocol.CodeNotParticipating, "")
	}
	if req.Kind == certificate.Overseas && s.cfg.VDS == nil {
		return refuse(protocol.CodeKindNotOffered, "no VDS-NC signer configured")
	}
	if req.Copies < 1 || req.Copies > protocol.MaxCopies {
		return refuse(protocol.CodeTooManyCopies, "")
	}

	// 4. Verify the card data authoritatively: the kiosk's own check is
	//    only a fast rejection, and a kiosk's word proves nothing.
	card, err := s.cfg.Cards.Verify(req.Card)
	switch {
	case errors.Is(err, mynumber.ErrCheckDigit) || errors.Is(err, mynumber.ErrFormat):
		// 5. A wrong check digit is refused before any lookup.
		return refuse(protocol.CodeMyNumberInvalid, "")
	case errors.Is(err, carddata.ErrUnknownIssuer):
		return refuse(protocol.CodeCardIssuerUnknown, "")
	case err != nil:
		return refuse(protocol.CodeCardInvalid, safeCardError(err))
	}
	if err := mynumber.Validate(card.MyNumber); err != nil {
		return refuse(protocol.CodeMyNumberInvalid, "")
	}

	// 6. The record, in that municipality's region only.
	rec, err := s.cfg.Records.Lookup(ctx, req.Municipality, card.MyNumber)
	switch {
	case errors.Is(err, records.ErrNoRecord), errors.Is(err, records.ErrNoRegion):
		return refuse(protocol.CodeNoRecord, "")
	case errors.Is(err, records.ErrBadMyNumber):
		return refuse(protocol.CodeMyNumberInvalid, "")
	case err != nil:
		return internal(fmt.Errorf("look up record: %w", err))
	}

	// 7. The card's holder must be the record's holder.
	if !SameHolder(card.FourItems, rec) {
		return refuse(protocol.CodeHolderMismatch, "")
	}

	// 8. Overseas use needs passport data on record: the kiosk reads no passport.
	if req.Kind == certificate.Overseas && (rec.PassportNumber == "" || rec.RomanFamily == "" || rec.Nationality == "") {
		return refuse(protocol.CodePassportRequired, "")
	}

	// 9. Build and lint. 10. Sign.
	kinds := []certificate.Kind{certificate.Domestic}
	if req.Kind == certificate.Overseas {
		kinds = []certificate.Kind{certificate.Overseas, certificate.Domestic}
	}
	now := s.cfg.Now()
	resp := &protocol.CertificateResponse{
		RequestID:  req.RequestID,
		CardDigest: protocol.CardDigest(req.Card),
		Copies:     req.Copies,
		FeeYen:     req.Copies * s.cfg.FeePerCopyYen,
	}
	for _, kind := range kinds {
		c, err := s.build(kind, m, rec, now)
		if err != nil {
			return internal(err)
		}
		l, err := lint(c)
		if err != nil {
			return internal(err)
		}
		signed, err := s.sign(l, now)
		if err != nil {
			return internal(err)
		}
		resp.Certificates = append(resp.Certificates, *signed)
	}
	return resp, nil, nil
}

// safeCardError names which check failed without any card content.
func safeCardError(err error) string {
	for _, e := range []error{carddata.ErrMyNumberHash, carddata.ErrFourItemsHash, carddata.ErrCertificateSignature, carddata.ErrDataSignature, carddata.ErrMalformed} {
		if errors.Is(err, e) {
			return strings.TrimPrefix(e.Error(), "carddata: ")
		}
	}
	return "card data did not verify"
}

// SameHolder reports whether the card's four items name the record's
// holder: the same birth date, and the same name once Unicode width and
// all spaces are normalised away (cards and ledgers differ in full- and
// half-width forms and in the space between family and given names).
func SameHolder(card carddata.FourItems, rec records.Record) bool {
	if strings.ReplaceAll(rec.BirthDate, "-", "") != card.BirthDate {
		return false
	}
	return normalizeName(card.Name) == normalizeName(rec.Name)
}

func normalizeName(s string) string {
	s = norm.NFKC.String(s)
	return strings.Map(func(r rune) rune {
		if isNameSpace(r) || r == '\t' {
			return -1
		}
		return r
	}, s)
}

func (s *Service) build(kind certificate.Kind, m store.Municipality, rec records.Record, now time.Time) (*certificate.Certificate, error) {
	id, err := certid.New(s.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("issuance: certificate ID: %w", err)
	}
	family, given := splitName(rec.Name)
	c := &certificate.Certificate{
		ID:        id,
		Kind:      kind,
		IssueDate: now.In(jst).Format(time.DateOnly),
		Issuer: certificate.Issuer{
			MunicipalityCode: m.Code, NameJa: m.NameJa, NameEn: m.NameEn,
			AuthorityJa: m.AuthorityJa, AuthorityEn: m.AuthorityEn,
		},
		Holder: certificate.Holder{
			Name: rec.Name, FamilyName: family, GivenName: given,
			BirthDate: rec.BirthDate, Sex: rec.Sex,
		},
	}
	if kind == certificate.Overseas {
		c.Holder.RomanFamily, c.Holder.RomanGiven = rec.RomanFamily, rec.RomanGiven
		c.Holder.Nationality, c.Holder.PassportNumber = rec.Nationality, rec.PassportNumber
	}
	for _, d := range rec.Doses {
		p, err := vaccine.Lookup(d.Product)
		if err != nil {
			return nil, fmt.Errorf("issuance: dose %d: %w", d.Number, err)
		}
		c.Doses = append(c.Doses, certificate.Dose{
			Number: d.Number, Date: d.Date, Product: p.Code, ProductName: p.Name,
			ManufacturerJa: p.ManufacturerJa, ManufacturerEn: p.ManufacturerEn,
			VaccineTypeJa: p.TypeJa, VaccineTypeEn: p.TypeEn,
			Lot: d.Lot, Country: "JPN",
		})
	}
	return c, nil
}

// splitName splits a registered name at its first space (full- or
// half-width) into family and given names.
func splitName(name string) (family, given string) {
	i := strings.IndexFunc(name, isNameSpace)
	if i <= 0 {
		return name, ""
	}
	return name[:i], strings.TrimFunc(name[i:], isNameSpace)
}

func isNameSpace(r rune) bool { return r == ' ' || r == '\u3000' }

// linted is a certificate that passed lint, with the VDS-NC data lint built
// for the overseas kind. Only lint makes one, and sign takes nothing else,
// so nothing is signed unlinted.
type linted struct {
	c   *certificate.Certificate
	vds *vdsnc.Data
}

func lint(c *certificate.Certificate) (linted, error) {
	if err := c.ValidateContent(); err != nil {
		return linted{}, fmt.Errorf("issuance: lint: %w", err)
	}
	l := linted{c: c}
	if c.Kind == certificate.Overseas {
		// Build checks the ICAO field limits (name ≤ 39, passport ≤ 11, lot ≤ 20, …).
		d, err := vdsnc.Build(c)
		if err != nil {
			return linted{}, fmt.Errorf("issuance: lint: %w", err)
		}
		l.vds = d
	}
	return l, nil
}

func (s *Service) sign(l linted, now time.Time) (*certificate.Certificate, error) {
	c := l.c
	qr, err := s.cfg.SHC.Issue(c, now)
	if err != nil {
		return nil, fmt.Errorf("issuance: sign SMART Health Card: %w", err)
	}
	c.SHC = qr
	if l.vds != nil {
		doc, err := s.cfg.VDS.Sign(l.vds)
		if err != nil {
			return nil, fmt.Errorf("issuance: sign VDS-NC: %w", err)
		}
		c.VDSNC = string(doc)
	}
	// The signed certificate must pass the same check the kiosk will run.
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("issuance: signed certificate: %w", err)
	}
	return c, nil
}

func (s *Service) audit(ctx context.Context, e store.Event, start time.Time) error {
	e.Time = s.cfg.Now()
	e.Latency = e.Time.Sub(start)
	// The audit write must land even if the kiosk's deadline has passed.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := s.cfg.Audit.AppendEvent(ctx, e)
	return err
}

func (s *Service) refuse(ctx context.Context, ev store.Event, start time.Time, perr *protocol.Error) *protocol.Error {
	ev.Type, ev.Result = store.EventRefused, string(perr.Code)
	if err := s.audit(ctx, ev, start); err != nil {
		s.cfg.Log.Error("audit refused request", "request", ev.RequestID, "err", err)
	}
	s.cfg.Log.Info("refused", "request", ev.RequestID, "kiosk", ev.KioskID, "municipality", ev.Municipality, "code", perr.Code, "detail", perr.Detail)
	return perr
}

func (s *Service) fail(ctx context.Context, ev store.Event, start time.Time, code protocol.Code, cause error) *protocol.Error {
	ev.Type, ev.Result = store.EventFailed, string(code)
	// Causes from this package and its dependencies carry no personal data.
	s.cfg.Log.Error("issuance failed", "request", ev.RequestID, "kiosk", ev.KioskID, "code", code, "err", cause)
	if err := s.audit(ctx, ev, start); err != nil {
		s.cfg.Log.Error("audit failed request", "request", ev.RequestID, "err", err)
	}
	return protocol.NewError(ev.RequestID, code, "")
}
