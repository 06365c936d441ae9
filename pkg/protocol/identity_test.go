package protocol

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var testCSR = []byte{0x30, 0x81, 0x02, 0x01, 0x00}

func TestRenewRoundTrip(t *testing.T) {
	for _, m := range []Message{
		Renew{RequestID: strings.Repeat("0a", 16), CSR: testCSR},
		Renewed{RequestID: strings.Repeat("0a", 16), Chain: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"},
	} {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b, MaxKioskFrame)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %s: %+v, want %+v", m.Type(), got, m)
		}
	}
}

func TestRenewRejects(t *testing.T) {
	rid := strings.Repeat("0a", 16)
	tests := []struct {
		name string
		m    Message
	}{
		{"bad request ID", Renew{RequestID: "x", CSR: testCSR}},
		{"empty CSR", Renew{RequestID: rid}},
		{"CSR not DER", Renew{RequestID: rid, CSR: []byte("-----BEGIN")}},
		{"CSR too large", Renew{RequestID: rid, CSR: append([]byte{0x30}, make([]byte, MaxCSR)...)}},
		{"empty chain", Renewed{RequestID: rid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Encode(tt.m); err == nil {
				t.Fatal("encoded an invalid message")
			}
		})
	}
	frame := `{"v":1,"type":"renew","body":{"requestId":"` + rid + `","csr":"MIECAQA=","extra":1}}`
	if _, err := Decode([]byte(frame), MaxKioskFrame); err == nil {
		t.Fatal("decoded a renew with an unknown field")
	}
}

func TestDecodeEnrollRequest(t *testing.T) {
	good, _ := json.Marshal(EnrollRequest{KioskID: "K-0001", Code: "ABCD-EFGH-JKMN-PQRS", CSR: testCSR})
	if r, err := DecodeEnrollRequest(good); err != nil || r.KioskID != "K-0001" || string(r.CSR) != string(testCSR) {
		t.Fatalf("DecodeEnrollRequest(good) = %+v, %v", r, err)
	}
	tests := []struct{ name, body string }{
		{"unknown field", `{"kioskId":"K-1","code":"A","csr":"MIECAQA=","key":"secret"}`},
		{"trailing data", `{"kioskId":"K-1","code":"A","csr":"MIECAQA="} {}`},
		{"bad kiosk ID", `{"kioskId":"K 1","code":"A","csr":"MIECAQA="}`},
		{"no code", `{"kioskId":"K-1","code":"","csr":"MIECAQA="}`},
		{"long code", `{"kioskId":"K-1","code":"` + strings.Repeat("A", MaxEnrollmentCode+1) + `","csr":"MIECAQA="}`},
		{"no CSR", `{"kioskId":"K-1","code":"A"}`},
		{"CSR not base64", `{"kioskId":"K-1","code":"A","csr":"!!"}`},
		{"not an object", `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeEnrollRequest([]byte(tt.body)); err == nil || !strings.HasPrefix(err.Error(), "protocol: ") {
				t.Fatalf("DecodeEnrollRequest(%s) = %v, want a protocol error", tt.body, err)
			}
		})
	}
}

func FuzzDecodeEnrollRequest(f *testing.F) {
	good, _ := json.Marshal(EnrollRequest{KioskID: "K-0001", Code: "ABCD-EFGH-JKMN-PQRS", CSR: testCSR})
	f.Add(good)
	f.Add([]byte(`{"kioskId":"K-1","code":"A","csr":"MIECAQA=","x":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeEnrollRequest(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := DecodeEnrollRequest(again)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoded request differs: %v", err)
		}
	})
}

func FuzzDecodeEnrollResponse(f *testing.F) {
	good, _ := json.Marshal(EnrollResponse{Chain: "-----BEGIN CERTIFICATE-----\n", CenterCA: "-----BEGIN CERTIFICATE-----\n"})
	f.Add(good)
	f.Add([]byte(`{"chain":"","centerCa":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeEnrollResponse(b)
		if err != nil {
			return
		}
		if r.Chain == "" || r.CenterCA == "" {
			t.Fatal("accepted an empty chain")
		}
	})
}
