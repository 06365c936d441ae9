// Package issuance is the narrow, audited path from a kiosk's request to a
// signed vaccination certificate, and the owner of each request's life at
// the center: claimed, issued or refused, then settled by the kiosk's
// outcome report. The websocket handler calls Issue and Settle and never
// holds a key; Issue takes its signers as interfaces backed by
// crypto.Signer and runs, in order:
//
//  1. claim the request ID in the store's register, with the "requested"
//     audit event in the same commit (so refused requests are accounted
//     for too, and no two instances run one request); a retry of a known
//     request is answered from the register instead (replay, same refusal,
//     or request_id_reused);
//  2. the kiosk is enrolled and active;
//  3. the municipality exists and offers kiosk issuance; kind and copies are offered;
//  4. the card data verifies against the configured issuing-authority keys;
//  5. My Number's check digit is right (before any lookup);
//  6. the record is found in that municipality's region;
//  7. the resident is not one the municipality serves at its counter only
//     (record flags: support measure, alias on record, travel document,
//     staff review, deceased; or a former name or alias on the card), and
//     the card's holder is the record's holder (pkg/holder: name after
//     normalising width and spaces, birth date, and sex where both know it);
//  8. the overseas kind has passport data on record;
//  9. the certificates are built and linted (lint mints the only value sign accepts);
//  10. the QR payloads are signed;
//  11. the register records the end — issued (with the sealed replay and
//     the "issued" events), refused, or released after a retryable
//     failure — in one commit, before anything is returned: a certificate
//     whose issuance is not durable is never handed out;
//  12. the response is bound to the request ID and the card-data digest.
//
// Refusals are *refusal.Error values carrying the public protocol code; the
// edge maps them to protocol errors (refusal.Public). Nothing about the
// request outlives Issue but the register entry and the audit events,
// which hold identifiers, codes and counts only, and the replay, sealed
// under a key only the card data can give (replay.go).
package issuance

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certid"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/holder"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
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

// Register is the store's request register: the claim, finish and
// settlement of each request, with its audit events (store.RequestRegister).
type Register = store.RequestRegister

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

// Defaults for the request register's timing.
const (
	// DefaultClaimLease is how long a claim stands before another attempt
	// may take it over (its issuance died with its process).
	DefaultClaimLease = 30 * time.Second
	// DefaultReplayTTL is how long an issued request's answer is kept for
	// retries when the kiosk never reports an outcome.
	DefaultReplayTTL = 15 * time.Minute
	// DefaultRetention is how long a request ID stays registered, so a late
	// outcome still settles and a reused ID is still refused.
	DefaultRetention = 7 * 24 * time.Hour
)

// Config wires the service. Every field but VDS and the durations is
// required; without VDS the overseas kind is not offered.
type Config struct {
	Kiosks         Kiosks
	Municipalities Municipalities
	Records        Records
	Register       Register
	Cards          CardVerifier
	SHC            SHCIssuer
	VDS            VDSSigner
	FeePerCopyYen  int
	// Audit receives the events of answers that claim no request: a
	// counter_only refusal at Check (the municipality's statistics count
	// every resident sent to the counter, wherever the refusal came). When
	// nil, the Register is used if it appends events (the center's store
	// does); New fails otherwise.
	Audit EventAppender
	// ClaimLease, ReplayTTL and Retention default to the constants above.
	ClaimLease, ReplayTTL, Retention time.Duration
	// Now is the clock; Rand the entropy for certificate IDs. Tests inject both.
	Now  func() time.Time
	Rand io.Reader
	Log  *slog.Logger
}

// EventAppender appends one audit event (store.AuditLog's AppendEvent).
type EventAppender interface {
	AppendEvent(ctx context.Context, e store.Event) (store.Event, error)
}

// Service issues certificates. It is safe for concurrent use.
type Service struct {
	cfg Config
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Kiosks == nil || cfg.Municipalities == nil || cfg.Records == nil || cfg.Register == nil || cfg.Cards == nil || cfg.SHC == nil {
		return nil, errors.New("issuance: kiosks, municipalities, records, register, card verifier and SHC issuer are required")
	}
	if cfg.Audit == nil {
		a, ok := cfg.Register.(EventAppender)
		if !ok {
			return nil, errors.New("issuance: an audit log is required (the register appends no events)")
		}
		cfg.Audit = a
	}
	if cfg.ClaimLease <= 0 {
		cfg.ClaimLease = DefaultClaimLease
	}
	if cfg.ReplayTTL <= 0 {
		cfg.ReplayTTL = DefaultReplayTTL
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
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

// Issue runs the numbered steps of the package documentation. Every error
// it returns carries a refusal code (refusal.CodeOf); anything else would
// be a bug and maps to internal_error.
func (s *Service) Issue(ctx context.Context, req Request) (*protocol.CertificateResponse, error) {
	start := s.cfg.Now()
	ev := store.Event{
		Type: store.EventRequested, KioskID: req.KioskID, RequestID: req.RequestID,
		Municipality: req.Municipality, Kind: req.Kind, Copies: req.Copies,
	}
	if lgcode.Validate(req.Municipality) != nil {
		// A code that cannot exist is not written anywhere; step 3 refuses it.
		ev.Municipality = ""
	}
	// 1. Claim the request, or answer a retry from the register.
	claim, err := s.claim(ctx, req, ev, start)
	if err != nil || claim.replay != nil {
		return claim.replay, err
	}
	resp, err := s.issue(ctx, req, &ev)
	// 11. Record the end before answering.
	return s.finish(ctx, req, claim.attempt, ev, start, resp, err)
}

// checked is what the checks of steps 2-8 established.
type checked struct {
	municipality store.Municipality
	record       records.Record
}

func (s *Service) issue(ctx context.Context, req Request, ev *store.Event) (*protocol.CertificateResponse, error) {
	storeCode, err := s.checkKiosk(ctx, req.KioskID)
	if err != nil {
		return nil, err
	}
	ev.StoreCode = storeCode
	var c checked
	if c.municipality, err = s.checkOffer(ctx, req); err != nil {
		return nil, err
	}
	card, err := s.verifyCard(req.Card)
	if err != nil {
		return nil, err
	}
	if c.record, err = s.lookupRecord(ctx, req.Municipality, card); err != nil {
		return nil, err
	}
	if err := checkHolder(card, c.record, req.Kind); err != nil {
		return nil, err
	}
	return s.certificates(req, c)
}

// internal wraps a failure of a dependency: unavailable when the request's
// deadline passed or the database is unreachable (the kiosk may retry),
// internal otherwise.
func internal(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return refusal.New(protocol.CodeUnavailable, fmt.Errorf("deadline passed: %w", err))
	}
	if errors.Is(err, store.ErrUnavailable) {
		return refusal.New(protocol.CodeUnavailable, err)
	}
	return refusal.New(protocol.CodeInternal, err)
}

// 2. The kiosk must be enrolled and active. The handshake checked this too;
// checking again closes the window of a suspension mid-connection.
func (s *Service) checkKiosk(ctx context.Context, kioskID string) (storeCode string, err error) {
	k, err := s.cfg.Kiosks.Kiosk(ctx, kioskID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", refusal.WithDetail(protocol.CodeKioskNotAllowed, "kiosk not enrolled", err)
	case err != nil:
		return "", internal(ctx, fmt.Errorf("look up kiosk: %w", err))
	case k.Status != store.KioskActive:
		return "", refusal.WithDetail(protocol.CodeKioskNotAllowed, "kiosk is "+string(k.Status), nil)
	}
	return k.StoreCode, nil
}

// 3. Only participating municipalities; only offered kinds and copies.
func (s *Service) checkOffer(ctx context.Context, req Request) (store.Municipality, error) {
	m, err := s.cfg.Municipalities.Municipality(ctx, req.Municipality)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return m, refusal.New(protocol.CodeUnknownMunicipality, err)
	case err != nil:
		return m, internal(ctx, fmt.Errorf("look up municipality: %w", err))
	case !m.Participating:
		return m, refusal.New(protocol.CodeNotParticipating, nil)
	}
	if req.Kind == certificate.Overseas && s.cfg.VDS == nil {
		return m, refusal.WithDetail(protocol.CodeKindNotOffered, "no VDS-NC signer configured", nil)
	}
	if req.Copies < 1 || req.Copies > protocol.MaxCopies {
		return m, refusal.New(protocol.CodeTooManyCopies, nil)
	}
	return m, nil
}

// 4. Verify the card data authoritatively: the kiosk's own check is only a
// fast rejection, and a kiosk's word proves nothing. 5. A wrong check digit
// is refused before any lookup.
func (s *Service) verifyCard(raw carddata.Raw) (*carddata.Data, error) {
	card, err := s.cfg.Cards.Verify(raw)
	switch {
	case errors.Is(err, mynumber.ErrCheckDigit) || errors.Is(err, mynumber.ErrFormat):
		return nil, refusal.New(protocol.CodeMyNumberInvalid, err)
	case errors.Is(err, carddata.ErrUnknownIssuer):
		return nil, refusal.New(protocol.CodeCardIssuerUnknown, err)
	case err != nil:
		return nil, refusal.WithDetail(protocol.CodeCardInvalid, safeCardError(err), err)
	}
	if err := mynumber.Validate(card.MyNumber); err != nil {
		return nil, refusal.New(protocol.CodeMyNumberInvalid, err)
	}
	return card, nil
}

// 6. The record, in that municipality's region only.
func (s *Service) lookupRecord(ctx context.Context, municipality string, card *carddata.Data) (records.Record, error) {
	rec, err := s.cfg.Records.Lookup(ctx, municipality, card.MyNumber)
	switch {
	case errors.Is(err, records.ErrNoRecord), errors.Is(err, records.ErrNoRegion):
		return rec, refusal.New(protocol.CodeNoRecord, err)
	case errors.Is(err, records.ErrBadMyNumber):
		return rec, refusal.New(protocol.CodeMyNumberInvalid, err)
	case err != nil:
		return rec, internal(ctx, fmt.Errorf("look up record: %w", err))
	}
	return rec, nil
}

// 7. The card's holder must be the record's holder. 8. Overseas use needs
// passport data on record: the kiosk reads no passport.
func checkHolder(card *carddata.Data, rec records.Record, kind certificate.Kind) error {
	// 7a. Residents the municipality serves at its counter, whatever the
	// reason, get one answer at this one point of the flow: the reason
	// goes into the audit event type only (counter_only.<reason>).
	if reason, ok := rec.Flags.CounterOnlyReason(); ok {
		return refusal.Internal(protocol.CodeCounterOnly, "counter_only."+reason, nil)
	}
	if holder.HasFormerName(card.FourItems.Name) {
		return refusal.Internal(protocol.CodeCounterOnly, "counter_only.alias_on_card", nil)
	}
	if m := rec.Flags.MovedOutOn; m != "" && !slices.ContainsFunc(rec.Doses, func(d records.Dose) bool { return d.Date <= m }) {
		// Every dose on record came after the move: nothing to certify here.
		return refusal.New(protocol.CodeNoRecord, nil)
	}
	if err := holder.Match(card.FourItems, holder.Holder{Name: rec.Name, BirthDate: rec.BirthDate, Sex: rec.Sex}); err != nil {
		// The cause names which item differed; the kiosk learns only the code.
		return refusal.New(holder.RefusalCode(err), err)
	}
	if kind == certificate.Overseas && (rec.PassportNumber == "" || rec.RomanFamily == "" || rec.Nationality == "") {
		return refusal.New(protocol.CodePassportRequired, nil)
	}
	return nil
}

// 9. Build and lint. 10. Sign. 12. Bind the response to the request.
func (s *Service) certificates(req Request, c checked) (*protocol.CertificateResponse, error) {
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
		cert, err := s.build(kind, c.municipality, c.record, now)
		if err != nil {
			return nil, refusal.New(protocol.CodeInternal, err)
		}
		l, err := lint(cert)
		if err != nil {
			return nil, refusal.New(protocol.CodeInternal, err)
		}
		signed, err := s.sign(l, now)
		if err != nil {
			return nil, refusal.New(protocol.CodeInternal, err)
		}
		resp.Certificates = append(resp.Certificates, *signed)
	}
	return resp, nil
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
		if rec.Flags.MovedOutOn != "" && d.Date > rec.Flags.MovedOutOn {
			// Given after the resident moved out: not this municipality's
			// to certify (the new one's ledger holds it).
			continue
		}
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
