package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"

	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// The example session of docs/PROTOCOL.md §13. The frames printed by
//
//	go test -run TestTranscriptExample -v ./pkg/protocol/
//
// are the ones pasted (pretty-printed, long strings elided) into the doc.
const (
	transcriptRID    = "5f0c2a9e7b3d41c8a6e2f9d07b1c3e4a" // the domestic issue
	transcriptRIDErr = "c41d08e3a97f4b26905e1fd2b8a3c670" // the refused issue
)

// transcriptCard is a shortened, synthetic set of card files: the TLV
// headers of EF 0001–0004 with a few content bytes, no real card data.
func transcriptCard() CardFiles {
	return CardFiles{
		MyNumber:    []byte{0xD0, 0x0C, '0', '0', '0', '0'},
		FourItems:   []byte{0xFF, 0x20, 0x82, 0x01, 0x2C, 0xDF, 0x21, 0x08},
		Signature:   []byte{0xFF, 0x30, 0x82, 0x01, 0x4C, 0xDF, 0x31, 0x20},
		Certificate: []byte{0x7F, 0x21, 0x82, 0x02, 0x34, 0x5F, 0x4E, 0x82},
	}
}

// digestByHand recomputes the card digest from its definition (SHA-256 over
// the four files in EF order, each after its 4-byte big-endian length), so
// the test checks CardDigest rather than trusting it.
func digestByHand(c CardFiles) string {
	h := sha256.New()
	for _, f := range [][]byte{c.MyNumber, c.FourItems, c.Signature, c.Certificate} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestTranscriptExample builds the frames of a normal domestic issuance and
// of two error answers, and checks that every frame decodes (with the
// receiving side's size limit) to the same message and re-encodes to the
// same bytes, and that the responses are bound to their requests.
func TestTranscriptExample(t *testing.T) {
	card := transcriptCard()
	issue := Issue{RequestID: transcriptRID, Municipality: "012041", Kind: certificate.Domestic, Copies: 1, Card: card}
	resp := CertificateResponse{
		RequestID:    issue.RequestID,
		CardDigest:   CardDigest(card),
		Certificates: []certificate.Certificate{testCert()},
		Copies:       issue.Copies,
		FeeYen:       issue.Copies * 120,
	}
	replayed := resp
	replayed.Replayed = true

	// The frame a kiosk must never send: a PIN smuggled into an issue. The
	// center answers with the DecodeError's code and text, as conn.go does.
	smuggled := []byte(`{"v":1,"type":"issue","body":{"requestId":"` + transcriptRID + `","pin":"1234"}}`)
	_, derr := Decode(smuggled, MaxKioskFrame)
	var de *DecodeError
	if !errors.As(derr, &de) || de.Code != CodeBadMessage {
		t.Fatalf("smuggled PIN: Decode = %v, want %s", derr, CodeBadMessage)
	}

	steps := []struct {
		name  string
		dir   string // who sends it
		limit int    // the receiver's frame limit
		m     Message
	}{
		{"hello", "center → kiosk", MaxCenterFrame, Hello{
			ProtocolVersion: Version, KioskID: "K-0001", Time: "2026-11-23T10:00:00+09:00",
			Municipalities: []Municipality{{Code: "011002", NameJa: "札幌市", NameEn: "Sapporo City"}, {Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City"}},
			FeePerCopyYen:  120, Kinds: []string{"domestic", "overseas"}, MaxCopies: MaxCopies, HeartbeatSeconds: 15,
		}},
		{"status", "kiosk → center", MaxKioskFrame, Status{Reader: "ok", Printer: "ok", State: "idle"}},
		{"issue", "kiosk → center", MaxKioskFrame, issue},
		{"ping", "kiosk → center", MaxKioskFrame, Ping{Nonce: "1"}},
		{"pong", "center → kiosk", MaxCenterFrame, Pong{Nonce: "1"}},
		{"certificate", "center → kiosk", MaxCenterFrame, resp},
		{"outcome", "kiosk → center", MaxKioskFrame, Outcome{RequestID: resp.RequestID, Outcome: OutcomePrinted, Copies: resp.Copies}},
		{"ack", "center → kiosk", MaxCenterFrame, Ack{RequestID: resp.RequestID}},
		{"replayed-certificate", "center → kiosk", MaxCenterFrame, replayed},
		{"refused-issue", "kiosk → center", MaxKioskFrame, Issue{RequestID: transcriptRIDErr, Municipality: "011002", Kind: certificate.Domestic, Copies: 1, Card: card}},
		{"error-no-record", "center → kiosk", MaxCenterFrame, NewError(transcriptRIDErr, CodeNoRecord, "")},
		{"error-bad-frame", "center → kiosk", MaxCenterFrame, NewError("", de.Code, de.Error())},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			frame, err := Encode(st.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(frame, st.limit)
			if err != nil {
				t.Fatalf("decode %s: %v", frame, err)
			}
			if !reflect.DeepEqual(got, st.m) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, st.m)
			}
			again, err := Encode(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, frame) {
				t.Fatalf("re-encoding differs:\n%s\n%s", again, frame)
			}
			t.Logf("%s (%d bytes)\n%s", st.dir, len(frame), frame)
		})
	}

	// The binding the kiosk checks before printing (kiosk/internal/flow).
	if resp.CardDigest != digestByHand(card) {
		t.Errorf("cardDigest %s, want %s", resp.CardDigest, digestByHand(card))
	}
	if resp.RequestID != issue.RequestID || resp.Copies != issue.Copies || resp.Certificates[0].Kind != issue.Kind || resp.Certificates[0].Issuer.MunicipalityCode != issue.Municipality {
		t.Error("the certificate response does not answer the issue")
	}
	if e := NewError(transcriptRIDErr, CodeNoRecord, ""); e.Retryable || e.Message != CodeNoRecord.Text() {
		t.Errorf("no_record error: %+v", e)
	}
}
