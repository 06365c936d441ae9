package localapi

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

func TestDecodeScreenInput(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    flow.Input
		state   flow.State
		wantErr string // substring; "" for success
	}{
		{"pin", `{"type":"pin","state":"pin","pin":"1234"}`, flow.Input{Type: flow.InputPIN, PIN: []byte("1234")}, flow.StatePIN, ""},
		{"municipality", `{"type":"municipality","state":"municipality","municipality":"012041"}`, flow.Input{Type: flow.InputMunicipality, Municipality: "012041"}, flow.StateMunicipality, ""},
		{"kind", `{"type":"kind","state":"kind","kind":"overseas"}`, flow.Input{Type: flow.InputKind, Kind: certificate.Overseas}, flow.StateKind, ""},
		{"copies", `{"type":"copies","state":"copies","copies":3}`, flow.Input{Type: flow.InputCopies, Copies: 3}, flow.StateCopies, ""},
		{"confirm", `{"type":"confirm","state":"preview"}`, flow.Input{Type: flow.InputConfirm}, flow.StatePreview, ""},
		{"stop", `{"type":"stop","state":"take-certificate"}`, flow.Input{Type: flow.InputStop}, flow.StateTakeCertificate, ""},
		{"back", `{"type":"back","state":"kind"}`, flow.Input{Type: flow.InputBack}, flow.StateKind, ""},
		{"fields a type does not use are dropped", `{"type":"cancel","state":"kind","kind":"domestic","copies":2}`, flow.Input{Type: flow.InputCancel}, flow.StateKind, ""},
		{"pin too short", `{"type":"pin","state":"pin","pin":"123"}`, flow.Input{}, "", "4 digits"},
		{"pin too long", `{"type":"pin","state":"pin","pin":"12345"}`, flow.Input{}, "", "4 digits"},
		{"pin not digits", `{"type":"pin","state":"pin","pin":"12a4"}`, flow.Input{}, "", "4 digits"},
		{"pin as a number", `{"type":"pin","state":"pin","pin":1234}`, flow.Input{}, "", "4 digits"},
		{"pin with escapes", `{"type":"pin","state":"pin","pin":"\u0031234"}`, flow.Input{}, "", "4 digits"},
		{"pin missing", `{"type":"pin","state":"pin"}`, flow.Input{}, "", "4 digits"},
		{"pin on another input", `{"type":"confirm","state":"preview","pin":"1234"}`, flow.Input{}, "", "only for a pin"},
		{"no state", `{"type":"confirm"}`, flow.Input{}, "", "state"},
		{"unknown type", `{"type":"print","state":"preview"}`, flow.Input{}, "", "unknown input type"},
		{"unknown field", `{"type":"confirm","state":"preview","amount":0}`, flow.Input{}, "", "unknown input field"},
		{"bad kind", `{"type":"kind","state":"kind","kind":"both"}`, flow.Input{}, "", "domestic or overseas"},
		{"copies zero", `{"type":"copies","state":"copies","copies":0}`, flow.Input{}, "", "between 1 and 99"},
		{"copies too many", `{"type":"copies","state":"copies","copies":100}`, flow.Input{}, "", "between 1 and 99"},
		{"municipality short", `{"type":"municipality","state":"municipality","municipality":"01204"}`, flow.Input{}, "", "6-digit"},
		{"not an object", `["pin"]`, flow.Input{}, "", "JSON object"},
		{"not JSON", `{"type":"pin","state":"pin","pin":"98`, flow.Input{}, "", "JSON"},
		{"wrong type of field", `{"type":"copies","state":"copies","copies":"2"}`, flow.Input{}, "", "wrong type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			got, state, err := decodeScreenInput(body)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				if got.PIN != nil {
					t.Fatal("a refused input still carries a PIN")
				}
				// A refusal never repeats what was typed.
				for _, d := range []string{"1234", "12a4", "12345", "98"} {
					if strings.Contains(tc.body, d) && strings.Contains(err.Error(), d) {
						t.Fatalf("error %q repeats the input %q", err, d)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if state != tc.state || got.Type != tc.want.Type || string(got.PIN) != string(tc.want.PIN) ||
				got.Municipality != tc.want.Municipality || got.Kind != tc.want.Kind || got.Copies != tc.want.Copies {
				t.Fatalf("got %+v (pin %q) for state %s, want %+v (pin %q) for %s", got, got.PIN, state, tc.want, tc.want.PIN, tc.state)
			}
			if tc.want.PIN != nil {
				// The PIN bytes are the input's own, not the body's: the
				// handler overwrites the body and the flow the PIN.
				clear(body)
				if string(got.PIN) != string(tc.want.PIN) {
					t.Fatal("the PIN shares memory with the request body")
				}
			}
		})
	}
}

func TestPINDigitsUnmarshal(t *testing.T) {
	var p pinDigits
	if err := json.Unmarshal([]byte(`null`), &p); err != nil || p != nil {
		t.Fatalf("null: %v %q", err, p)
	}
	if err := json.Unmarshal([]byte(`"0000"`), &p); err != nil || string(p) != "0000" {
		t.Fatalf(`"0000": %v %q`, err, p)
	}
	for _, bad := range []string{`""`, `"０１２３"`, `"12 4"`, `true`, `{}`} {
		var q pinDigits
		if err := json.Unmarshal([]byte(bad), &q); !errors.Is(err, errPINFormat) || q != nil {
			t.Errorf("%s: err %v, pin %q; want errPINFormat and no PIN", bad, err, q)
		}
	}
}

// TestScreenView checks what the page receives: the snapshot, the time
// left, and the preview without its QR payloads.
func TestScreenView(t *testing.T) {
	cert := certificate.Certificate{ID: "ID1", Kind: certificate.Overseas, SHC: "shc:/5656", VDSNC: `{"data":{}}`,
		Holder: certificate.Holder{Name: "試験　花子", PassportNumber: "TK1234567"}}
	snap := flow.Snapshot{Session: "s1", State: flow.StatePreview, Seq: 7, Deadline: time.Now().Add(90 * time.Second),
		Preview: []certificate.Certificate{cert}, FeeYen: 240, Copies: 2}
	b, err := json.Marshal(screenView(snap))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["state"] != "preview" || got["feeYen"] != float64(240) || got["seq"] != float64(7) {
		t.Fatalf("view %s lost snapshot fields", b)
	}
	if ms, _ := got["remainingMs"].(float64); ms < 85000 || ms > 90000 {
		t.Fatalf("remainingMs %v, want about 90000", got["remainingMs"])
	}
	if strings.Contains(string(b), "shc:/") || strings.Contains(string(b), `\"data\"`) {
		t.Fatalf("view %s carries QR payloads the page does not show", b)
	}
	if !strings.Contains(string(b), "試験　花子") || !strings.Contains(string(b), "TK1234567") {
		t.Fatalf("view %s lacks what the resident must check", b)
	}
	if snap.Preview[0].SHC == "" {
		t.Fatal("screenView changed the kiosk's own snapshot")
	}

	idle, err := json.Marshal(screenView(flow.Snapshot{State: flow.StateIdle, Seq: 9}))
	if err != nil {
		t.Fatal(err)
	}
	if string(idle) != `{"state":"idle","seq":9}` {
		t.Fatalf("idle view %s, want only the state and sequence", idle)
	}
}

var pinLike = regexp.MustCompile(`"pin"\s*:\s*"([0-9]{4,})"`)

// FuzzDecodeScreenInput: any body either decodes to a well-formed input or
// is refused with a message that does not repeat a PIN it carried.
func FuzzDecodeScreenInput(f *testing.F) {
	for _, seed := range []string{
		`{"type":"pin","state":"pin","pin":"1234"}`,
		`{"type":"pin","state":"pin","pin":"12345678"}`,
		`{"type":"copies","state":"copies","copies":5}`,
		`{"type":"municipality","state":"municipality","municipality":"012041"}`,
		`{"type":"kind","state":"kind","kind":"domestic"}`,
		`{"type":"confirm","state":"preview","pin":"9999"}`,
		`{"type":"pin","state":"pin","pin":"99999","x":1}`,
		`{"type":"pin","state":"pin","pin":"1234"`,
		`null`, `[]`, `""`, `{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := string(body)
		in, state, err := decodeScreenInput(body)
		if err != nil {
			if in.PIN != nil {
				t.Fatal("refused input carries a PIN")
			}
			if m := pinLike.FindStringSubmatch(orig); m != nil && strings.Contains(err.Error(), m[1]) {
				t.Fatalf("error %q repeats the PIN %q", err, m[1])
			}
			return
		}
		if state == "" {
			t.Fatal("accepted an input without a state")
		}
		switch in.Type {
		case flow.InputPIN:
			if len(in.PIN) != 4 {
				t.Fatalf("accepted PIN %q", in.PIN)
			}
			for _, c := range in.PIN {
				if c < '0' || c > '9' {
					t.Fatalf("accepted PIN %q", in.PIN)
				}
			}
		case flow.InputCopies:
			if in.Copies < 1 || in.Copies > 99 {
				t.Fatalf("accepted copies %d", in.Copies)
			}
		case flow.InputKind:
			if !in.Kind.Valid() {
				t.Fatalf("accepted kind %q", in.Kind)
			}
		case flow.InputMunicipality:
			if len(in.Municipality) != 6 {
				t.Fatalf("accepted municipality %q", in.Municipality)
			}
		case flow.InputConfirm, flow.InputRetry, flow.InputCancel, flow.InputStop, flow.InputBack:
		default:
			t.Fatalf("accepted input type %q", in.Type)
		}
		if in.Type != flow.InputPIN && in.PIN != nil {
			t.Fatal("a PIN travels with another input")
		}
	})
}

// TestOffers: the page may send only what the screen on show waits for.
func TestOffers(t *testing.T) {
	all := []flow.InputType{flow.InputPIN, flow.InputMunicipality, flow.InputKind, flow.InputCopies, flow.InputConfirm,
		flow.InputRetry, flow.InputCancel, flow.InputStop, flow.InputBack}
	deadline := time.Now().Add(time.Minute)
	tests := []struct {
		snap flow.Snapshot
		want []flow.InputType
	}{
		{flow.Snapshot{State: flow.StateIdle}, nil},
		{flow.Snapshot{State: flow.StateCardCheck}, nil},
		{flow.Snapshot{State: flow.StatePIN, Deadline: deadline}, []flow.InputType{flow.InputPIN, flow.InputCancel}},
		{flow.Snapshot{State: flow.StateReading}, nil},
		{flow.Snapshot{State: flow.StateRemoveCard}, nil},
		{flow.Snapshot{State: flow.StateMunicipality}, []flow.InputType{flow.InputMunicipality, flow.InputCancel, flow.InputBack}},
		{flow.Snapshot{State: flow.StateKind}, []flow.InputType{flow.InputKind, flow.InputCancel, flow.InputBack}},
		{flow.Snapshot{State: flow.StateCopies}, []flow.InputType{flow.InputCopies, flow.InputCancel, flow.InputBack}},
		{flow.Snapshot{State: flow.StateRequesting}, nil},
		{flow.Snapshot{State: flow.StatePreview}, []flow.InputType{flow.InputConfirm, flow.InputCancel}},
		{flow.Snapshot{State: flow.StatePayment}, nil},
		{flow.Snapshot{State: flow.StatePrinting}, nil},
		{flow.Snapshot{State: flow.StatePrintFailed}, []flow.InputType{flow.InputRetry, flow.InputCancel}},
		{flow.Snapshot{State: flow.StateTakeCertificate}, []flow.InputType{flow.InputConfirm, flow.InputStop}},
		{flow.Snapshot{State: flow.StateError, Deadline: deadline}, []flow.InputType{flow.InputConfirm, flow.InputCancel}},
		{flow.Snapshot{State: flow.StateError, TakeCard: true}, nil},
	}
	for _, tc := range tests {
		name := string(tc.snap.State)
		if tc.snap.TakeCard {
			name += "/take-card"
		}
		t.Run(name, func(t *testing.T) {
			for _, in := range all {
				want := false
				for _, w := range tc.want {
					want = want || w == in
				}
				if got := offers(tc.snap, in); got != want {
					t.Errorf("offers(%s) = %v, want %v", in, got, want)
				}
			}
		})
	}
}

// TestPageWards lists the designated cities' wards for the page: each with
// its city's code (what the page sends), Hamamatsu's seven old wards until
// 2023 and marked abolished after, its three new ones only from 2024.
func TestPageWards(t *testing.T) {
	jst := time.FixedZone("JST", 9*60*60)
	for _, c := range []struct {
		day              string
		total, abolished int
		hamamatsuNow     []string
	}{
		{"2023-06-01", 175, 0, []string{"中区", "東区", "西区", "南区", "北区", "浜北区", "天竜区"}},
		{"2024-01-01", 178, 7, []string{"中央区", "浜名区", "天竜区"}},
	} {
		day, err := time.ParseInLocation("2006-01-02", c.day, jst)
		if err != nil {
			t.Fatal(err)
		}
		wards, err := pageWards(day)
		if err != nil {
			t.Fatal(err)
		}
		abolished := 0
		var hamamatsu []string
		for _, w := range wards {
			if w.City == "" || w.City == w.Code || w.Ja == "" || w.Kana == "" || !strings.HasSuffix(w.En, " Ward") {
				t.Errorf("%s: incomplete ward %+v", c.day, w)
			}
			if w.Until != "" {
				abolished++
			} else if w.City == "221309" {
				hamamatsu = append(hamamatsu, w.Ja)
			}
		}
		if len(wards) != c.total || abolished != c.abolished || strings.Join(hamamatsu, " ") != strings.Join(c.hamamatsuNow, " ") {
			t.Errorf("%s: %d wards, %d abolished, Hamamatsu's %v; want %d, %d, %v", c.day, len(wards), abolished, hamamatsu, c.total, c.abolished, c.hamamatsuNow)
		}
		b, _ := json.Marshal(wards[0])
		if string(b) != `{"code":"011011","city":"011002","ja":"中央区","kana":"チュウオウク","en":"Chuo Ward"}` {
			t.Errorf("first ward as JSON: %s", b)
		}
	}
}
