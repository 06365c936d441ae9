package flow

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/kiosk/internal/wipe"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/holder"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// session is everything one resident's visit holds. Its strings live in
// arena, its byte slices are its own; wipe overwrites both.
type session struct {
	id        string
	arena     wipe.Arena
	raw       carddata.Raw
	card      *carddata.Data
	digest    string
	requestID string
	resp      *protocol.CertificateResponse
	pdf       []byte
	reported  bool // an outcome was reported for requestID
}

func (s *session) wipe() {
	s.raw.Wipe()
	s.arena.Wipe()
	if s.card != nil {
		*s.card = carddata.Data{}
		s.card = nil
	}
	if s.resp != nil {
		*s.resp = protocol.CertificateResponse{}
		s.resp = nil
	}
	clear(s.pdf)
	s.pdf = nil
	s.digest = ""
}

// Wiped reports whether the kiosk holds no personal data: the live session
// (if any) holds nothing and the screen shows nothing personal.
func (k *Kiosk) Wiped() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.snap.Preview != nil {
		return false
	}
	s := k.sess
	return s == nil || (s.raw.MyNumber == nil && s.raw.FourItems == nil && s.card == nil && s.resp == nil && s.pdf == nil && s.arena.Size() == 0)
}

func (k *Kiosk) runSession(ctx context.Context) {
	s := &session{id: newSessionID()}
	k.mu.Lock()
	k.sess = s
	k.mu.Unlock()
	log := k.cfg.Log.With("session", s.id)
	defer func() {
		s.wipe()
		k.mu.Lock()
		k.sess = nil
		k.mu.Unlock()
		// Back to idle with nothing personal on screen.
		k.publish(Snapshot{State: StateIdle})
	}()

	result := k.session(ctx, s)
	if s.requestID != "" && !s.reported {
		// Whatever ended the session, the center learns this request will
		// not be printed, so it forgets it and settles nothing.
		code := protocol.CodeCancelled
		if errors.Is(result, errTimeout) {
			code = protocol.CodeTimeout
		}
		k.report(s, protocol.Outcome{RequestID: s.requestID, Outcome: protocol.OutcomeCancelled, Reason: code})
	}
	log.Info("session ended", "result", resultCode(result))
}

func resultCode(err error) string {
	switch {
	case err == nil:
		return "printed"
	case errors.Is(err, errTimeout):
		return "timeout"
	case errors.Is(err, errCancelled):
		return "cancelled"
	case errors.Is(err, errCardRemoved):
		return "card_removed"
	case errors.Is(err, context.Canceled):
		return "shutdown"
	}
	var e *sessionError
	if errors.As(err, &e) {
		return e.msg.Code
	}
	return "error"
}

// sessionError is an error already shown to the resident.
type sessionError struct{ msg *Message }

func (e *sessionError) Error() string { return "flow: " + e.msg.Code }

// fail shows msg, waits for the resident to acknowledge or the error
// timeout, and returns the error that ends the session.
func (k *Kiosk) fail(ctx context.Context, s *session, m *Message) error {
	return k.failAt(ctx, s, m, nil)
}

// refuse shows the center's refusal pe. A counter_only refusal names the
// municipality's counter: one screen for every reason the municipality
// had, which the center does not tell the kiosk.
func (k *Kiosk) refuse(ctx context.Context, s *session, pe *protocol.Error, hello protocol.Hello, muni string) error {
	var counter *Counter
	if pe.Code == protocol.CodeCounterOnly {
		counter = counterOf(hello, muni)
	}
	return k.failAt(ctx, s, msg(pe.Code), counter)
}

func (k *Kiosk) failAt(ctx context.Context, s *session, m *Message, counter *Counter) error {
	k.publish(Snapshot{Session: s.id, State: StateError, Error: m, Counter: counter, Deadline: k.cfg.Now().Add(k.cfg.Timeouts.Error)})
	k.await(ctx, k.cfg.Timeouts.Error, nil, InputConfirm, InputCancel)
	return &sessionError{m}
}

// session runs one visit and returns why it ended (nil: printed).
func (k *Kiosk) session(ctx context.Context, s *session) error {
	reader := k.cfg.Reader
	// Idle: wait for a card. A card left on the reader from the last
	// session must be taken off first, so it cannot start a session for
	// someone else by accident.
	if present, _ := reader.CardPresent(ctx); present {
		if err := k.waitRemoval(ctx, s, nil, nil); err != nil {
			return err
		}
	}
	k.publish(Snapshot{State: StateIdle, Ready: true})
	if err := reader.WaitForCard(ctx); err != nil {
		return err
	}
	k.publish(Snapshot{Session: s.id, State: StateCardCheck})

	// Card phase: the card must stay on the reader until it has been read.
	// The same watch then holds the flow until the card is taken back, so
	// one reader wait spans both and is joined before the session goes on.
	watch := k.watchRemoval(ctx)
	defer watch.stop()
	cardCtx, stopCard := context.WithCancel(ctx)
	err := k.cardPhase(cardCtx, s, watch.removed)
	stopCard()
	if err != nil {
		var m *Message
		var se *sessionError
		switch {
		case errors.Is(err, errCardRemoved):
			return k.fail(ctx, s, msgCardRemoved)
		case errors.As(err, &se):
			m = se.msg
		case errors.Is(err, errTimeout):
			m = msgTimeout
		case errors.Is(err, errCancelled):
			m = msgCancelled
		default:
			return err
		}
		// Show why, then hold until the card is taken.
		k.publish(Snapshot{Session: s.id, State: StateError, Error: m, TakeCard: true})
		k.waitRemoval(ctx, s, m, watch)
		return err
	}

	// Take the card back before anything else: it cannot be forgotten.
	if err := k.waitRemoval(ctx, s, nil, watch); err != nil {
		return err
	}
	watch.stop()
	return k.requestPhase(ctx, s)
}

// removalWatch waits for the card to leave the reader on a goroutine of
// its own. Whoever starts one must call stop, which returns only once
// that goroutine has: no reader wait outlives the session that began it.
type removalWatch struct {
	removed chan struct{} // closed when the card has left the reader
	done    chan struct{} // closed when the wait has ended, for any reason
	err     error         // why it ended (nil: the card left); read after done
	cancel  context.CancelFunc
}

func (k *Kiosk) watchRemoval(ctx context.Context) *removalWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &removalWatch{removed: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.done)
		w.err = k.cfg.Reader.WaitForRemoval(ctx)
		if w.err == nil {
			close(w.removed)
		}
	}()
	return w
}

// stop ends the wait and waits for its goroutine. It may be called again.
func (w *removalWatch) stop() {
	w.cancel()
	<-w.done
}

// cardPhase checks the card, asks for the PIN and reads the card.
func (k *Kiosk) cardPhase(ctx context.Context, s *session, removed <-chan struct{}) error {
	to := k.cfg.Timeouts
	opCtx, cancel := context.WithTimeout(ctx, to.CardOperation)
	tr, err := k.cfg.Reader.Connect(opCtx)
	cancel()
	if err != nil {
		return k.cardError(ctx, s, err)
	}
	defer tr.Close()
	opCtx, cancel = context.WithTimeout(ctx, to.CardOperation)
	sess, err := cardreader.Open(opCtx, tr)
	tries := 0
	if err == nil {
		// Tries left are shown before the PIN is asked for; reading the
		// counter never spends a try.
		tries, err = sess.PINTriesLeft(opCtx)
	}
	cancel()
	if err != nil {
		return k.cardError(ctx, s, err)
	}
	wrong := false
	for {
		k.publish(Snapshot{Session: s.id, State: StatePIN, TriesLeft: tries, LastTry: tries == 1, WrongPIN: wrong, Deadline: k.cfg.Now().Add(to.Input)})
		in, err := k.await(ctx, to.Input, removed, InputPIN, InputCancel)
		if err != nil {
			return err
		}
		if in.Type == InputCancel {
			return errCancelled
		}
		opCtx, cancel := context.WithTimeout(ctx, to.CardOperation)
		err = sess.VerifyPIN(opCtx, in.PIN)
		cancel()
		clear(in.PIN)
		var pe *cardreader.PINIncorrectError
		switch {
		case err == nil:
		case errors.Is(err, cardreader.ErrPINFormat):
			wrong = true
			continue
		case errors.As(err, &pe) && pe.TriesLeft > 0:
			tries, wrong = pe.TriesLeft, true
			continue
		default:
			return k.cardError(ctx, s, err)
		}
		break
	}

	k.publish(Snapshot{Session: s.id, State: StateReading})
	opCtx, cancel = context.WithTimeout(ctx, to.CardOperation)
	raw, err := sess.ReadCardData(opCtx)
	cancel()
	if err != nil {
		return k.cardError(ctx, s, err)
	}
	s.raw = raw
	// Local verification is a fast rejection only; the center decides.
	data, err := k.cfg.Verifier.Verify(raw)
	if err != nil {
		k.cfg.Log.Warn("card data did not verify", "session", s.id, "err", err)
		return &sessionError{msgCardInvalid}
	}
	s.arena.Own(data)
	s.card = data
	s.digest = protocol.CardDigest(raw)
	return nil
}

func (k *Kiosk) cardError(ctx context.Context, s *session, err error) error {
	switch {
	case errors.Is(err, cardreader.ErrCardRemoved), errors.Is(err, cardreader.ErrNoCard):
		return errCardRemoved
	case errors.Is(err, errCardRemoved), errors.Is(err, errCancelled), errors.Is(err, errTimeout):
		return err
	case errors.Is(err, cardreader.ErrNotMyNumberCard):
		return &sessionError{msgNotMyNumberCard}
	case errors.Is(err, cardreader.ErrPINBlocked):
		return &sessionError{msgPINBlocked}
	}
	k.cfg.Log.Warn("card operation failed", "session", s.id, "err", err)
	return &sessionError{msgCardRead}
}

// waitRemoval holds the flow until the card is off the reader, repeating
// and escalating the reminder. It has no deadline: a card left on the
// reader is the harm the reminder exists to prevent. It waits on watch, or
// on a watch of its own (stopped before it returns) when watch is nil.
func (k *Kiosk) waitRemoval(ctx context.Context, s *session, errMsg *Message, watch *removalWatch) error {
	if watch == nil {
		watch = k.watchRemoval(ctx)
		defer watch.stop()
	}
	for n := 0; ; n++ {
		state := StateRemoveCard
		if errMsg != nil {
			state = StateError
		}
		k.publish(Snapshot{Session: s.id, State: state, Reminder: n, Error: errMsg, TakeCard: errMsg != nil})
		select {
		case <-watch.done:
			return watch.err
		case <-time.After(k.cfg.Timeouts.Reminder):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// await waits for one of the wanted inputs, the deadline, or the card
// leaving (when removed is not nil). Unwanted inputs are dropped.
func (k *Kiosk) await(ctx context.Context, timeout time.Duration, removed <-chan struct{}, want ...InputType) (Input, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case in := <-k.inputs:
			for _, w := range want {
				if in.Type == w {
					return in, nil
				}
			}
			clear(in.PIN)
		case <-removed:
			return Input{}, errCardRemoved
		case <-timer.C:
			return Input{}, errTimeout
		case <-ctx.Done():
			return Input{}, ctx.Err()
		}
	}
}

// maxChecks bounds the municipalities one session may try: each try looks
// a record up at the center.
const maxChecks = 5

// choices is what the resident chose, and what the flow learnt about it.
type choices struct {
	muni   string
	kind   certificate.Kind
	copies int
	// refused kinds for this resident (from a check or a refused issue),
	// notice why the screen is shown again.
	refused map[certificate.Kind]*Message
	notice  *Message
	// keepCopies skips the copies screen: the resident chose them before
	// the issue came back passport_required.
	keepCopies bool
	checks     int
}

// requestPhase runs the steps after the card is read: the choices and the
// request, the binding check, the preview, payment and printing, and the
// reminders to take the certificate. Each step reports its own outcome to
// the center when it ends the session.
func (k *Kiosk) requestPhase(ctx context.Context, s *session) error {
	base, c, req, err := k.obtain(ctx, s)
	if err != nil {
		return err
	}
	// The card files are no longer needed.
	s.raw.Wipe()

	// End-to-end binding: refuse to print anything that does not answer
	// this request for this card's holder.
	if reason, code := k.checkBinding(s, req); reason != "" {
		k.cfg.Log.Error("certificate does not match this session; refusing to print", "session", s.id, "request", s.requestID, "check", reason)
		k.report(s, protocol.Outcome{RequestID: s.requestID, Outcome: protocol.OutcomeRefused, Reason: code})
		return k.fail(ctx, s, msgBinding)
	}
	if err := k.preview(ctx, s, base, c); err != nil {
		return err
	}
	if err := k.render(ctx, s); err != nil {
		return err
	}
	if err := k.payAndPrint(ctx, s, c.copies); err != nil {
		return err
	}
	k.report(s, protocol.Outcome{RequestID: s.requestID, Outcome: protocol.OutcomePrinted, Copies: c.copies})
	// Nothing personal is needed any more: wipe before the reminders.
	s.wipe()
	return k.remindTake(ctx, s)
}

// obtain runs the choice screens and the request until the center issues
// (s.resp set) or refuses in a way the resident cannot put right. The two
// refusals the resident can put right with the card data already read, no
// record in the chosen municipality and an overseas certificate without a
// passport, take them back to the choice that fixes them.
func (k *Kiosk) obtain(ctx context.Context, s *session) (base Snapshot, c choices, req protocol.Issue, err error) {
	hello, ok := k.cfg.Center.Hello()
	if !ok || len(hello.Municipalities) == 0 {
		return base, c, req, k.fail(ctx, s, msgCenterDown)
	}
	kinds := make([]certificate.Kind, 0, len(hello.Kinds))
	for _, kd := range hello.Kinds {
		kinds = append(kinds, certificate.Kind(kd))
	}
	base = Snapshot{Session: s.id, Kinds: kinds, MaxCopies: hello.MaxCopies, FeePerCopyYen: hello.FeePerCopyYen}
	checker, _ := k.cfg.Center.(Checker)
	if !hello.HasFeature(protocol.FeatureCheck) {
		checker = nil
	}

	step := 0
	for {
		if err := k.choose(ctx, s, &c, step, hello, base, checker); err != nil {
			return base, c, req, err
		}
		// The ID is fresh and random, so two kiosks' requests can never
		// collide, and it is reused unchanged on every retry.
		s.requestID = protocol.NewRequestID()
		req = protocol.Issue{RequestID: s.requestID, Municipality: c.muni, Kind: c.kind, Copies: c.copies, Card: s.raw}
		k.publish(Snapshot{Session: s.id, State: StateRequesting, Municipality: c.muni, Kind: c.kind, Copies: c.copies})
		rctx, cancel := context.WithTimeout(ctx, k.cfg.Timeouts.Request)
		resp, err := k.cfg.Center.Issue(rctx, req)
		cancel()
		if err == nil {
			s.arena.Own(resp)
			s.resp = resp
			return base, c, req, nil
		}
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			k.cfg.Log.Warn("no answer from the center", "session", s.id, "request", s.requestID, "err", err)
			return base, c, req, k.fail(ctx, s, msgCenterDown)
		}
		s.reported = true // a refusal leaves nothing pending at the center
		switch {
		case pe.Code == protocol.CodeNoRecord && c.checks < maxChecks:
			c.checks++
			c.notice, c.refused, step = msg(pe.Code), nil, 0
			continue
		case pe.Code == protocol.CodePassportRequired && c.kind == certificate.Overseas && kindOffered(kinds, certificate.Domestic):
			c.refused = map[certificate.Kind]*Message{certificate.Overseas: msg(pe.Code)}
			c.notice, c.keepCopies, step = msgDomesticOffer, true, 1
			continue
		}
		return base, c, req, k.refuse(ctx, s, pe, hello, c.muni)
	}
}

// preview shows the issued certificates until the resident confirms.
func (k *Kiosk) preview(ctx context.Context, s *session, base Snapshot, c choices) error {
	to := k.cfg.Timeouts
	p := base
	p.State, p.Municipality, p.Kind, p.Copies, p.FeeYen = StatePreview, c.muni, c.kind, c.copies, s.resp.FeeYen
	p.Preview = s.resp.Certificates
	p.Deadline = k.cfg.Now().Add(to.Preview)
	k.publish(p)
	in, err := k.await(ctx, to.Preview, nil, InputConfirm, InputCancel)
	if err != nil {
		return k.endByResident(ctx, s, err)
	}
	if in.Type == InputCancel {
		return k.endByResident(ctx, s, errCancelled)
	}
	return nil
}

// render makes the PDF before any money is taken, so a document the kiosk
// cannot print costs the resident nothing.
func (k *Kiosk) render(ctx context.Context, s *session) error {
	var buf bytes.Buffer
	certs := make([]*certificate.Certificate, len(s.resp.Certificates))
	for i := range s.resp.Certificates {
		certs[i] = &s.resp.Certificates[i]
	}
	if err := k.cfg.Renderer.Render(&buf, certs...); err != nil {
		k.cfg.Log.Error("render certificate", "session", s.id, "err", err)
		k.report(s, protocol.Outcome{RequestID: s.requestID, Outcome: protocol.OutcomeFailed, Reason: protocol.CodePrinterFailed})
		return k.fail(ctx, s, msgRenderFailed)
	}
	s.pdf = buf.Bytes()
	return nil
}

// payAndPrint takes the fee and prints. A failed print voids the payment
// and offers the resident one retry, paid again; the payment is captured
// only once the printer has the job.
func (k *Kiosk) payAndPrint(ctx context.Context, s *session, copies int) error {
	to := k.cfg.Timeouts
	fee := s.resp.FeeYen
	k.publish(Snapshot{Session: s.id, State: StatePayment, FeeYen: fee, Copies: copies, Deadline: k.cfg.Now().Add(to.Payment)})
	pctx, cancel := context.WithTimeout(ctx, to.Payment)
	err := k.cfg.Payment.Authorize(pctx, s.requestID, fee)
	cancel()
	if err != nil {
		k.cfg.Log.Warn("payment not authorised", "session", s.id, "err", err)
		k.report(s, protocol.Outcome{RequestID: s.requestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled})
		return k.fail(ctx, s, msgPaymentFailed)
	}

	for attempt := 1; ; attempt++ {
		k.publish(Snapshot{Session: s.id, State: StatePrinting, Copies: copies})
		pctx, cancel := context.WithTimeout(ctx, to.Print)
		err = k.cfg.Printer.Print(pctx, "kioskcert-"+s.requestID, s.pdf, copies)
		cancel()
		if err == nil {
			break
		}
		code := k.cfg.PrintCode(err)
		k.cfg.Log.Warn("print failed", "session", s.id, "request", s.requestID, "code", code, "attempt", attempt, "err", err)
		k.voidPayment(ctx, s)
		if attempt >= 2 {
			k.report(s, protocol.Outcome{RequestID: s.requestID, Outcome: protocol.OutcomeFailed, Reason: code})
			return k.fail(ctx, s, msg(code))
		}
		k.publish(Snapshot{Session: s.id, State: StatePrintFailed, Error: msg(code), CanRetry: true, Deadline: k.cfg.Now().Add(to.Input)})
		in, err := k.await(ctx, to.Input, nil, InputRetry, InputCancel)
		if err != nil || in.Type == InputCancel {
			k.report(s, protocol.Outcome{RequestID: s.requestID, Outcome: protocol.OutcomeFailed, Reason: code})
			if err == nil {
				err = errCancelled
			}
			return err
		}
		pctx, cancel = context.WithTimeout(ctx, to.Payment)
		k.publish(Snapshot{Session: s.id, State: StatePayment, FeeYen: fee, Copies: copies})
		err = k.cfg.Payment.Authorize(pctx, s.requestID, fee)
		cancel()
		if err != nil {
			k.report(s, protocol.Outcome{RequestID: s.requestID, Outcome: protocol.OutcomeFailed, Reason: code})
			return k.fail(ctx, s, msgPaymentFailed)
		}
	}
	if err := k.cfg.Payment.Capture(ctx, s.requestID); err != nil {
		k.cfg.Log.Error("capture payment", "session", s.id, "request", s.requestID, "err", err)
	}
	return nil
}

// remindTake repeats "take your certificate (and card)" until the
// resident stops it or the reminder time is over.
func (k *Kiosk) remindTake(ctx context.Context, s *session) error {
	to := k.cfg.Timeouts
	deadline := k.cfg.Now().Add(to.TakeCert)
	for n := 0; k.cfg.Now().Before(deadline); n++ {
		k.publish(Snapshot{Session: s.id, State: StateTakeCertificate, Reminder: n, Deadline: deadline})
		in, err := k.await(ctx, to.Reminder, nil, InputStop, InputConfirm)
		if err == nil && (in.Type == InputStop || in.Type == InputConfirm) {
			return nil
		}
		if err != nil && !errors.Is(err, errTimeout) {
			return err
		}
	}
	return nil
}

// choose runs the choice screens from step (0 municipality, 1 kind, 2
// copies) with Back between them, asking the center about the
// municipality right after it is chosen when it can (checker not nil).
func (k *Kiosk) choose(ctx context.Context, s *session, c *choices, step int, hello protocol.Hello, base Snapshot, checker Checker) error {
	to := k.cfg.Timeouts
	shown := -1
	var deadline time.Time
	for step < 3 {
		if step != shown {
			// The deadline runs from when the screen first appears: inputs
			// the screen does not accept must not keep a session alive.
			shown, deadline = step, k.cfg.Now().Add(to.Input)
		}
		snap := base
		snap.Municipality, snap.Kind, snap.Deadline, snap.Notice = c.muni, c.kind, deadline, c.notice
		var want InputType
		switch step {
		case 0:
			snap.State, want = StateMunicipality, InputMunicipality
			snap.Municipalities, snap.NotParticipating = hello.Municipalities, hello.NotParticipating
		case 1:
			snap.State, want, snap.RefusedKinds = StateKind, InputKind, c.refused
		case 2:
			snap.State, want = StateCopies, InputCopies
		}
		k.publish(snap)
		in, err := k.await(ctx, deadline.Sub(k.cfg.Now()), nil, want, InputBack, InputCancel)
		if err != nil {
			return k.endByResident(ctx, s, err)
		}
		switch in.Type {
		case InputCancel:
			return k.endByResident(ctx, s, errCancelled)
		case InputBack:
			if step > 0 {
				step--
				c.notice, c.keepCopies = nil, false
			}
			continue
		case InputMunicipality:
			if !offered(hello.Municipalities, in.Municipality) {
				continue // only municipalities the center listed as participating
			}
			c.muni, c.refused, c.notice = in.Municipality, nil, nil
			if checker != nil {
				again, err := k.check(ctx, s, checker, c, hello)
				if err != nil {
					return err
				}
				if again {
					shown = -1 // the screen is new again: a fresh deadline
					continue
				}
			}
		case InputKind:
			if !kindOffered(base.Kinds, in.Kind) || c.refused[in.Kind] != nil {
				continue
			}
			c.kind, c.notice = in.Kind, nil
			if c.keepCopies {
				return nil
			}
		case InputCopies:
			if in.Copies < 1 || in.Copies > hello.MaxCopies {
				continue
			}
			c.copies = in.Copies
		}
		step++
	}
	return nil
}

// check asks the center whether c.muni holds this card's record. It
// returns again when the resident should choose another municipality
// (c.notice says why); an error ends the session (already shown).
func (k *Kiosk) check(ctx context.Context, s *session, checker Checker, c *choices, hello protocol.Hello) (again bool, err error) {
	k.publish(Snapshot{Session: s.id, State: StateChecking, Municipality: c.muni})
	req := protocol.Check{RequestID: protocol.NewRequestID(), Municipality: c.muni, Card: s.raw}
	rctx, cancel := context.WithTimeout(ctx, k.cfg.Timeouts.Request)
	res, err := checker.Check(rctx, req)
	cancel()
	var pe *protocol.Error
	switch {
	case err == nil && (res.RequestID != req.RequestID || res.CardDigest != s.digest):
		k.cfg.Log.Error("check answer does not match this session", "session", s.id, "request", req.RequestID)
		return false, k.fail(ctx, s, msgCenterDown)
	case err == nil:
		c.refused = nil
		for _, kd := range []certificate.Kind{certificate.Overseas, certificate.Domestic} {
			if !slices.Contains(res.Kinds, string(kd)) {
				if c.refused == nil {
					c.refused = map[certificate.Kind]*Message{}
				}
				c.refused[kd] = msg(protocol.CodePassportRequired)
			}
		}
		if c.refused[certificate.Domestic] != nil {
			// The center offers every resident with a record the domestic kind.
			return false, k.fail(ctx, s, msgCenterDown)
		}
		return false, nil
	case errors.As(err, &pe) && pe.Code == protocol.CodeNoRecord:
		c.checks++
		if c.checks >= maxChecks {
			return false, k.fail(ctx, s, msg(pe.Code))
		}
		c.notice = msg(pe.Code)
		return true, nil
	case errors.As(err, &pe):
		return false, k.refuse(ctx, s, pe, hello, c.muni)
	}
	k.cfg.Log.Warn("no answer to a check from the center", "session", s.id, "request", req.RequestID, "err", err)
	return false, k.fail(ctx, s, msgCenterDown)
}

// endByResident shows why the session stopped (timeout or cancel).
func (k *Kiosk) endByResident(ctx context.Context, s *session, err error) error {
	switch {
	case errors.Is(err, errTimeout):
		k.publish(Snapshot{Session: s.id, State: StateError, Error: msgTimeout})
	case errors.Is(err, errCancelled):
		k.publish(Snapshot{Session: s.id, State: StateError, Error: msgCancelled})
	default:
		return err
	}
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	return err
}

func (k *Kiosk) voidPayment(ctx context.Context, s *session) {
	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := k.cfg.Payment.Void(vctx, s.requestID); err != nil {
		k.cfg.Log.Error("void payment", "session", s.id, "request", s.requestID, "err", err)
	}
}

// report sends an outcome; if the center cannot be reached in time the
// client keeps it queued and resends it after reconnecting.
func (k *Kiosk) report(s *session, o protocol.Outcome) {
	s.reported = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := k.cfg.Center.ReportOutcome(ctx, o); err != nil {
		k.cfg.Log.Warn("outcome not yet acknowledged", "session", s.id, "request", o.RequestID, "outcome", o.Outcome, "err", err)
	}
}

// checkBinding returns "" when resp belongs to this session, or which
// check failed and the reason code to report.
func (k *Kiosk) checkBinding(s *session, req protocol.Issue) (string, protocol.Code) {
	resp := s.resp
	switch {
	case resp.RequestID != req.RequestID:
		return "request_id", protocol.CodeHolderMismatch
	case resp.CardDigest != s.digest:
		return "card_digest", protocol.CodeHolderMismatch
	case resp.Copies != req.Copies:
		return "copies", protocol.CodeHolderMismatch
	case len(resp.Certificates) == 0:
		return "no_certificate", protocol.CodeHolderMismatch
	case resp.Certificates[0].Kind != req.Kind:
		return "kind", protocol.CodeHolderMismatch
	}
	for i := range resp.Certificates {
		c := &resp.Certificates[i]
		if err := c.Validate(); err != nil {
			return "invalid_certificate", protocol.CodeHolderMismatch
		}
		if c.Issuer.MunicipalityCode != req.Municipality {
			return "municipality", protocol.CodeHolderMismatch
		}
		// The same rule the center applied to the record (pkg/holder).
		if err := holder.Match(s.card.FourItems, holder.FromCertificate(c)); err != nil {
			return holderCheck(err), holder.RefusalCode(err)
		}
	}
	return "", ""
}

// holderCheck names the holder check that failed, for the log.
func holderCheck(err error) string {
	switch {
	case errors.Is(err, holder.ErrNameMismatch):
		return "holder_name"
	case errors.Is(err, holder.ErrBirthDateMismatch):
		return "holder_birth_date"
	case errors.Is(err, holder.ErrSexMismatch):
		return "holder_sex"
	}
	return "holder"
}

func offered(ms []protocol.Municipality, code string) bool {
	for _, m := range ms {
		if m.Code == code {
			return true
		}
	}
	return false
}

func kindOffered(ks []certificate.Kind, k certificate.Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}
