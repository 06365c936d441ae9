package localapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/assets/audio"
	"github.com/kioskcert/kioskcert/assets/fonts"
	"github.com/kioskcert/kioskcert/assets/municipalities"
	"github.com/kioskcert/kioskcert/assets/ui"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// pageCSP allows the page its own scripts, styles, font, sounds and event
// stream and nothing else: no inline script, no other origin, no framing
// by anything but itself (the simulator shows the screen in a frame).
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; font-src 'self'; media-src 'self'; " +
	"img-src 'self'; connect-src 'self'; frame-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"

// maxInputBody bounds a screen input; a real one is under 200 bytes.
const maxInputBody = 1024

// pageRoutes registers the touch screen and its event stream and inputs.
//
//	GET  /                          the page (assets/ui/index.html)
//	GET  /ui/...                    its scripts, styles and message files
//	GET  /ui/i18n/languages.json    the languages the page offers
//	GET  /ui/wards.json             the designated cities' wards (see pageWards)
//	GET  /audio/<lang>/<key>.opus   voice prompts (assets/audio)
//	GET  /fonts/ipaexg.ttf          the Japanese font
//	GET  /api/v1/screen/events      server-sent snapshots (event "snapshot")
//	POST /api/v1/screen/input       {"type", "state", "pin", "municipality", "kind", "copies"}
func (s *Server) pageRoutes() {
	s.mux.HandleFunc("GET /{$}", s.page(func(w http.ResponseWriter, r *http.Request) {
		serveFile(w, r, ui.FS(), "index.html")
	}))
	s.mux.HandleFunc("GET /ui/i18n/languages.json", s.page(func(w http.ResponseWriter, r *http.Request) {
		langs, err := ui.Languages()
		if err != nil {
			s.cfg.Log.Error("page languages", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "localapi: message files are broken; rebuild the agent")
			return
		}
		writeJSON(w, http.StatusOK, langs)
	}))
	s.mux.HandleFunc("GET /ui/wards.json", s.page(func(w http.ResponseWriter, r *http.Request) {
		wards, err := pageWards(time.Now())
		if err != nil {
			s.cfg.Log.Error("page wards", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "localapi: the ward list is broken; rebuild the agent")
			return
		}
		writeJSON(w, http.StatusOK, wards)
	}))
	s.mux.HandleFunc("GET /ui/{file...}", s.page(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		// The simulator's panel exists only in simulator mode.
		if strings.HasPrefix(name, "sim/") && s.cfg.Sim == nil {
			http.NotFound(w, r)
			return
		}
		serveFile(w, r, ui.FS(), name)
	}))
	s.mux.HandleFunc("GET /audio/{file...}", s.page(func(w http.ResponseWriter, r *http.Request) {
		serveFile(w, r, audio.FS(), r.PathValue("file"))
	}))
	s.mux.HandleFunc("GET /fonts/ipaexg.ttf", s.page(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "font/ttf")
		http.ServeContent(w, r, "ipaexg.ttf", time.Time{}, bytes.NewReader(fonts.IPAexGothic()))
	}))
	s.mux.HandleFunc("GET /api/v1/screen/events", s.page(func(w http.ResponseWriter, r *http.Request) {
		s.streamSnapshots(w, r, screenView)
	}))
	s.mux.HandleFunc("POST /api/v1/screen/input", s.page(s.screenInput))
}

// pageWard is one ward of a designated city as the page shows it. The
// page sends City when the resident chooses it: the city keeps the records.
type pageWard struct {
	Code  string `json:"code"`
	City  string `json:"city"`
	Ja    string `json:"ja"`
	Kana  string `json:"kana"`
	En    string `json:"en"`
	Until string `json:"until,omitempty"` // last day of an abolished ward
}

var shippedWards = sync.OnceValues(municipalities.ShippedWards)

// pageWards lists the wards that exist on day or existed before it: an
// abolished ward stays, marked with its last day, because residents are
// asked where they were registered when vaccinated (Hamamatsu's seven
// wards until 2023). A ward not yet created is left out. The page shows
// the wards of the designated cities the center lists; about 180 entries.
func pageWards(day time.Time) ([]pageWard, error) {
	wards, err := shippedWards()
	if err != nil {
		return nil, err
	}
	out := make([]pageWard, 0, len(wards))
	for _, w := range wards {
		if w.Future(day) {
			continue
		}
		pw := pageWard{Code: w.Code, City: w.CityCode, Ja: w.Name, Kana: w.NameKana, En: w.EnglishName()}
		if w.Abolished(day) {
			pw.Until = w.Until
		}
		out = append(out, pw)
	}
	return out, nil
}

// page adds the page's security headers.
func (s *Server) page(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", pageCSP)
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.Header().Set("Cross-Origin-Resource-Policy", "same-origin")
		h(w, r)
	}
}

// contentTypes covers what Go's table may lack on a minimal system.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".json": "application/json",
	".opus": "audio/ogg; codecs=opus",
	".ttf":  "font/ttf",
}

// serveFile serves one embedded file; directories are not listed.
func serveFile(w http.ResponseWriter, r *http.Request, fsys fs.FS, name string) {
	if name == "" || strings.HasSuffix(name, "/") || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct := contentTypes[path.Ext(name)]
	if ct == "" {
		ct = mime.TypeByExtension(path.Ext(name))
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// screenSnapshot is what the page receives: the whole snapshot (the
// resident must check the preview), the time left on this screen (so the
// countdown does not depend on the page's clock), and the preview without
// its QR payloads, which the page does not show.
type screenSnapshot struct {
	flow.Snapshot
	RemainingMS int64                     `json:"remainingMs,omitempty"`
	Preview     []certificate.Certificate `json:"preview,omitempty"`
}

func screenView(snap flow.Snapshot) any {
	v := screenSnapshot{Snapshot: snap}
	if !snap.Deadline.IsZero() {
		v.RemainingMS = max(time.Until(snap.Deadline).Milliseconds(), 1)
	}
	if len(snap.Preview) > 0 {
		v.Preview = make([]certificate.Certificate, len(snap.Preview))
		for i, c := range snap.Preview {
			c.SHC, c.VDSNC = "", ""
			v.Preview[i] = c
		}
	}
	return v
}

// screenInput is the page's input. State is the screen the resident
// touched: an input for a screen no longer shown is refused, so a tap that
// arrives late cannot act on the next screen.
type screenInput struct {
	Type         flow.InputType   `json:"type"`
	State        flow.State       `json:"state"`
	PIN          pinDigits        `json:"pin"`
	Municipality string           `json:"municipality"`
	Kind         certificate.Kind `json:"kind"`
	Copies       int              `json:"copies"`
}

// inputFields are the fields screenInput accepts.
var inputFields = map[string]bool{"type": true, "state": true, "pin": true, "municipality": true, "kind": true, "copies": true}

// pinDigits decodes the PIN straight from the request body into its own
// bytes, so that no Go string (which cannot be wiped) ever holds it.
type pinDigits []byte

// errPINFormat is refused before the PIN reaches the flow or the card.
var errPINFormat = errors.New("localapi: pin must be 4 digits")

// UnmarshalJSON implements json.Unmarshaler.
func (p *pinDigits) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) != 6 || b[0] != '"' || b[5] != '"' {
		return errPINFormat
	}
	d := make([]byte, 4)
	for i := range 4 {
		c := b[1+i]
		if c < '0' || c > '9' {
			clear(d)
			return errPINFormat
		}
		d[i] = c
	}
	*p = d
	return nil
}

// skipValue accepts any JSON value without keeping it (for the field check).
type skipValue struct{}

// UnmarshalJSON implements json.Unmarshaler.
func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// decodeScreenInput decodes and checks body. The caller clears body; on
// success the returned Input's PIN belongs to the flow, which wipes it.
func decodeScreenInput(body []byte) (flow.Input, flow.State, error) {
	var fields map[string]skipValue
	if err := json.Unmarshal(body, &fields); err != nil {
		return flow.Input{}, "", fmt.Errorf("localapi: input must be a JSON object: %w", syntaxOnly(err))
	}
	for k := range fields {
		if !inputFields[k] {
			return flow.Input{}, "", fmt.Errorf("localapi: unknown input field %q", k)
		}
	}
	var in screenInput
	if err := json.Unmarshal(body, &in); err != nil {
		clear(in.PIN)
		if errors.Is(err, errPINFormat) {
			return flow.Input{}, "", errPINFormat
		}
		return flow.Input{}, "", fmt.Errorf("localapi: input: %w", syntaxOnly(err))
	}
	bad := func(format string, a ...any) (flow.Input, flow.State, error) {
		clear(in.PIN)
		return flow.Input{}, "", fmt.Errorf("localapi: "+format, a...)
	}
	if in.State == "" {
		return bad("input needs the state of the screen it was made on")
	}
	switch in.Type {
	case flow.InputPIN:
		if len(in.PIN) != 4 {
			return bad("a pin input needs the 4 digits")
		}
	case flow.InputMunicipality:
		if len(in.Municipality) != 6 {
			return bad("municipality must be a 6-digit local government code")
		}
	case flow.InputKind:
		if !in.Kind.Valid() {
			return bad("kind must be domestic or overseas")
		}
	case flow.InputCopies:
		if in.Copies < 1 || in.Copies > 99 {
			return bad("copies must be between 1 and 99")
		}
	case flow.InputConfirm, flow.InputRetry, flow.InputCancel, flow.InputStop, flow.InputBack:
	default:
		return bad("unknown input type %q", in.Type)
	}
	// Only the field the type needs travels on.
	if in.Type != flow.InputPIN && in.PIN != nil {
		return bad("pin is only for a pin input")
	}
	out := flow.Input{Type: in.Type, PIN: in.PIN}
	switch in.Type {
	case flow.InputMunicipality:
		out.Municipality = in.Municipality
	case flow.InputKind:
		out.Kind = in.Kind
	case flow.InputCopies:
		out.Copies = in.Copies
	}
	return out, in.State, nil
}

// syntaxOnly keeps an error message free of the input's values: encoding/json
// quotes offending values in some errors, and the body may hold a PIN.
func syntaxOnly(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("field %q has the wrong type", te.Field)
	}
	return errors.New("invalid JSON")
}

// screenInput handles POST /api/v1/screen/input: 204 when the flow has the
// input, 400 for a malformed one, 409 when the screen has moved on or does
// not offer it.
func (s *Server) screenInput(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "content_type", "localapi: send the input as application/json")
		return
	}
	// Read into a buffer of our own and overwrite it afterwards: it may hold
	// the PIN.
	var buf [maxInputBody + 1]byte
	n, err := io.ReadFull(r.Body, buf[:])
	defer clear(buf[:])
	switch {
	case n > maxInputBody:
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "localapi: input too large")
		return
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "bad_input", "localapi: reading the input failed")
		return
	}
	in, state, err := decodeScreenInput(buf[:n])
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_input", err.Error())
		return
	}
	cur := s.cfg.Kiosk.Snapshot()
	if cur.State != state {
		clear(in.PIN)
		writeError(w, http.StatusConflict, "stale", fmt.Sprintf("localapi: the screen shows %s now, not %s", cur.State, state))
		return
	}
	if !offers(cur, in.Type) {
		clear(in.PIN)
		writeError(w, http.StatusConflict, "not_offered", fmt.Sprintf("localapi: the %s screen does not take %s", cur.State, in.Type))
		return
	}
	s.cfg.Kiosk.Input(in)
	w.WriteHeader(http.StatusNoContent)
}

// offers reports whether the screen for snap waits for an input of type t.
// An input the flow is not waiting for would stay queued and act on a later
// screen (a stray "confirm" could end the next take-your-certificate
// reminder), so the page may send only what the screen offers.
func offers(snap flow.Snapshot, t flow.InputType) bool {
	switch snap.State {
	case flow.StatePIN:
		return t == flow.InputPIN || t == flow.InputCancel
	case flow.StateMunicipality:
		return t == flow.InputMunicipality || t == flow.InputBack || t == flow.InputCancel
	case flow.StateKind:
		return t == flow.InputKind || t == flow.InputBack || t == flow.InputCancel
	case flow.StateCopies:
		return t == flow.InputCopies || t == flow.InputBack || t == flow.InputCancel
	case flow.StatePreview:
		return t == flow.InputConfirm || t == flow.InputCancel
	case flow.StatePrintFailed:
		return t == flow.InputRetry || t == flow.InputCancel
	case flow.StateTakeCertificate:
		return t == flow.InputStop || t == flow.InputConfirm
	case flow.StateError:
		// Only an error with a deadline waits for acknowledgement; the
		// others wait for the card to be taken, or pass by themselves.
		return !snap.Deadline.IsZero() && (t == flow.InputConfirm || t == flow.InputCancel)
	}
	return false
}
