package cardreader_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

// rewriting is a transport in front of a virtual card that changes its
// answers the way other real cards and readers answer, to check that the
// session copes with what it will meet in the field.
type rewriting struct {
	cardreader.Transport
	// rewrite sees each command and the virtual card's answer and returns
	// the answer to give instead.
	rewrite func(cmd cardreader.Command, resp cardreader.Response) cardreader.Response
	sent    []cardreader.Command
}

func (r *rewriting) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	cmd, err := cardreader.ParseCommand(apdu)
	if err != nil {
		return nil, err
	}
	cmd.Data = bytes.Clone(cmd.Data)
	r.sent = append(r.sent, cmd)
	out, err := r.Transport.Transmit(ctx, apdu)
	if err != nil {
		return nil, err
	}
	resp, err := cardreader.ParseResponse(out)
	if err != nil {
		return nil, err
	}
	return r.rewrite(cmd, resp).Bytes(), nil
}

func (r *rewriting) verifiesWithData() int {
	n := 0
	for _, c := range r.sent {
		if c.INS == 0x20 && len(c.Data) > 0 {
			n++
		}
	}
	return n
}

// TestPINBlocked6984 checks that 69 84 (reference data not usable), which
// jpki/myna treats as a blocked PIN, means a blocked PIN here too: from the
// status query and from VERIFY, with the same resident message and without
// a PIN sent once the block is known.
func TestPINBlocked6984(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		rewrite func(cardreader.Command, cardreader.Response) cardreader.Response
		wrong   int // wrong PINs to enter before the status check
	}{
		{"status answers 69 84", func(c cardreader.Command, r cardreader.Response) cardreader.Response {
			if c.INS == 0x20 && len(c.Data) == 0 && (r.SW == 0x63C0 || r.SW == cardreader.SWPINBlocked) {
				r.SW = 0x6984 // reference data not usable
			}
			return r
		}, 3},
		{"last wrong VERIFY answers 69 84", func(c cardreader.Command, r cardreader.Response) cardreader.Response {
			if c.INS == 0x20 && len(c.Data) > 0 && (r.SW == 0x63C0 || r.SW == cardreader.SWPINBlocked) {
				r.SW = 0x6984 // reference data not usable
			}
			return r
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			card, res := newCard(t, "taro", false)
			wrong := "0000"
			if wrong == res.PIN {
				wrong = "9999"
			}
			tr := &rewriting{Transport: connect(t, card, false), rewrite: tt.rewrite}
			s, err := cardreader.Open(ctx, tr)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wrong == 0 {
				// Spend the tries through the session: the last answer is 69 84.
				var last error
				for i := 0; i < cardreader.MaxPINTries; i++ {
					last = s.VerifyPIN(ctx, []byte(wrong))
				}
				if !errors.Is(last, cardreader.ErrPINBlocked) {
					t.Fatalf("third wrong PIN answered 69 84: %v, want ErrPINBlocked", last)
				}
			} else {
				for i := 0; i < tt.wrong; i++ {
					s.VerifyPIN(ctx, []byte(wrong))
				}
				tr.Close()
				tr = &rewriting{Transport: connect(t, card, false), rewrite: tt.rewrite}
				if s, err = cardreader.Open(ctx, tr); err != nil {
					t.Fatal(err)
				}
				if _, err := s.PINTriesLeft(ctx); !errors.Is(err, cardreader.ErrPINBlocked) {
					t.Fatalf("PIN status 69 84: %v, want ErrPINBlocked", err)
				}
			}
			sent := tr.verifiesWithData()
			if err := s.VerifyPIN(ctx, []byte(res.PIN)); !errors.Is(err, cardreader.ErrPINBlocked) {
				t.Fatalf("VERIFY after the block: %v, want ErrPINBlocked", err)
			}
			if tr.verifiesWithData() != sent {
				t.Fatal("a PIN was sent to a card that had said the PIN is blocked")
			}
		})
	}
}

// TestStrictCardReadLength reads from a card that refuses a READ BINARY
// whose Le runs past the end of the file with 67 00 (wrong length) instead
// of answering the bytes it has with 62 82. Such cards are read the way
// jpki/myna reads every card: the TLV header first (7 bytes), then exactly
// the bytes it announces.
func TestStrictCardReadLength(t *testing.T) {
	ctx := context.Background()
	for _, id := range []string{"hanako", "takasaki"} { // takasaki's four items exceed 256 bytes
		t.Run(id, func(t *testing.T) {
			card, res := newCard(t, id, false)
			strict := func(c cardreader.Command, r cardreader.Response) cardreader.Response {
				if c.INS == 0xB0 && r.SW == cardreader.SWEndOfFile {
					return cardreader.Response{SW: cardreader.SWWrongLength}
				}
				return r
			}
			tr := &rewriting{Transport: connect(t, card, false), rewrite: strict}
			_, raw, err := fullRead(ctx, tr, res.PIN)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := verifier.Verify(raw); err != nil {
				t.Fatalf("data read from a strict card does not verify: %v", err)
			}
			// The same bytes as a lenient card gives.
			_, want, err := fullRead(ctx, connect(t, card, false), res.PIN)
			if err != nil {
				t.Fatal(err)
			}
			for name, pair := range map[string][2][]byte{"my number": {raw.MyNumber, want.MyNumber}, "four items": {raw.FourItems, want.FourItems},
				"signature": {raw.Signature, want.Signature}, "certificate": {raw.Certificate, want.Certificate}} {
				if !bytes.Equal(pair[0], pair[1]) {
					t.Errorf("%s differs between a strict and a lenient card", name)
				}
			}
		})
	}
}

// TestReadUntilEndOfFile covers the two ways a real card says a read went
// past the end: 62 82 with the bytes it has, and 6B 00 (offset outside the
// file) for the next read. ReadEF must stop at either without an error and
// return the file's TLV with the padding after it dropped.
func TestReadUntilEndOfFile(t *testing.T) {
	ctx := context.Background()
	card, res := newCard(t, "hanako", false)
	tr := connect(t, card, false)
	s, err := cardreader.Open(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.VerifyPIN(ctx, []byte(res.PIN)); err != nil {
		t.Fatal(err)
	}
	b, err := s.ReadEF(ctx, carddata.EFMyNumber)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 14 || b[0] != 0xD0 || b[1] != 12 {
		t.Fatalf("EF 0001 read as % X, want the 14-byte TLV D0 0C …", b)
	}
	info, err := s.ReadEF(ctx, carddata.EFAPInfo)
	if err != nil {
		t.Fatal(err)
	}
	if len(info) < 2 || info[0] != 0xFF || info[1] != 0x40 {
		t.Fatalf("EF 0005 read as % X", info)
	}
}
