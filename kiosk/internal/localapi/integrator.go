package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/terminal"
)

// The integrator API (docs/INTEGRATION.md, docs/integration-openapi.yaml).
// Every route needs the bearer token; none returns personal data except the
// print-job PDF, which leaves the agent once.

// IntegratorPrefix is where the integrator API lives.
const IntegratorPrefix = "/api/v1/integrator/"

// Integrator carries the integrator API's plug-ins and health source.
type Integrator struct {
	// Terminal is the store terminal's payment and printer plug-in. Nil
	// when the agent uses neither: the payment, print-job and printer
	// routes then answer 404 not_enabled.
	Terminal *terminal.Terminal
	// Health reports the devices; the handler adds the session state and
	// the terminal's open requests. Nil reports the session state only.
	Health func(context.Context) Health
	// Starter arms the kiosk for one session when sessions start from the
	// terminal (config integrator.start "terminal"); nil when a card
	// placed on the reader starts a session.
	Starter Starter
	// Keepalive is the interval of comment lines on the event stream;
	// default 15 s.
	Keepalive time.Duration
}

// Starter arms the kiosk for one session: the terminal hands its screen
// over, the kiosk accepts the next card, and disarms itself once a
// session has started.
type Starter interface {
	// Arm lets the next card start a session.
	Arm()
	// Disarm withdraws an Arm not yet used; it reports whether one was.
	Disarm() bool
	// Armed reports whether the kiosk waits for a card now.
	Armed() bool
}

// Health is the kiosk's health as the terminal reads it.
type Health struct {
	// State is the session state now (flow.State).
	State flow.State `json:"state"`
	// ReaderPresent is true when the card reader answers ("reader":"ok").
	ReaderPresent bool   `json:"readerPresent"`
	Reader        string `json:"reader"`
	// CenterConnected is true while the connection to the issuance center
	// is up.
	CenterConnected bool `json:"centerConnected"`
	// PrinterReady is true when the printer can take a job; Printer names
	// its state (ready, busy, paper-out, jammed, cover-open, supply-empty,
	// stopped, offline).
	PrinterReady bool   `json:"printerReady"`
	Printer      string `json:"printer"`
	// PendingOutcomes counts session outcomes (printed, failed, ...) the
	// center has not yet acknowledged; they are resent after reconnecting.
	PendingOutcomes int `json:"pendingOutcomes"`
	// Terminal counts the requests waiting for the terminal (absent when
	// neither payment nor printer is the terminal's).
	Terminal *terminal.Counts `json:"terminal,omitempty"`
	// LastError is the code of the last error a session showed, and when.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// SessionView is the session as the integrator sees it: a snapshot with
// everything personal left out. It is built field by field from the
// snapshot (an allow-list), so a field added to flow.Snapshot later does
// not leak here by default. It never holds the preview, the holder's name,
// the municipality or kind chosen, or certificate contents.
type SessionView struct {
	Session   string        `json:"session,omitempty"`
	State     flow.State    `json:"state"`
	Seq       uint64        `json:"seq"`
	Deadline  time.Time     `json:"deadline,omitzero"`
	Armed     bool          `json:"armed,omitempty"`
	TriesLeft int           `json:"triesLeft,omitempty"`
	LastTry   bool          `json:"lastTry,omitempty"`
	WrongPIN  bool          `json:"wrongPin,omitempty"`
	Copies    int           `json:"copies,omitempty"`
	FeeYen    int           `json:"feeYen,omitempty"`
	Reminder  int           `json:"reminder,omitempty"`
	CanRetry  bool          `json:"canRetry,omitempty"`
	Error     *flow.Message `json:"error,omitempty"`
}

// Redact builds the integrator's view of a snapshot.
func Redact(s flow.Snapshot) SessionView {
	v := SessionView{
		Session: s.Session, State: s.State, Seq: s.Seq, Deadline: s.Deadline,
		TriesLeft: s.TriesLeft, LastTry: s.LastTry, WrongPIN: s.WrongPIN,
		Copies: s.Copies, FeeYen: s.FeeYen, Reminder: s.Reminder, CanRetry: s.CanRetry,
	}
	if s.Error != nil {
		// Messages are the flow's fixed texts, keyed by code.
		m := *s.Error
		v.Error = &m
	}
	return v
}

// integratorRoute is one route of the integrator API.
type integratorRoute struct {
	pattern string // method and path, as http.ServeMux reads it
	handler func(*Server, http.ResponseWriter, *http.Request)
}

// integratorAPI lists every route; the OpenAPI description is checked
// against it (integrator_test.go).
var integratorAPI = []integratorRoute{
	{"GET /api/v1/integrator/session", (*Server).getSession},
	{"POST /api/v1/integrator/session/start", (*Server).startSession},
	{"POST /api/v1/integrator/session/cancel", (*Server).cancelSession},
	{"GET /api/v1/integrator/events", (*Server).integratorEvents},
	{"GET /api/v1/integrator/pending", (*Server).getPending},
	{"GET /api/v1/integrator/health", (*Server).getHealth},
	{"POST /api/v1/integrator/payments/{paymentId}", (*Server).answerPayment},
	{"POST /api/v1/integrator/payments/{paymentId}/captured", ackPayment(terminal.AckCaptured)},
	{"POST /api/v1/integrator/payments/{paymentId}/voided", ackPayment(terminal.AckVoided)},
	{"GET /api/v1/integrator/print-jobs/{file}", (*Server).fetchPDF},
	{"POST /api/v1/integrator/print-jobs/{jobId}", (*Server).reportPrint},
	{"PUT /api/v1/integrator/printer", (*Server).putPrinter},
}

// integratorRoutes registers the integrator API.
func (s *Server) integratorRoutes() {
	for _, rt := range integratorAPI {
		h := rt.handler
		s.mux.HandleFunc(rt.pattern, s.requireToken(s.touch(func(w http.ResponseWriter, r *http.Request) { h(s, w, r) })))
	}
	// Anything else under the prefix: a JSON 404, still behind the token so
	// the API's shape is not probed without it.
	s.mux.HandleFunc(IntegratorPrefix, s.requireToken(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such integrator API route (docs/INTEGRATION.md)")
	}))
}

// touch records that the terminal is there.
func (s *Server) touch(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if t := s.cfg.Integrator.Terminal; t != nil {
			t.Touch()
		}
		h(w, r)
	}
}

func (s *Server) sessionView() SessionView {
	v := Redact(s.cfg.Kiosk.Snapshot())
	if st := s.cfg.Integrator.Starter; st != nil {
		v.Armed = st.Armed()
	}
	return v
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.sessionView())
}

// startSession arms the kiosk (armed mode only).
func (s *Server) startSession(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Integrator.Starter
	if st == nil {
		writeError(w, http.StatusConflict, "start_not_enabled", "sessions start when a card is placed on the reader (config integrator.start is \"card\")")
		return
	}
	if snap := s.cfg.Kiosk.Snapshot(); snap.State != flow.StateIdle || snap.Session != "" {
		writeError(w, http.StatusConflict, "session_running", "a session is running; start another when the state is idle")
		return
	}
	st.Arm()
	writeJSON(w, http.StatusAccepted, s.sessionView())
}

// cancelSession withdraws an unused Arm, or asks the flow to cancel. The
// flow honours cancel only where the resident could press cancel (PIN,
// choices, preview, print failed, error screens); during payment the
// terminal answers the payment as failed instead.
func (s *Server) cancelSession(w http.ResponseWriter, r *http.Request) {
	if st := s.cfg.Integrator.Starter; st != nil && st.Disarm() {
		writeJSON(w, http.StatusAccepted, s.sessionView())
		return
	}
	s.cfg.Kiosk.Input(flow.Input{Type: flow.InputCancel})
	writeJSON(w, http.StatusAccepted, s.sessionView())
}

func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) {
	var h Health
	if s.cfg.Integrator.Health != nil {
		h = s.cfg.Integrator.Health(r.Context())
	}
	h.State = s.cfg.Kiosk.Snapshot().State
	if t := s.cfg.Integrator.Terminal; t != nil {
		c := t.Counts()
		h.Terminal = &c
	}
	writeJSON(w, http.StatusOK, h)
}

// pendingResponse is GET /pending: the open requests, for a terminal that
// polls instead of holding the event stream.
type pendingResponse struct {
	Events []terminal.Event `json:"events"`
}

func (s *Server) getPending(w http.ResponseWriter, r *http.Request) {
	t := s.terminal(w)
	if t == nil {
		return
	}
	ev := t.Pending()
	if ev == nil {
		ev = []terminal.Event{}
	}
	writeJSON(w, http.StatusOK, pendingResponse{Events: ev})
}

// terminal returns the plug-in, or answers 404 when there is none.
func (s *Server) terminal(w http.ResponseWriter) *terminal.Terminal {
	t := s.cfg.Integrator.Terminal
	if t == nil {
		writeError(w, http.StatusNotFound, "not_enabled", "neither payment nor printer is the store terminal's (config payment.mode / printer.kind \"terminal\")")
	}
	return t
}

// paymentAnswer is the body of POST /payments/{paymentId}.
type paymentAnswer struct {
	Result string `json:"result"`           // paid or failed
	Reason string `json:"reason,omitempty"` // failed: declined, cancelled, timeout, other
}

func (s *Server) answerPayment(w http.ResponseWriter, r *http.Request) {
	t := s.terminal(w)
	if t == nil {
		return
	}
	var a paymentAnswer
	if err := readAnswer(r, &a); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if a.Result != terminal.ResultPaid && a.Result != terminal.ResultFailed {
		writeError(w, http.StatusBadRequest, "bad_request", `result must be "paid" or "failed"`)
		return
	}
	p, err := t.AnswerPayment(r.PathValue("paymentId"), a.Result == terminal.ResultPaid, a.Reason)
	writeTerminal(w, p, err)
}

func ackPayment(a terminal.Ack) func(*Server, http.ResponseWriter, *http.Request) {
	return func(s *Server, w http.ResponseWriter, r *http.Request) {
		t := s.terminal(w)
		if t == nil {
			return
		}
		p, err := t.Acknowledge(r.PathValue("paymentId"), a)
		writeTerminal(w, p, err)
	}
}

// fetchPDF serves a job's PDF once; the bytes are overwritten after the
// write, whether or not it succeeded.
func (s *Server) fetchPDF(w http.ResponseWriter, r *http.Request) {
	t := s.terminal(w)
	if t == nil {
		return
	}
	id, ok := strings.CutSuffix(r.PathValue("file"), ".pdf")
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "the PDF is at /api/v1/integrator/print-jobs/{jobId}.pdf")
		return
	}
	pdf, _, err := t.FetchPDF(id)
	if err != nil {
		writeTerminal(w, nil, err)
		return
	}
	defer clear(pdf)
	w.Header().Set("Content-Type", "application/pdf")
	w.Header().Set("Content-Length", strconv.Itoa(len(pdf)))
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", id+".pdf"))
	w.WriteHeader(http.StatusOK)
	w.Write(pdf)
}

// printReport is the body of POST /print-jobs/{jobId}.
type printReport struct {
	Result string `json:"result"`           // printed or failed
	Reason string `json:"reason,omitempty"` // failed: paper_out, jam, other
}

func (s *Server) reportPrint(w http.ResponseWriter, r *http.Request) {
	t := s.terminal(w)
	if t == nil {
		return
	}
	var rep printReport
	if err := readAnswer(r, &rep); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if rep.Result != terminal.ResultPrinted && rep.Result != terminal.ResultFailed {
		writeError(w, http.StatusBadRequest, "bad_request", `result must be "printed" or "failed"`)
		return
	}
	j, err := t.ReportPrint(r.PathValue("jobId"), rep.Result == terminal.ResultPrinted, rep.Reason)
	writeTerminal(w, j, err)
}

// printerState is the body of PUT /printer and its answer.
type printerState struct {
	State string `json:"state"`
	Ready bool   `json:"ready"`
}

func (s *Server) putPrinter(w http.ResponseWriter, r *http.Request) {
	t := s.terminal(w)
	if t == nil {
		return
	}
	var body struct {
		State string `json:"state"`
	}
	if err := readAnswer(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	st, err := terminal.ParsePrinterState(body.State)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	t.SetPrinterState(st)
	status, _ := t.Status(r.Context())
	writeJSON(w, http.StatusOK, printerState{State: status.State.String(), Ready: status.Ready()})
}

// readAnswer decodes a small JSON body strictly: one object, no unknown
// fields, nothing after it (a body carrying two answers is refused, not
// half-read).
func readAnswer(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("localapi: request body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("localapi: request body: data after the JSON object")
	}
	return nil
}

// writeTerminal answers with v, or maps the terminal's error to a status.
func writeTerminal(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, terminal.ErrInvalid):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, terminal.ErrUnknown):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, terminal.ErrPDFGone):
		writeError(w, http.StatusGone, "gone", err.Error())
	case errors.Is(err, terminal.ErrExpired):
		writeError(w, http.StatusConflict, "expired", err.Error())
	case errors.Is(err, terminal.ErrNotFetched):
		writeError(w, http.StatusConflict, "pdf_not_fetched", err.Error())
	case errors.Is(err, terminal.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "internal_error", "the request could not be handled; see the agent's log")
	}
}

// integratorEvents streams server-sent events: "session" with each
// SessionView, and the terminal's events (payment.authorize,
// payment.capture, payment.void, print.job, print.cancel) named by their
// type. The stream starts with the session now and the open requests.
func (s *Server) integratorEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	snaps, cancelSnaps := s.cfg.Kiosk.Subscribe()
	defer cancelSnaps()
	var events <-chan terminal.Event // nil: never ready
	if t := s.cfg.Integrator.Terminal; t != nil {
		ch, cancel := t.Subscribe()
		defer cancel()
		events = ch
	}
	every := s.cfg.Integrator.Keepalive
	if every <= 0 {
		every = 15 * time.Second
	}
	keepalive := time.NewTicker(every)
	defer keepalive.Stop()
	// A terminal that stops reading must not hold a goroutine forever.
	write := func(f string, args ...any) error {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, f, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	if write("retry: 2000\n\n") != nil {
		return
	}
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case snap := <-snaps:
			v := Redact(snap)
			if st := s.cfg.Integrator.Starter; st != nil {
				v.Armed = st.Armed()
			}
			b, _ := json.Marshal(v)
			err = write("event: session\ndata: %s\n\n", b)
		case ev, ok := <-events:
			if !ok {
				// The stream fell behind or the agent is stopping; the
				// terminal reconnects and gets the open requests again.
				return
			}
			b, _ := json.Marshal(ev)
			err = write("id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, b)
		case <-keepalive.C:
			err = write(": keepalive\n\n")
		}
		if err != nil {
			return
		}
	}
}
