package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	demodata "github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/ipptest"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// kioskCounter runs TestCounterOnly's sessions.
const kioskCounter = "E2E-COUNTER"

// counterCase is one synthetic resident of TestCounterOnly: a record flag
// or a name on the card that sends them to the counter, or (moved out)
// one that does not.
type counterCase struct {
	name string
	// Ledger flag columns (docs/RECORDS.md).
	counterOnly, deceased, movedOut string
	// cardAlias is appended to the name on the card (a former name).
	cardAlias string
	// event is the audit event type the refusal must carry; "" for a
	// resident who is served.
	event string
}

var counterCases = []counterCase{
	{name: "support measure", counterOnly: "support_measure", event: "counter_only.support_measure"},
	{name: "alias on record", counterOnly: "alias_on_record", event: "counter_only.alias_on_record"},
	{name: "travel document", counterOnly: "travel_document", event: "counter_only.travel_document"},
	{name: "staff review", counterOnly: "staff_review", event: "counter_only.staff_review"},
	{name: "deceased", deceased: "2024-02-11", event: "counter_only.deceased"},
	{name: "former name on the card", cardAlias: "［旧姓　試作］", event: "counter_only.alias_on_card"},
	{name: "moved out", movedOut: "2023-10-01"},
}

// counterResident is a synthetic resident made for one case: never
// written to disk (the ledger goes to the center in the request body).
type counterResident struct {
	demodata.Resident
	card *virtualcard.Card
}

// counterResidents makes the residents, their cards, and imports their
// records into Asahikawa's ledger as a changes file through the
// operations API, as a municipality's system would send one.
func counterResidents(t *testing.T) []counterResident {
	t.Helper()
	ap, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var subject [carddata.KeyIDLen]byte
	h := sha256.Sum256(ap.N.Bytes())
	copy(subject[:], h[:])
	givens := []string{"一子", "二子", "三子", "四子", "五子", "六子", "七子"}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"action", "municipality_code", "my_number", "resident_number", "ticket_number", "name", "name_kana",
		"roman_family", "roman_given", "birth_date", "sex", "nationality", "passport_number", "dose_number",
		"vaccination_date", "product_code", "manufacturer", "lot_number", "vaccine_type",
		"counter_only", "deceased_date", "moved_out_date"})
	var out []counterResident
	for i, c := range counterCases {
		num, err := mynumber.Complete(fmt.Sprintf("9%010d", 7000001*(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		r := demodata.Resident{
			ID: fmt.Sprintf("counter%d", i), MyNumber: num, PIN: fmt.Sprintf("%04d", 2000+i*111),
			Name: "窓口　" + givens[i], Address: fmt.Sprintf("北海道旭川市窓口試験町%d丁目%d番地", i+1, 40+i),
			BirthDate: fmt.Sprintf("19%02d-0%d-1%d", 50+i*3, i+1, i), Sex: "2",
			Records: []demodata.Record{{Municipality: "012041", ResidentNumber: fmt.Sprintf("66%08d", i+1),
				Doses: []demodata.Dose{
					{Number: 1, Date: "2021-07-0" + strconv.Itoa(i+1), Product: "comirnaty", Lot: fmt.Sprintf("CA%04d", i)},
					{Number: 2, Date: "2021-07-2" + strconv.Itoa(i+1), Product: "comirnaty", Lot: fmt.Sprintf("CB%04d", i)},
				}}},
		}
		cardName := r.Name + c.cardAlias
		raw, err := env.authority.Personalize(r.MyNumber, carddata.FourItems{
			Name: cardName, Address: r.Address, BirthDate: r.CardBirthDate(), Sex: carddata.Sex(r.Sex[0]),
		}, ap, subject)
		if err != nil {
			t.Fatal(err)
		}
		card, err := virtualcard.New(raw, r.PIN, virtualcard.Options{ExtendedLength: true})
		if err != nil {
			t.Fatal(err)
		}
		r.CardName = cardName
		out = append(out, counterResident{Resident: r, card: card})
		rec := r.Records[0]
		for _, d := range rec.Doses {
			w.Write([]string{"set", "012041", r.MyNumber, rec.ResidentNumber, "", r.Name, "", "", "", r.BirthDate, r.Sex, "", "",
				strconv.Itoa(d.Number), d.Date, d.Product, "ファイザー", d.Lot, "mRNAワクチン", c.counterOnly, c.deceased, c.movedOut})
		}
	}
	w.Flush()
	env.addResidents(out)
	if _, err := env.opsPost("/ops/records/012041?mode=changes", "text/csv", buf.Bytes()); err != nil {
		t.Fatalf("import the synthetic residents: %v", err)
	}
	return out
}

// recordingChecker passes the flow's calls to the center and records each
// refusal exactly as the protocol carried it, and which step gave it.
type recordingChecker struct {
	flow.Center
	mu      sync.Mutex
	answers []string // "<step> <error JSON, request ID blanked>"
	ids     []string // the refused requests' IDs
	issues  int
}

func (c *recordingChecker) record(step, requestID string, err error) {
	var pe *protocol.Error
	if err == nil || !errors.As(err, &pe) {
		return
	}
	b, _ := json.Marshal(pe)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answers = append(c.answers, step+" "+strings.ReplaceAll(string(b), requestID, "RID"))
	c.ids = append(c.ids, requestID)
}

// Check implements flow.Checker.
func (c *recordingChecker) Check(ctx context.Context, req protocol.Check) (*protocol.Checked, error) {
	res, err := c.Center.(flow.Checker).Check(ctx, req)
	c.record("check", req.RequestID, err)
	return res, err
}

// Issue implements flow.Center.
func (c *recordingChecker) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	c.mu.Lock()
	c.issues++
	c.mu.Unlock()
	res, err := c.Center.Issue(ctx, req)
	c.record("issue", req.RequestID, err)
	return res, err
}

func (c *recordingChecker) take() (answers, ids []string, issues int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	answers, ids, issues = c.answers, c.ids, c.issues
	c.answers, c.ids, c.issues = nil, nil, 0
	return answers, ids, issues
}

// screenOf is an error screen with what differs between any two sessions
// (session ID, sequence number, deadline) blanked: what the screen and
// the voice (assets/ui/app.js promptsFor: state, takeCard, reminder and
// the error's code) work from.
func screenOf(s flow.Snapshot) string {
	s.Session, s.Seq, s.Deadline = "", 0, time.Time{}
	b, _ := json.Marshal(s)
	return string(b)
}

// flowStates drops the states a lossy subscriber may or may not see
// (those that wait for nothing): the rest are the screens a person
// standing by sees, each for as long as the resident takes.
func flowStates(states []flow.State) []flow.State {
	return slices.DeleteFunc(slices.Clone(states), func(s flow.State) bool {
		return s == flow.StateCardCheck || s == flow.StateReading || s == flow.StateChecking || s == flow.StateRequesting
	})
}

// TestCounterOnly: residents their municipality serves at its counter
// (each counter-only reason, deceased, a former name on the card) get the
// same screen, voice prompt, flow and protocol answer at the same step,
// are charged nothing and get their card back; the audit event keeps the
// reason for the municipality, and no metric or log line does. A
// moved-out resident is served for the doses given before the move.
func TestCounterOnly(t *testing.T) {
	env.ensureCenter(t)
	residents := counterResidents(t)
	p := startPrinter(t, ipptest.Options{})
	rec := &recordingChecker{}
	k := startKiosk(t, kioskOptions{id: kioskCounter, printerURI: p.URI, wrapCenter: func(c flow.Center) flow.Center {
		rec.Center = c
		return rec
	}})
	hello, _ := k.Client.Hello()
	if !hello.HasFeature(protocol.FeatureCheck) {
		t.Fatal("the center does not announce check")
	}
	wantCounter := &flow.Counter{Ja: "旭川市役所 市民課（総合庁舎1階）", En: "Asahikawa City Hall, Citizens Division (1st floor)"}

	var first *struct {
		screen string
		states []flow.State
		answer string
	}
	for i, c := range counterCases {
		r := residents[i]
		t.Run(c.name, func(t *testing.T) {
			before := k.pay.Ledger()
			card := &pcscCard{card: r.card}
			res := play(t, k, card, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
			answers, ids, issues := rec.take()
			if card.conn != nil {
				t.Error("the card is still on the reader at the end of the session")
			}
			if !slices.Contains(res.States, flow.StateRemoveCard) {
				t.Errorf("states %v: the card was never handed back", res.States)
			}
			if c.event == "" {
				// Moved out: served, for the doses given before the move.
				if err := res.Must(); err != nil {
					t.Fatal(err)
				}
				id, e := newRequest(t, before, k.pay.Ledger())
				checkPaidOnce(t, e)
				docs := printedFor(t, p, id)
				if len(docs) != 1 {
					t.Fatalf("%d documents printed, want 1", len(docs))
				}
				evs := checkSettledOnce(t, kioskCounter, id, 1)
				for _, e := range evs {
					if e.RequestID == id && strings.HasPrefix(e.Type, "counter_only") {
						t.Errorf("a moved-out resident's request has event %s", e.Type)
					}
				}
				return
			}
			if res.Printed || res.Error == nil || res.Error.Code != string(protocol.CodeCounterOnly) {
				t.Fatalf("printed %v, error %+v; want counter_only", res.Printed, res.Error)
			}
			if n := len(k.pay.Ledger()); n != len(before) {
				t.Errorf("the payment terminal has %d entries, had %d: a resident sent to the counter was charged", n, len(before))
			}
			if issues != 0 || len(answers) != 1 || !strings.HasPrefix(answers[0], "check ") {
				t.Fatalf("the center answered %q (%d issue requests); want one refusal, at check", answers, issues)
			}
			if got := res.ErrorScreen.Counter; got == nil || *got != *wantCounter {
				t.Errorf("the screen names counter %+v, want %+v", got, wantCounter)
			}
			if res.ErrorScreen.Error == nil || res.ErrorScreen.Error.Ja != protocol.CodeCounterOnly.Text().Ja || res.ErrorScreen.TakeCard {
				t.Errorf("error screen %s", screenOf(res.ErrorScreen))
			}
			got := struct {
				screen string
				states []flow.State
				answer string
			}{screenOf(res.ErrorScreen), flowStates(res.States), answers[0]}
			if first == nil {
				first = &got
			} else {
				if got.screen != first.screen {
					t.Errorf("the screen differs from the first case's:\n%s\n%s", got.screen, first.screen)
				}
				if !slices.Equal(got.states, first.states) {
					t.Errorf("the flow went %v, the first case %v", got.states, first.states)
				}
				if got.answer != first.answer {
					t.Errorf("the protocol answer differs:\n%s\n%s", got.answer, first.answer)
				}
			}
			// The municipality's record of it: the reason, in the type.
			var evs []auditEvent
			for _, e := range env.audit(t, kioskCounter) {
				if e.RequestID == ids[0] {
					evs = append(evs, e)
				}
			}
			if len(evs) != 1 || evs[0].Type != c.event || evs[0].Result != "counter_only" || evs[0].Municipality != "012041" {
				t.Errorf("the refused check's events %+v, want one %s", evs, c.event)
			}
		})
	}

	// No reason anywhere but the audit log: not in the metrics, the
	// kiosk's log or the center's.
	metrics, err := env.opsGet("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	centerLog, err := os.ReadFile(filepath.Join(env.center.Dir, "center.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range counterCases {
		if c.event == "" {
			continue
		}
		reason := strings.TrimPrefix(c.event, "counter_only.")
		for where, b := range map[string][]byte{"the metrics": metrics, "the kiosk log": agentLog.Bytes(), "the center log": centerLog} {
			if bytes.Contains(b, []byte(reason)) {
				t.Errorf("%s name the reason %s", where, reason)
			}
		}
	}
	env.checkNoPersonalData(t)
}

// addResidents adds synthetic residents to the personal-data scan.
func (e *environment) addResidents(rs []counterResident) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range rs {
		e.extra = append(e.extra, r.Resident)
	}
}

// opsPost posts body to an operations API path with the operator token.
func (e *environment) opsPost(path, contentType string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.center.OpsAddr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+e.opsToken)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	return b, nil
}
