package issuance

import (
	"context"
	"errors"
	"fmt"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// EventChecked is the audit event of a Check: a kiosk asked whether a
// municipality holds a card's record (Result: "ok" or the refusal code).
// Settlement does not count it.
const EventChecked store.EventType = "checked"

// CheckRequest is one kiosk's Check, after the kiosk was authenticated.
type CheckRequest struct {
	KioskID string
	protocol.Check
}

// Check answers, before the resident chooses kind and copies, whether
// Issue would find this card's record in this municipality, and which kinds
// it could issue (overseas only with passport data on record). It runs
// Issue's steps 2–8 (kiosk, municipality, card data, My Number, record,
// holder, passport) and signs nothing; the audit log gets one "checked"
// event with the result, and nothing about the request outlives Check.
//
// A later Issue runs every step again: a Check grants nothing.
func (s *Service) Check(ctx context.Context, req CheckRequest) (*protocol.Checked, *protocol.Error) {
	start := s.cfg.Now()
	ev := store.Event{Type: EventChecked, KioskID: req.KioskID, RequestID: req.RequestID, Municipality: req.Municipality}
	kinds, perr, cause := s.check(ctx, req, &ev)
	if perr != nil {
		ev.Result = string(perr.Code)
		if cause != nil {
			s.cfg.Log.Error("check failed", "request", req.RequestID, "kiosk", req.KioskID, "code", perr.Code, "err", cause)
		}
	} else {
		ev.Result = "ok"
	}
	if err := s.audit(ctx, ev, start); err != nil {
		// A record lookup we cannot account for is not answered.
		s.cfg.Log.Error("audit check", "request", req.RequestID, "err", err)
		return nil, protocol.NewError(req.RequestID, protocol.CodeInternal, "")
	}
	if perr != nil {
		return nil, perr
	}
	return &protocol.Checked{RequestID: req.RequestID, CardDigest: protocol.CardDigest(req.Card), Kinds: kinds}, nil
}

func (s *Service) check(ctx context.Context, req CheckRequest, ev *store.Event) ([]string, *protocol.Error, error) {
	refuse := func(code protocol.Code) ([]string, *protocol.Error, error) {
		return nil, protocol.NewError(req.RequestID, code, ""), nil
	}
	internal := func(err error) ([]string, *protocol.Error, error) {
		if ctx.Err() != nil {
			return nil, protocol.NewError(req.RequestID, protocol.CodeUnavailable, "deadline passed"), err
		}
		return nil, protocol.NewError(req.RequestID, protocol.CodeInternal, ""), err
	}
	// The same checks, in the same order, as Issue's steps 2–8.
	k, err := s.cfg.Kiosks.Kiosk(ctx, req.KioskID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(protocol.CodeKioskNotAllowed)
	case err != nil:
		return internal(fmt.Errorf("look up kiosk: %w", err))
	case k.Status != store.KioskActive:
		return refuse(protocol.CodeKioskNotAllowed)
	}
	ev.StoreCode = k.StoreCode
	m, err := s.cfg.Municipalities.Municipality(ctx, req.Municipality)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(protocol.CodeUnknownMunicipality)
	case err != nil:
		return internal(fmt.Errorf("look up municipality: %w", err))
	case !m.Participating:
		return refuse(protocol.CodeNotParticipating)
	}
	card, err := s.cfg.Cards.Verify(req.Card)
	switch {
	case errors.Is(err, mynumber.ErrCheckDigit) || errors.Is(err, mynumber.ErrFormat):
		return refuse(protocol.CodeMyNumberInvalid)
	case errors.Is(err, carddata.ErrUnknownIssuer):
		return refuse(protocol.CodeCardIssuerUnknown)
	case err != nil:
		return refuse(protocol.CodeCardInvalid)
	}
	if err := mynumber.Validate(card.MyNumber); err != nil {
		return refuse(protocol.CodeMyNumberInvalid)
	}
	rec, err := s.cfg.Records.Lookup(ctx, req.Municipality, card.MyNumber)
	switch {
	case errors.Is(err, records.ErrNoRecord), errors.Is(err, records.ErrNoRegion):
		return refuse(protocol.CodeNoRecord)
	case errors.Is(err, records.ErrBadMyNumber):
		return refuse(protocol.CodeMyNumberInvalid)
	case err != nil:
		return internal(fmt.Errorf("look up record: %w", err))
	}
	if !SameHolder(card.FourItems, rec) {
		return refuse(protocol.CodeHolderMismatch)
	}
	kinds := []string{string(certificate.Domestic)}
	if s.cfg.VDS != nil && rec.PassportNumber != "" && rec.RomanFamily != "" && rec.Nationality != "" {
		kinds = append(kinds, string(certificate.Overseas))
	}
	return kinds, nil, nil
}
