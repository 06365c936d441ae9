package issuance

import (
	"context"
	"fmt"

	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// CheckRequest is one kiosk's Check, after the kiosk was authenticated.
type CheckRequest struct {
	KioskID string
	protocol.Check
}

// Check answers, before the resident chooses kind and copies, whether
// Issue would find this card's record in this municipality, and which kinds
// it could issue (overseas only with passport data on record). It runs
// Issue's steps 2–8 with the same functions (kiosk, municipality, card
// data, My Number, record, holder; passport for the kinds), claims no
// request ID and signs nothing: nothing about it outlives the call but a
// log line with the kiosk, request ID, municipality and result code, and,
// for a counter_only refusal, its audit event (counter_only.<reason>, as
// Issue writes it: the municipality counts every resident sent to its
// counter, and the kiosk stops at this refusal). A later Issue runs every
// step again, so a Check grants nothing. Refusals carry their code
// (refusal.CodeOf).
func (s *Service) Check(ctx context.Context, req CheckRequest) (*protocol.Checked, error) {
	start := s.cfg.Now()
	kinds, err := s.check(ctx, req)
	code := protocol.Code("ok")
	if err != nil {
		code, _ = refusal.CodeOf(err)
	}
	if t := refusal.AuditType(err); t != "" {
		now := s.cfg.Now()
		ev := store.Event{Type: store.EventType(t), Time: now, Latency: now.Sub(start), KioskID: req.KioskID,
			RequestID: req.RequestID, Municipality: req.Municipality, Kind: certificate.Domestic, Copies: 1, Result: string(code)}
		if k, kerr := s.cfg.Kiosks.Kiosk(ctx, req.KioskID); kerr == nil {
			ev.StoreCode = k.StoreCode
		}
		wctx, cancel := writeCtx(ctx)
		_, aerr := s.cfg.Audit.AppendEvent(wctx, ev)
		cancel()
		if aerr != nil {
			// A refusal the municipality cannot count is not given: the
			// kiosk may ask again.
			err, code = refusal.New(protocol.CodeUnavailable, fmt.Errorf("record the counter_only refusal: %w", aerr)), protocol.CodeUnavailable
		}
	}
	// A record lookup is an operation on personal data: it is logged,
	// with identifiers and the result only.
	if code == protocol.CodeInternal || code == protocol.CodeUnavailable {
		s.cfg.Log.Error("check failed", "request", req.RequestID, "kiosk", req.KioskID, "municipality", req.Municipality, "code", code, "err", err)
	} else {
		s.cfg.Log.Info("checked", "request", req.RequestID, "kiosk", req.KioskID, "municipality", req.Municipality, "result", code)
	}
	if err != nil {
		return nil, err
	}
	return &protocol.Checked{RequestID: req.RequestID, CardDigest: protocol.CardDigest(req.Card), Kinds: kinds}, nil
}

func (s *Service) check(ctx context.Context, req CheckRequest) ([]string, error) {
	if _, err := s.checkKiosk(ctx, req.KioskID); err != nil {
		return nil, err
	}
	// The offer check of a domestic request for one copy: what every
	// resident with a record can have.
	probe := Request{KioskID: req.KioskID, Issue: protocol.Issue{RequestID: req.RequestID, Municipality: req.Municipality,
		Kind: certificate.Domestic, Copies: 1, Card: req.Card}}
	if _, err := s.checkOffer(ctx, probe); err != nil {
		return nil, err
	}
	card, err := s.verifyCard(req.Card)
	if err != nil {
		return nil, err
	}
	rec, err := s.lookupRecord(ctx, req.Municipality, card)
	if err != nil {
		return nil, err
	}
	if err := checkHolder(card, rec, certificate.Domestic); err != nil {
		return nil, err
	}
	kinds := []string{string(certificate.Domestic)}
	if s.cfg.VDS != nil && checkHolder(card, rec, certificate.Overseas) == nil {
		kinds = append(kinds, string(certificate.Overseas))
	}
	return kinds, nil
}
