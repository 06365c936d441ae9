package virtualcard

import (
	"encoding/hex"
	"testing"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

// testCard uses a fixed, fake image: these tests are about status words,
// not signatures.
func testCard(t testing.TB, ext bool) *Card {
	t.Helper()
	raw := carddata.Raw{
		MyNumber:    carddata.EncodeMyNumber("123456789018"),
		FourItems:   []byte{0xFF, 0x20, 0x03, 0xDF, 0x21, 0x00},
		Signature:   make([]byte, 336),
		Certificate: make([]byte, 568),
	}
	c, err := New(raw, "1234", Options{ExtendedLength: ext})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func send(t *testing.T, c *Card, apdu string) string {
	t.Helper()
	b, _ := hex.DecodeString(apdu)
	out, err := c.Process(b)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(out)
}

// TestStatusWords walks one card through a sequence and checks each answer
// against ISO/IEC 7816-4 and the input-assist AP's documented behaviour.
func TestStatusWords(t *testing.T) {
	c := testCard(t, false)
	steps := []struct{ apdu, want, why string }{
		{"00a4020c020001", "6a82", "EF select before the AP is selected"},
		{"00200080", "6986", "VERIFY with no current EF"},
		{"00a4040c0ad3921000310001010409", "6a82", "unknown AID"},
		{"00a4040c0ad3921000310001010408", "9000", "select input-assist AP"},
		{"00a4050c020001", "6a86", "unsupported selection P1"},
		{"00a4020c0200", "6700", "EF id of wrong length"},
		{"00a4020c02abcd", "6a82", "unknown EF"},
		{"00b0000010", "6986", "READ BINARY with no current EF"},
		{"00a4020c020001", "9000", "select My Number EF"},
		{"00b0000010", "6982", "protected EF before VERIFY"},
		{"00a4020c020011", "9000", "select PIN EF"},
		{"00200080", "63c3", "PIN status: 3 tries"},
		{"002000800431313131", "63c2", "wrong PIN"},
		{"00200080", "63c2", "status does not spend a try"},
		{"0020008003313131", "6700", "3-digit PIN refused without spending a try"},
		{"00200080", "63c2", "still 2 tries"},
		{"002000800431323334", "9000", "right PIN"},
		{"00200080", "9000", "status after VERIFY"},
		{"00200081", "6a86", "wrong P2"},
		{"00a4020c020001", "9000", "select My Number EF"},
		{"00b0000010", "d00c3132333435363738393031389000" + "", "read 16 bytes"},
		{"00b0000000", "d00c313233343536373839303138ffff6282", "read 256 bytes: end of file"},
		{"00b0001000", "6b00", "offset beyond the file"},
		{"00b00000000000", "6700", "extended APDU on a short card"},
		{"80b0000010", "6e00", "proprietary class"},
		{"00ca000000", "6d00", "unsupported instruction"},
		{"00b0", "6700", "truncated APDU"},
	}
	for _, s := range steps {
		want := s.want
		if s.why == "read 16 bytes" {
			want = "d00c313233343536373839303138ffff9000"
		}
		if got := send(t, c, s.apdu); got != want {
			t.Fatalf("%s: %s → %s, want %s", s.why, s.apdu, got, want)
		}
	}
}

func TestBlockedPIN(t *testing.T) {
	c := testCard(t, true)
	send(t, c, "00a4040c0ad3921000310001010408")
	send(t, c, "00a4020c020011")
	for _, want := range []string{"63c2", "63c1", "63c0", "6983"} {
		if got := send(t, c, "002000800430303030"); got != want {
			t.Fatalf("wrong PIN → %s, want %s", got, want)
		}
	}
	if got := send(t, c, "002000800431323334"); got != "6983" {
		t.Fatalf("right PIN on blocked card → %s", got)
	}
	if got := send(t, c, "00200080"); got != "6983" {
		t.Fatalf("status of blocked PIN → %s", got)
	}
	c.Reset()
	if c.TriesLeft() != 0 {
		t.Fatal("reset restored the counter")
	}
}

func TestResetDropsVerification(t *testing.T) {
	c := testCard(t, true)
	send(t, c, "00a4040c0ad3921000310001010408")
	send(t, c, "00a4020c020011")
	send(t, c, "002000800431323334")
	c.Reset()
	send(t, c, "00a4040c0ad3921000310001010408")
	send(t, c, "00a4020c020001")
	if got := send(t, c, "00b00000000000"); got != "6982" {
		t.Fatalf("read after reset → %s", got)
	}
}

func TestRemoveAfter(t *testing.T) {
	c := testCard(t, true)
	c.SetFaults(Faults{RemoveAfter: 2})
	for i := 0; i < 2; i++ {
		if _, err := c.Process([]byte{0, 0xA4, 4, 0x0C}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Process([]byte{0, 0xA4, 4, 0x0C}); err != ErrRemoved {
		t.Fatalf("third APDU: %v", err)
	}
	if !c.Removed() {
		t.Fatal("not removed")
	}
}

func TestATR(t *testing.T) {
	for _, c := range []*Card{testCard(t, true), testCard(t, false)} {
		atr := c.ATR()
		if hex.EncodeToString(atr[:4]) != "3b888001" {
			t.Fatalf("ATR %X lacks the My Number prefix", atr)
		}
		x := byte(0)
		for _, b := range atr[1:] {
			x ^= b
		}
		if x != 0 {
			t.Fatalf("ATR %X has a bad TCK", atr)
		}
	}
}

// FuzzProcess sends arbitrary APDUs: the card must always answer with a
// status word, never panic, and never spend a PIN try on anything but a
// 4-byte VERIFY.
func FuzzProcess(f *testing.F) {
	for _, s := range []string{"00a4040c0ad3921000310001010408", "00a4020c020011", "002000800430303030", "00b0000000", "00b00000000000", "00200080"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, apdu []byte) {
		c := testCard(t, true)
		// Put the card into the PIN EF so VERIFY paths are reachable.
		c.Process([]byte{0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08})
		c.Process([]byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x11})
		out, err := c.Process(apdu)
		if err != nil {
			t.Fatal(err)
		}
		r, err := cardreader.ParseResponse(out)
		if err != nil {
			t.Fatalf("answer without status word: %x", out)
		}
		cmd, perr := cardreader.ParseCommand(apdu)
		spent := c.TriesLeft() != cardreader.MaxPINTries
		if spent && (perr != nil || cmd.INS != 0x20 || len(cmd.Data) != 4) {
			t.Fatalf("%x spent a PIN try (answer %04X)", apdu, r.SW)
		}
	})
}
