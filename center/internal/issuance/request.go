package issuance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// A request's life in the register (store.RequestRegister), as Issue and
// Settle drive it. The register, not this process's memory, decides: a
// request ID is claimed once across every instance sharing the store, a
// claim whose process died is taken over after ClaimLease, and an outcome
// settles once.

// auditTimeout bounds each register write. It does not follow the
// request's deadline: the write that records what happened must land even
// when the kiosk has stopped waiting.
const auditTimeout = 5 * time.Second

// pollInterval is how often a retry waits on a claim another attempt holds.
const pollInterval = 20 * time.Millisecond

// Fingerprint identifies what a request asked for: municipality, kind,
// copies and the card data's digest. A retry must carry the same.
func Fingerprint(req protocol.Issue) string {
	b, _ := json.Marshal(struct {
		M, K string
		C    int
		D    string
	}{req.Municipality, string(req.Kind), req.Copies, protocol.CardDigest(req.Card)})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// claimed is the result of step 1: either this call runs the issuance
// (attempt), or the register already answered (replay, or an error).
type claimed struct {
	attempt int
	replay  *protocol.CertificateResponse
}

func writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
}

func (s *Service) claim(ctx context.Context, req Request, ev store.Event, start time.Time) (claimed, error) {
	r := store.Request{
		ID: req.RequestID, KioskID: req.KioskID, Fingerprint: Fingerprint(req.Issue),
		Municipality: ev.Municipality, Kind: req.Kind, Copies: req.Copies, ClaimedAt: start,
	}
	if !r.Kind.Valid() {
		r.Kind = ""
	}
	if r.Copies < 0 || r.Copies > store.MaxCopies {
		r.Copies = 0
	}
	ev.Kind, ev.Copies = r.Kind, r.Copies
	ev.Time = start
	for {
		wctx, cancel := writeCtx(ctx)
		got, err := s.cfg.Register.ClaimRequest(wctx, r, start.Add(-s.cfg.ClaimLease), ev)
		cancel()
		switch {
		case err == nil:
			return claimed{attempt: got.Attempt}, nil
		case !errors.Is(err, store.ErrExists):
			return claimed{}, s.logged(req, refusal.New(protocol.CodeUnavailable, fmt.Errorf("claim request: %w", err)))
		}
		if got.KioskID != req.KioskID || got.Fingerprint != r.Fingerprint {
			return claimed{}, s.logged(req, refusal.WithDetail(protocol.CodeRequestIDReused, "request ID already used with different data", nil))
		}
		switch got.State {
		case store.RequestIssued:
			resp, err := s.replay(ctx, req, got)
			return claimed{replay: resp}, err
		case store.RequestRefused:
			// The same request gets the same answer.
			return claimed{}, refusal.New(protocol.Code(got.Code), errors.New("refused before; answered again"))
		case store.RequestSettled:
			return claimed{}, s.logged(req, refusal.WithDetail(protocol.CodeRequestIDReused, "request already settled; start a new request", nil))
		}
		// Another attempt holds the claim: wait for its end, or until the
		// claim is stale and ours to take over.
		select {
		case <-ctx.Done():
			return claimed{}, refusal.WithDetail(protocol.CodeUnavailable, "the first attempt of this request is still running", ctx.Err())
		case <-time.After(pollInterval):
		}
		start = s.cfg.Now()
		r.ClaimedAt = start
	}
}

// replay answers a retry of an issued request with the answer it had.
func (s *Service) replay(ctx context.Context, req Request, r store.Request) (*protocol.CertificateResponse, error) {
	// A kiosk suspended since is not answered, not even with what it had.
	if _, err := s.checkKiosk(ctx, req.KioskID); err != nil {
		return nil, err
	}
	if len(r.Replay) == 0 {
		return nil, s.logged(req, refusal.WithDetail(protocol.CodeRequestIDReused, "request issued earlier and no longer held; start a new request", nil))
	}
	resp, err := openReplay(r.Replay, req.RequestID, req.Card)
	if err != nil {
		// Same fingerprint, so the card digest matched: this is a damaged
		// replay, not another card.
		return nil, s.logged(req, refusal.New(protocol.CodeInternal, err))
	}
	resp.Replayed = true
	return resp, nil
}

// finish records how the issuance ended (step 11) and returns what the
// kiosk gets: the response only once its "issued" events are durable.
func (s *Service) finish(ctx context.Context, req Request, attempt int, ev store.Event, start time.Time, resp *protocol.CertificateResponse, issueErr error) (*protocol.CertificateResponse, error) {
	now := s.cfg.Now()
	ev.Time, ev.Latency = now, now.Sub(start)
	var f store.RequestFinish
	var events []store.Event
	code, _ := refusal.CodeOf(issueErr)
	switch {
	case issueErr == nil:
		sealed, err := sealReplay(resp, req.Card)
		if err != nil {
			issueErr, code = refusal.New(protocol.CodeInternal, err), protocol.CodeInternal
			break
		}
		f = store.RequestFinish{State: store.RequestIssued, Replay: sealed, At: now}
		for _, c := range resp.Certificates {
			e := ev
			e.Type, e.Kind, e.CertificateID, e.Result = store.EventIssued, c.Kind, c.ID, "ok"
			events = append(events, e)
			f.CertificateIDs = append(f.CertificateIDs, c.ID)
		}
	case code.Retryable():
		ev.Type, ev.Result = store.EventFailed, string(code)
		f, events = store.RequestFinish{State: store.RequestReleased, At: now}, []store.Event{ev}
	default:
		ev.Type, ev.Result = store.EventRefused, string(code)
		if t := refusal.AuditType(issueErr); t != "" {
			ev.Type = store.EventType(t)
		}
		f, events = store.RequestFinish{State: store.RequestRefused, Code: string(code), At: now}, []store.Event{ev}
	}
	if issueErr != nil && f.State == "" {
		// Sealing failed: release the claim so a retry runs again.
		ev.Type, ev.Result = store.EventFailed, string(code)
		f, events = store.RequestFinish{State: store.RequestReleased, At: now}, []store.Event{ev}
	}
	wctx, cancel := writeCtx(ctx)
	_, err := s.cfg.Register.FinishRequest(wctx, req.RequestID, attempt, f, events...)
	cancel()
	if err != nil {
		// A certificate we cannot account for is not handed out; a claim
		// taken over by another attempt is that attempt's to answer.
		s.cfg.Log.Error("issuance failed", "request", req.RequestID, "kiosk", req.KioskID, "code", code, "err", fmt.Errorf("record the end of the request: %w", err))
		if f.State != store.RequestReleased && !errors.Is(err, store.ErrTransition) {
			// Release the claim if the store still takes a write, so the
			// kiosk's retry runs again at once rather than after the lease.
			ev.Type, ev.Result = store.EventFailed, string(protocol.CodeUnavailable)
			wctx, cancel := writeCtx(ctx)
			if _, rerr := s.cfg.Register.FinishRequest(wctx, req.RequestID, attempt, store.RequestFinish{State: store.RequestReleased, At: now}, ev); rerr != nil {
				s.cfg.Log.Error("release a request after a failed finish", "request", req.RequestID, "err", rerr)
			}
			cancel()
		}
		return nil, refusal.New(protocol.CodeUnavailable, fmt.Errorf("finish request: %w", err))
	}
	if issueErr != nil {
		return nil, s.logged(req, issueErr)
	}
	return resp, nil
}

// logged logs a refusal or failure with its internal cause (causes from
// this package and its dependencies carry no personal data) and returns it.
func (s *Service) logged(req Request, err error) error {
	code, _ := refusal.CodeOf(err)
	if code == protocol.CodeInternal || code == protocol.CodeUnavailable {
		s.cfg.Log.Error("issuance failed", "request", req.RequestID, "kiosk", req.KioskID, "code", code, "err", err)
	} else {
		s.cfg.Log.Info("refused", "request", req.RequestID, "kiosk", req.KioskID, "code", code, "err", err)
	}
	return err
}

// outcomeEvents maps each outcome a kiosk reports to its audit event.
var outcomeEvents = map[protocol.OutcomeKind]store.EventType{
	protocol.OutcomePrinted:   store.EventPrinted,
	protocol.OutcomeFailed:    store.EventPrintFailed,
	protocol.OutcomeRefused:   store.EventPrintRefused,
	protocol.OutcomeCancelled: store.EventCancelled,
}

// Settle records a kiosk's outcome for an issued request, exactly once
// across every instance: a report repeated after it was recorded is
// acknowledged again without a second event. Printed copies must be the
// copies issued.
func (s *Service) Settle(ctx context.Context, kioskID, storeCode string, o protocol.Outcome) error {
	typ, ok := outcomeEvents[o.Outcome]
	if !ok {
		return refusal.WithDetail(protocol.CodeBadMessage, "unknown outcome", nil)
	}
	if _, err := s.checkKiosk(ctx, kioskID); err != nil {
		return err
	}
	r, err := s.cfg.Register.Request(ctx, o.RequestID)
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && r.KioskID != kioskID:
		return refusal.WithDetail(protocol.CodeUnknownRequest, "no request with this ID was issued to this kiosk", err)
	case err != nil:
		return internal(ctx, fmt.Errorf("look up request for outcome: %w", err))
	case r.State == store.RequestClaimed:
		return refusal.WithDetail(protocol.CodeUnavailable, "the request is still being issued; send the outcome again", nil)
	case r.State == store.RequestSettled:
		return nil
	case r.State != store.RequestIssued:
		return refusal.WithDetail(protocol.CodeUnknownRequest, "no certificate was issued for this request", nil)
	case typ == store.EventPrinted && o.Copies != r.Copies:
		// Not recorded: the kiosk must report the copies it was issued.
		return refusal.WithDetail(protocol.CodeBadMessage, "printed copies differ from the copies issued", nil)
	}
	now := s.cfg.Now()
	ev := store.Event{
		Time: now, Type: typ, KioskID: kioskID, StoreCode: storeCode, RequestID: o.RequestID,
		Municipality: r.Municipality, Kind: r.Kind, Result: string(o.Outcome),
	}
	if len(r.CertificateIDs) > 0 {
		ev.CertificateID = r.CertificateIDs[0]
	}
	if typ == store.EventPrinted {
		ev.Copies = o.Copies
	}
	if o.Reason != "" && o.Reason.Known() {
		ev.Result = string(o.Reason)
	}
	wctx, cancel := writeCtx(ctx)
	_, err = s.cfg.Register.SettleRequest(wctx, o.RequestID, kioskID, string(o.Outcome), now, ev)
	cancel()
	switch {
	case err == nil, errors.Is(err, store.ErrSettled):
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrTransition):
		// Forgotten (retention) or changed between the read and the write.
		return refusal.WithDetail(protocol.CodeUnknownRequest, "no certificate was issued for this request", err)
	}
	s.cfg.Log.Error("record outcome", "request", o.RequestID, "kiosk", kioskID, "err", err)
	if errors.Is(err, store.ErrUnavailable) {
		return refusal.WithDetail(protocol.CodeUnavailable, "outcome not recorded; send it again", err)
	}
	return refusal.WithDetail(protocol.CodeInternal, "outcome not recorded; send it again", err)
}

// Expire drops replays older than the replay TTL and forgets requests
// older than the retention. The center runs it periodically.
func (s *Service) Expire(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	return s.cfg.Register.ExpireRequests(ctx, now.Add(-s.cfg.ReplayTTL), now.Add(-s.cfg.Retention))
}
