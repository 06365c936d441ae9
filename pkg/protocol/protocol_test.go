package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/assets/municipalities"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

const rid = "0123456789abcdef0123456789abcdef"

func testCert() certificate.Certificate {
	return certificate.Certificate{
		ID: "7K3M9Q2X4H8A", Kind: certificate.Domestic, IssueDate: "2026-11-23",
		Issuer: certificate.Issuer{MunicipalityCode: "012041", NameJa: "旭川市", NameEn: "Asahikawa City", AuthorityJa: "旭川市長", AuthorityEn: "Mayor of Asahikawa City"},
		Holder: certificate.Holder{Name: "試験　花子", FamilyName: "試験", GivenName: "花子", BirthDate: "1985-04-02", Sex: "2"},
		Doses:  []certificate.Dose{{Number: 1, Date: "2021-06-14", Product: "comirnaty", ProductName: "Comirnaty", ManufacturerJa: "ファイザー", ManufacturerEn: "Pfizer", VaccineTypeJa: "mRNAワクチン", VaccineTypeEn: "mRNA vaccine", Lot: "FA5765", Country: "JPN"}},
		SHC:    "shc:/5676290952432060346029243740446031222959532654603460292540772804336028702864716745222809286133314564376531415906402203064504590856435503414245413640370636654171372412363803043756220467374075323239254334433260573601064529295312707424284350386122127671665437102572713671033607",
	}
}

func card() CardFiles {
	return CardFiles{MyNumber: []byte{0xD0, 0x0C, '1'}, FourItems: []byte{0xFF, 0x20, 0}, Signature: []byte{0xFF, 0x30, 0}, Certificate: []byte{0x7F, 0x21, 0}}
}

func TestRoundTrip(t *testing.T) {
	msgs := []Message{
		Hello{ProtocolVersion: 1, KioskID: "K-0001", Time: "2026-11-23T10:00:00+09:00", Municipalities: []Municipality{{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City"}}, FeePerCopyYen: 120, Kinds: []string{"domestic", "overseas"}, MaxCopies: 5, HeartbeatSeconds: 15},
		Hello{ProtocolVersion: 1, KioskID: "K-0001", Time: "2026-11-23T10:00:00+09:00",
			Municipalities:   []Municipality{{Code: "011002", NameJa: "札幌市", NameEn: "Sapporo City", Kana: "サッポロシ", Kind: KindDesignatedCity}},
			NotParticipating: []Municipality{{Code: "112453", NameJa: "ふじみ野市", NameEn: "Fujimino City", Kana: "フジミノシ", Kind: KindCity}},
			FeePerCopyYen:    120, Kinds: []string{"domestic"}, MaxCopies: 5, HeartbeatSeconds: 15, Features: []string{FeatureCheck}},
		Check{RequestID: rid, Municipality: "012041", Card: card()},
		Checked{RequestID: rid, CardDigest: strings.Repeat("ab", 32), Kinds: []string{"domestic"}},
		Issue{RequestID: rid, Municipality: "012041", Kind: certificate.Overseas, Copies: 2, Card: card()},
		CertificateResponse{RequestID: rid, CardDigest: strings.Repeat("ab", 32), Certificates: []certificate.Certificate{testCert()}, Copies: 1, FeeYen: 120},
		Outcome{RequestID: rid, Outcome: OutcomePrinted, Copies: 1},
		Outcome{RequestID: rid, Outcome: OutcomeRefused, Reason: CodeHolderMismatch},
		Ack{RequestID: rid},
		Status{Reader: "ok", Printer: "paper-out", State: "idle"},
		Ping{Nonce: "1"}, Pong{Nonce: "1"},
		NewError(rid, CodeNoRecord, "region 012041"),
	}
	for _, m := range msgs {
		t.Run(m.Type(), func(t *testing.T) {
			b, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b, MaxCenterFrame)
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
			}
		})
	}
}

func hello(munis string) string {
	return `{"v":1,"type":"hello","body":{"protocolVersion":1,"kioskId":"K","time":"t","municipalities":[` + munis +
		`],"feePerCopyYen":120,"kinds":["domestic"],"maxCopies":5,"heartbeatSeconds":15}}`
}

// TestNationalHello: a Hello listing every municipality of the shipped
// national list fits the center's frame limit with room to spare, and more
// than MaxMunicipalities are refused.
func TestNationalHello(t *testing.T) {
	l, err := municipalities.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	h := Hello{ProtocolVersion: 1, KioskID: "K-0001", Time: "2026-11-23T10:00:00+09:00", FeePerCopyYen: 120, Kinds: []string{"domestic"}, MaxCopies: 5, HeartbeatSeconds: 15}
	for _, b := range l.Municipalities {
		m := Municipality{Code: b.Code, NameJa: b.Name, NameEn: b.EnglishName(), Kana: b.NameKana, Kind: string(b.Kind)}
		if municipalities.NoAdministration(b.Code) {
			h.NotParticipating = append(h.NotParticipating, m)
		} else {
			h.Municipalities = append(h.Municipalities, m)
		}
	}
	frame, err := Encode(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(frame) > MaxCenterFrame/4 {
		t.Errorf("the national hello is %d bytes, over a quarter of MaxCenterFrame (%d)", len(frame), MaxCenterFrame)
	}
	t.Logf("national hello: %d municipalities, %d bytes", len(h.Municipalities)+len(h.NotParticipating), len(frame))
	if _, err := Decode(frame, MaxCenterFrame); err != nil {
		t.Fatal(err)
	}
	// The bound the size limits promise (docs/PROTOCOL.md §4): the most
	// municipalities, every text field at its limit, a counter on each.
	worst := Hello{ProtocolVersion: 1, KioskID: "K-0001", Time: "2026-11-23T10:00:00+09:00", MaxCopies: 5, HeartbeatSeconds: 15}
	for i := range MaxMunicipalities {
		m := h.Municipalities[i%len(h.Municipalities)]
		m.NameJa, m.NameEn, m.Kana = strings.Repeat("a", maxNameBytes), strings.Repeat("b", maxNameBytes), strings.Repeat("ア", maxNameBytes/3)
		m.CounterJa, m.CounterEn = strings.Repeat("c", MaxCounterBytes), strings.Repeat("d", MaxCounterBytes)
		m.Kind = KindDesignatedCity
		worst.Municipalities = append(worst.Municipalities, m)
	}
	seen := map[string]bool{}
	for i := range worst.Municipalities {
		// Codes must be distinct: take any valid ones in the 6-digit space.
		for c := 10006 + 10*i; ; c++ {
			code := fmt.Sprintf("%06d", c)
			if lgcode.Validate(code) == nil && !seen[code] {
				seen[code] = true
				worst.Municipalities[i].Code = code
				break
			}
		}
	}
	wf, err := Encode(worst)
	if err != nil {
		t.Fatal(err)
	}
	if len(wf) > MaxCenterFrame {
		t.Errorf("the largest hello the limits allow is %d bytes, over MaxCenterFrame (%d)", len(wf), MaxCenterFrame)
	}
	t.Logf("largest hello within the limits: %d bytes", len(wf))
	for len(h.NotParticipating)+len(h.Municipalities) <= MaxMunicipalities {
		h.NotParticipating = append(h.NotParticipating, h.Municipalities...)
	}
	if _, err := Encode(h); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("a hello of more than %d municipalities encoded: %v", MaxMunicipalities, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	issue := func(body string) string { return `{"v":1,"type":"issue","body":` + body + `}` }
	good := `{"requestId":"` + rid + `","municipality":"012041","kind":"domestic","copies":1,"card":{"myNumber":"0Aw=","fourItems":"/yA=","signature":"/zA=","certificate":"fyE="}}`
	tests := []struct {
		name  string
		frame string
		code  Code
	}{
		{"not json", `{`, CodeBadMessage},
		{"not utf-8", "\xff", CodeBadMessage},
		{"wrong version", `{"v":2,"type":"ping","body":{"nonce":"a"}}`, CodeUnsupportedVersion},
		{"unknown type", `{"v":1,"type":"format-disk","body":{}}`, CodeUnexpectedMessage},
		{"unknown envelope field", `{"v":1,"type":"ping","body":{"nonce":"a"},"x":1}`, CodeBadMessage},
		{"unknown body field", `{"v":1,"type":"ping","body":{"nonce":"a","pin":"1234"}}`, CodeBadMessage},
		{"missing body", `{"v":1,"type":"ping"}`, CodeBadMessage},
		{"trailing data", `{"v":1,"type":"ping","body":{"nonce":"a"}} {}`, CodeBadMessage},
		{"good issue", issue(good), ""},
		{"short request id", issue(strings.Replace(good, rid, "abc", 1)), CodeBadMessage},
		{"upper-case request id", issue(strings.Replace(good, rid, strings.ToUpper(rid), 1)), CodeBadMessage},
		{"bad municipality check digit", issue(strings.Replace(good, "012041", "012040", 1)), CodeBadMessage},
		{"bad kind", issue(strings.Replace(good, "domestic", "galactic", 1)), CodeBadMessage},
		{"zero copies", issue(strings.Replace(good, `"copies":1`, `"copies":0`, 1)), CodeBadMessage},
		{"too many copies", issue(strings.Replace(good, `"copies":1`, `"copies":6`, 1)), CodeBadMessage},
		{"empty card file", issue(strings.Replace(good, `"myNumber":"0Aw="`, `"myNumber":""`, 1)), CodeBadMessage},
		{"bad base64", issue(strings.Replace(good, `"myNumber":"0Aw="`, `"myNumber":"***"`, 1)), CodeBadMessage},
		{"pin smuggled in", issue(strings.Replace(good, `"copies":1`, `"copies":1,"pin":"1234"`, 1)), CodeBadMessage},
		{"printed without copies", `{"v":1,"type":"outcome","body":{"requestId":"` + rid + `","outcome":"printed","copies":0}}`, CodeBadMessage},
		{"unknown outcome", `{"v":1,"type":"outcome","body":{"requestId":"` + rid + `","outcome":"burnt","copies":0}}`, CodeBadMessage},
		{"error without code", `{"v":1,"type":"error","body":{"code":""}}`, CodeBadMessage},
		{"null body", `{"v":1,"type":"error","body":null}`, CodeBadMessage},
		{"good check", `{"v":1,"type":"check","body":{"requestId":"` + rid + `","municipality":"012041","card":{"myNumber":"0Aw=","fourItems":"/yA=","signature":"/zA=","certificate":"fyE="}}}`, ""},
		{"check without card", `{"v":1,"type":"check","body":{"requestId":"` + rid + `","municipality":"012041","card":{}}}`, CodeBadMessage},
		{"checked without kinds", `{"v":1,"type":"checked","body":{"requestId":"` + rid + `","cardDigest":"` + strings.Repeat("ab", 32) + `","kinds":[]}}`, CodeBadMessage},
		{"hello kana in hiragana", hello(`{"code":"011002","nameJa":"札幌市","nameEn":"Sapporo City","kana":"さっぽろし"}`), CodeBadMessage},
		{"hello unknown kind", hello(`{"code":"011002","nameJa":"札幌市","nameEn":"Sapporo City","kind":"metropolis"}`), CodeBadMessage},
		{"hello listed twice", hello(`{"code":"011002","nameJa":"札幌市","nameEn":"Sapporo City"},{"code":"011002","nameJa":"札幌市","nameEn":"Sapporo City"}`), CodeBadMessage},
		{"hello long name", hello(`{"code":"011002","nameJa":"` + strings.Repeat("札", 70) + `","nameEn":"Sapporo City"}`), CodeBadMessage},
		{"hello counter in Japanese only", hello(`{"code":"011002","nameJa":"札幌市","nameEn":"Sapporo City","counterJa":"市民課"}`), CodeBadMessage},
		{"hello long counter", hello(`{"code":"011002","nameJa":"札幌市","nameEn":"Sapporo City","counterJa":"` + strings.Repeat("窓", 41) + `","counterEn":"Counter"}`), CodeBadMessage},
		{"hello with counter", hello(`{"code":"011002","nameJa":"札幌市","nameEn":"Sapporo City","counterJa":"区役所 戸籍住民課","counterEn":"Ward office, Family Register Division"}`), ""},
		{"hello good", hello(`{"code":"011002","nameJa":"札幌市","nameEn":"Sapporo City","kana":"サッポロシ","kind":"designated_city"}`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.frame), MaxKioskFrame)
			if tt.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Code != tt.code {
				t.Fatalf("Decode = %v, want code %s", err, tt.code)
			}
		})
	}
	big := `{"v":1,"type":"ping","body":{"nonce":"` + strings.Repeat("a", MaxKioskFrame) + `"}}`
	var de *DecodeError
	if _, err := Decode([]byte(big), MaxKioskFrame); !errors.As(err, &de) || de.Code != CodeMessageTooLarge {
		t.Fatalf("oversized frame: %v", err)
	}
}

func TestEveryCodeHasBothLanguages(t *testing.T) {
	for _, c := range Codes() {
		txt := c.Text()
		if txt.Ja == "" || txt.En == "" {
			t.Errorf("%s lacks a message", c)
		}
	}
	if CodeNoRecord.Retryable() || !CodeUnavailable.Retryable() {
		t.Error("retryable flags")
	}
	if Code("from-the-future").Text() != CodeInternal.Text() {
		t.Error("unknown codes should read as internal errors")
	}
	err := error(NewError(rid, CodeNoRecord, ""))
	if !errors.Is(err, NewError("", CodeNoRecord, "")) || errors.Is(err, NewError("", CodeHolderMismatch, "")) {
		t.Error("errors.Is on codes")
	}
}

func TestRequestIDs(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewRequestID()
		if err := validRequestID(id); err != nil {
			t.Fatal(err)
		}
		if seen[id] {
			t.Fatal("request ID collision")
		}
		seen[id] = true
	}
}

// FuzzDecode: never panic; whatever decodes re-encodes to a frame that
// decodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, m := range []Message{
		Issue{RequestID: rid, Municipality: "012041", Kind: certificate.Domestic, Copies: 1, Card: card()},
		Outcome{RequestID: rid, Outcome: OutcomeFailed, Reason: CodePrinterPaperOut},
		Ping{Nonce: "x"}, NewError("", CodeBadMessage, ""),
		Status{Reader: "ok", Printer: "paper-low", State: "idle", AgentVersion: "v1.4.2+linux", LastError: "printer_paper_out"},
		Status{Reader: "no-reader", Printer: "jammed", State: "print-failed"},
		Check{RequestID: rid, Municipality: "012041", Card: card()},
		Checked{RequestID: rid, CardDigest: strings.Repeat("ab", 32), Kinds: []string{"domestic", "overseas"}},
		Hello{ProtocolVersion: 1, KioskID: "K-0001", Time: "2026-11-23T10:00:00+09:00",
			Municipalities:   []Municipality{{Code: "011002", NameJa: "札幌市", NameEn: "Sapporo City", Kana: "サッポロシ", Kind: KindDesignatedCity}},
			NotParticipating: []Municipality{{Code: "112453", NameJa: "ふじみ野市", NameEn: "Fujimino City", Kana: "フジミノシ"}},
			FeePerCopyYen:    120, Kinds: []string{"domestic"}, MaxCopies: 5, HeartbeatSeconds: 15, Features: []string{FeatureCheck}},
		CertificateResponse{RequestID: rid, CardDigest: strings.Repeat("ab", 32), Certificates: []certificate.Certificate{testCert()}, Copies: 1, FeeYen: 120},
		Renew{RequestID: rid, CSR: []byte{0x30, 0x82, 0x01, 0x00}},
		Renewed{RequestID: rid, Chain: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
	} {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"type":"hello","body":{}}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame, MaxCenterFrame)
		if err != nil {
			return
		}
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		m2, err := Decode(b, MaxCenterFrame)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoded frame differs: %v", err)
		}
	})
}

// TestStatusStrict: a kiosk's health report carries codes from closed
// alphabets only, so nothing personal can ride on it.
func TestStatusStrict(t *testing.T) {
	ok := Status{Reader: "ok", Printer: "ok", State: "idle", AgentVersion: "1.2.3", LastError: "printer_jam"}
	tests := []struct {
		name   string
		change func(*Status)
		valid  bool
	}{
		{"all fields", func(*Status) {}, true},
		{"old kiosk without version and error", func(s *Status) { s.AgentVersion, s.LastError = "", "" }, true},
		{"paper low", func(s *Status) { s.Printer = "paper-low" }, true},
		{"unknown printer state", func(s *Status) { s.Printer = "on-fire" }, false},
		{"empty reader", func(s *Status) { s.Reader = "" }, false},
		{"unknown reader state", func(s *Status) { s.Reader = "maybe" }, false},
		{"state with a name", func(s *Status) { s.State = "山田" }, false},
		{"state too long", func(s *Status) { s.State = strings.Repeat("a", 33) }, false},
		{"version with a space", func(s *Status) { s.AgentVersion = "1.2 beta" }, false},
		{"version too long", func(s *Status) { s.AgentVersion = strings.Repeat("1", 65) }, false},
		{"error text instead of a code", func(s *Status) { s.LastError = "Paper jam in tray 2" }, false},
		{"error with a number", func(s *Status) { s.LastError = "123456789012" }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.change(&s)
			b, err := json.Marshal(envelope{V: Version, Type: TypeStatus, Body: mustJSON(t, s)})
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(b, MaxKioskFrame)
			if (err == nil) != tc.valid {
				t.Errorf("Decode(%+v) = %v, want valid %v", s, err, tc.valid)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
