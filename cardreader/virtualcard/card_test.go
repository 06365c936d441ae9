package virtualcard

import (
	"crypto/x509"
	"encoding/hex"
	"strings"
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
		{"00b0000011", "d00c313233343536373839303138ffffff9000", "read 17 bytes, as jpki/myna does: the whole file"},
		{"00b0000000", "d00c313233343536373839303138ffffff6282", "read 256 bytes: end of file"},
		{"00b0001100", "6b00", "offset beyond the file"},
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
	// A blocked PIN answers VERIFY with 69 84 and its status with 63 C0,
	// as jpki/myna expects of real cards.
	for _, want := range []string{"63c2", "63c1", "63c0", "6984"} {
		if got := send(t, c, "002000800430303030"); got != want {
			t.Fatalf("wrong PIN → %s, want %s", got, want)
		}
	}
	if got := send(t, c, "002000800431323334"); got != "6984" {
		t.Fatalf("right PIN on blocked card → %s", got)
	}
	if got := send(t, c, "00200080"); got != "63c0" {
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

// TestSelectDropsVerification: selecting the application again starts its
// security state afresh, as on real cards; a verified PIN does not survive.
func TestSelectDropsVerification(t *testing.T) {
	c := testCard(t, false)
	send(t, c, "00a4040c0ad3921000310001010408")
	send(t, c, "00a4020c020011")
	if got := send(t, c, "002000800431323334"); got != "9000" {
		t.Fatal(got)
	}
	send(t, c, "00a4020c020001")
	if got := send(t, c, "00b0000011"); got[len(got)-4:] != "9000" {
		t.Fatalf("read after VERIFY → %s", got)
	}
	send(t, c, "00a4040c0ad3921000310001010408")
	send(t, c, "00a4020c020001")
	if got := send(t, c, "00b0000011"); got != "6982" {
		t.Fatalf("read after re-selecting the application → %s, want 6982", got)
	}
	send(t, c, "00a4020c020011")
	if got := send(t, c, "00200080"); got != "63c3" {
		t.Fatalf("PIN status after re-selecting → %s, want 63c3", got)
	}
}

// TestAPInfo: EF 0005 carries the application's basic information as real
// cards do: FF 40 wrapping DF 41 (version, extended-length flag) and DF 42
// (the AP key ID, which is the subject key ID of EF 0004).
func TestAPInfo(t *testing.T) {
	for _, ext := range []bool{false, true} {
		c := testCard(t, ext)
		send(t, c, "00a4040c0ad3921000310001010408")
		send(t, c, "00a4020c020005")
		got := send(t, c, "00b000000c")
		flag := "00"
		if ext {
			flag = "01"
		}
		if !strings.HasPrefix(got, "ff4019df4103"+"0001"+flag+"df4210") {
			t.Fatalf("EF 0005 (extended %v) starts %s", ext, got)
		}
		all := send(t, c, "00b0000000")
		if len(all) != 2*(3+0x19)+4 || !strings.HasSuffix(all, "6282") {
			t.Fatalf("EF 0005 is %s", all)
		}
	}
}

// TestJPKIApplication: tools that check for a My Number card select the
// public-key application, read its token and certificates and query its
// PINs (jpki/myna: CheckCard, pin status, jpki cert).
func TestJPKIApplication(t *testing.T) {
	c := testCard(t, true)
	steps := []struct{ apdu, want, why string }{
		{"00a4040c0ad392f000260100000001", "9000", "select JPKI AP"},
		{"00a4020c020006", "9000", "select token EF"},
		{"00b0000020", hex.EncodeToString([]byte("JPKIAPICCTOKEN2                 ")) + "9000", "token, 32 bytes space-padded"},
		{"00a4020c020018", "9000", "select authentication PIN"},
		{"00200080", "63c3", "authentication PIN: 3 tries"},
		{"00a4020c02001b", "9000", "select signature password"},
		{"00200080", "63c5", "signature password: 5 tries"},
		{"00a4020c020001", "9000", "select signing certificate"},
		{"00b0000007", "6982", "signing certificate before the password"},
		{"00a4040c0ad3921000310001010402", "9000", "select card-surface AP"},
		{"00a4020c020013", "9000", "select its PIN A"},
		{"00200080", "63ca", "PIN A status"},
		{"00a4020c020012", "9000", "select its PIN B"},
		{"00200080", "63ca", "PIN B status"},
		{"00a4040c0ad3921000310001010408", "9000", "input-assist AP"},
		{"00a4020c020014", "9000", "select its PIN A"},
		{"00200080", "63ca", "PIN A status"},
		{"00a4020c020015", "9000", "select its PIN B"},
		{"00200080", "63ca", "PIN B status"},
	}
	for _, s := range steps {
		if got := send(t, c, s.apdu); got != s.want {
			t.Fatalf("%s: %s → %s, want %s", s.why, s.apdu, got, s.want)
		}
	}
	send(t, c, "00a4040c0ad392f000260100000001")
	for _, ef := range []string{"000a", "000b", "0002"} {
		send(t, c, "00a4020c02"+ef)
		der, _ := hex.DecodeString(strings.TrimSuffix(send(t, c, "00b00000000000"), "6282"))
		if _, err := x509.ParseCertificate(der); err != nil {
			t.Fatalf("EF %s: %v", ef, err)
		}
	}
	send(t, c, "00a4020c02001b")
	if got := send(t, c, "00200080"+"0a"+hex.EncodeToString([]byte(DefaultJPKISignPassword))); got != "9000" {
		t.Fatalf("signature password → %s", got)
	}
	send(t, c, "00a4020c020001")
	der, _ := hex.DecodeString(strings.TrimSuffix(send(t, c, "00b00000000000"), "6282"))
	if _, err := x509.ParseCertificate(der); err != nil {
		t.Fatalf("signing certificate: %v", err)
	}
}

// TestShortEFRead: READ BINARY with a short EF identifier selects and reads
// in one command (AokiApp/jsapdu reads the input-assist files this way).
func TestShortEFRead(t *testing.T) {
	c := testCard(t, true)
	send(t, c, "00a4040c0ad3921000310001010408")
	if got := send(t, c, "00b0850000"); !strings.HasPrefix(got, "ff40") {
		t.Fatalf("read EF 0005 by SFI → %s", got)
	}
	if got := send(t, c, "00b0810000"); got != "6982" {
		t.Fatalf("read EF 0001 by SFI before VERIFY → %s", got)
	}
	if got := send(t, c, "00b09f0000"); got != "6a82" {
		t.Fatalf("read a missing SFI → %s", got)
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
