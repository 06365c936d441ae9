package cardreader_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

// One authority and one personalised card image per resident, shared by all
// tests: RSA key generation is the slow part.
var (
	setupOnce sync.Once
	cards     *virtualcard.DemoSet
	verifier  *carddata.Verifier
)

func newCard(t testing.TB, id string, ext bool) (*virtualcard.Card, demo.Resident) {
	t.Helper()
	setupOnce.Do(func() {
		a, err := virtualcard.GenerateAuthority("JLIS-TEST")
		if err != nil {
			panic(err)
		}
		if cards, err = virtualcard.NewDemoSet(a); err != nil {
			panic(err)
		}
		verifier = cards.Verifier
	})
	c, r, err := cards.Card(id, virtualcard.Options{ExtendedLength: ext})
	if err != nil {
		t.Fatal(err)
	}
	return c, r
}

func connect(t testing.TB, c *virtualcard.Card, readerExt bool) cardreader.Transport {
	t.Helper()
	slot := virtualcard.NewSlot("test slot", readerExt)
	slot.Insert(c)
	tr, err := slot.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// fullRead runs the whole kiosk sequence and returns the session.
func fullRead(ctx context.Context, tr cardreader.Transport, pin string) (*cardreader.Session, carddata.Raw, error) {
	s, err := cardreader.Open(ctx, tr)
	if err != nil {
		return nil, carddata.Raw{}, err
	}
	if _, err := s.PINTriesLeft(ctx); err != nil {
		return s, carddata.Raw{}, err
	}
	if err := s.VerifyPIN(ctx, []byte(pin)); err != nil {
		return s, carddata.Raw{}, err
	}
	raw, err := s.ReadCardData(ctx)
	return s, raw, err
}

func TestFullSessionAPDUCount(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		resident  string
		cardExt   bool
		readerExt bool
		maxAPDUs  int
	}{
		// select AP, select PIN EF, PIN status, VERIFY, then select + one read per EF.
		{"extended", "hanako", true, true, 12},
		{"extended long address", "takasaki", true, true, 12},
		{"short only", "hanako", false, false, 16},
		{"short, long address", "takasaki", false, false, 16},
		{"card extended, reader short", "taro", true, false, 16},
		{"reader extended, card short", "an", false, true, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			card, r := newCard(t, tt.resident, tt.cardExt)
			s, raw, err := fullRead(ctx, connect(t, card, tt.readerExt), r.PIN)
			if err != nil {
				t.Fatal(err)
			}
			if n := s.APDUCount(); n > tt.maxAPDUs {
				t.Errorf("%d APDUs, want at most %d", n, tt.maxAPDUs)
			}
			if n := card.Answered(); n != s.APDUCount() {
				t.Errorf("card answered %d APDUs, session counted %d", n, s.APDUCount())
			}
			d, err := verifier.Verify(raw)
			if err != nil {
				t.Fatal(err)
			}
			if d.MyNumber != r.MyNumber || d.FourItems.Name != r.Name || d.FourItems.Address != r.Address ||
				d.FourItems.BirthDate != r.CardBirthDate() || string(d.FourItems.Sex) != r.Sex {
				t.Fatal("card data differs from the resident")
			}
			if card.TriesLeft() != cardreader.MaxPINTries {
				t.Errorf("tries left %d after a good PIN", card.TriesLeft())
			}
		})
	}
}

func TestExactAPDUCounts(t *testing.T) {
	// Short reads carry at most 256 bytes: 4 APDUs before reading, then
	// select + 1 read for EF 0001, select + 1 (or 2 with the long address)
	// for EF 0002, select + 2 for the 336-byte EF 0003 and select + 3 for the
	// 568-byte EF 0004. That is the minimum; the bound is 16.
	ctx := context.Background()
	for _, tt := range []struct {
		ext  bool
		id   string
		want int
	}{{true, "hanako", 12}, {true, "takasaki", 12}, {false, "hanako", 15}, {false, "takasaki", 16}} {
		card, r := newCard(t, tt.id, tt.ext)
		s, _, err := fullRead(ctx, connect(t, card, tt.ext), r.PIN)
		if err != nil {
			t.Fatal(err)
		}
		if s.APDUCount() != tt.want {
			t.Errorf("%s ext=%v: %d APDUs, want %d", tt.id, tt.ext, s.APDUCount(), tt.want)
		}
	}
}

func TestWrongPINThenBlocked(t *testing.T) {
	ctx := context.Background()
	card, r := newCard(t, "hanako", true)
	tr := connect(t, card, true)
	s, err := cardreader.Open(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.PINTriesLeft(ctx); err != nil || n != 3 {
		t.Fatalf("PINTriesLeft = %d, %v", n, err)
	}
	wrong := "0000"
	if wrong == r.PIN {
		wrong = "9999"
	}
	for want := 2; want >= 1; want-- {
		err := s.VerifyPIN(ctx, []byte(wrong))
		var pe *cardreader.PINIncorrectError
		if !errors.As(err, &pe) || pe.TriesLeft != want {
			t.Fatalf("wrong PIN: %v, want %d tries left", err, want)
		}
		if n, err := s.PINTriesLeft(ctx); err != nil || n != want {
			t.Fatalf("status after wrong PIN = %d, %v (and it must not spend a try)", n, err)
		}
	}
	if err := s.VerifyPIN(ctx, []byte(wrong)); !errors.Is(err, cardreader.ErrPINBlocked) {
		t.Fatalf("third wrong PIN: %v", err)
	}
	before := card.Answered()
	if err := s.VerifyPIN(ctx, []byte(r.PIN)); !errors.Is(err, cardreader.ErrPINBlocked) {
		t.Fatalf("PIN after block: %v", err)
	}
	if card.Answered() != before {
		t.Fatal("a PIN was sent to a blocked card")
	}
	// A new session learns the block from the status without sending a PIN.
	tr.Close()
	s2, _ := cardreader.Open(ctx, connect(t, card, true))
	if _, err := s2.PINTriesLeft(ctx); !errors.Is(err, cardreader.ErrPINBlocked) {
		t.Fatalf("status of blocked PIN: %v", err)
	}
	if err := s2.VerifyPIN(ctx, []byte(r.PIN)); !errors.Is(err, cardreader.ErrPINBlocked) {
		t.Fatalf("verify on blocked card: %v", err)
	}
	if _, err := s2.ReadCardData(ctx); !errors.Is(err, cardreader.ErrSecurityStatus) {
		t.Fatalf("read on blocked card: %v", err)
	}
}

func TestGoodPINResetsCounter(t *testing.T) {
	ctx := context.Background()
	card, r := newCard(t, "an", false)
	s, _ := cardreader.Open(ctx, connect(t, card, false))
	if err := s.VerifyPIN(ctx, []byte("0001")); !errors.Is(err, cardreader.ErrPINIncorrect) {
		t.Fatal(err)
	}
	if err := s.VerifyPIN(ctx, []byte(r.PIN)); err != nil {
		t.Fatal(err)
	}
	if card.TriesLeft() != 3 {
		t.Fatalf("counter %d after good PIN", card.TriesLeft())
	}
}

func TestPINFormatNeverReachesCard(t *testing.T) {
	ctx := context.Background()
	card, _ := newCard(t, "hanako", true)
	s, _ := cardreader.Open(ctx, connect(t, card, true))
	if _, err := s.PINTriesLeft(ctx); err != nil {
		t.Fatal(err)
	}
	before := card.Answered()
	for _, pin := range []string{"", "123", "12345", "12a4", "１２３４", "12 4"} {
		if err := s.VerifyPIN(ctx, []byte(pin)); !errors.Is(err, cardreader.ErrPINFormat) {
			t.Errorf("VerifyPIN(%q) = %v", pin, err)
		}
	}
	if card.Answered() != before || card.TriesLeft() != 3 {
		t.Fatal("a malformed PIN reached the card")
	}
}

func TestReadBeforeVerify(t *testing.T) {
	ctx := context.Background()
	card, _ := newCard(t, "hanako", true)
	s, _ := cardreader.Open(ctx, connect(t, card, true))
	if _, err := s.ReadCardData(ctx); !errors.Is(err, cardreader.ErrSecurityStatus) {
		t.Fatalf("read before verify: %v", err)
	}
	// The certificate is public.
	if _, err := s.ReadEF(ctx, carddata.EFCertificate); err != nil {
		t.Fatalf("certificate before verify: %v", err)
	}
}

func TestForeignCard(t *testing.T) {
	tr := connect(t, virtualcard.NewForeign(), true)
	if _, err := cardreader.Open(context.Background(), tr); !errors.Is(err, cardreader.ErrNotMyNumberCard) {
		t.Fatalf("foreign card: %v", err)
	}
}

func TestCardRemovedAtEveryStep(t *testing.T) {
	ctx := context.Background()
	for _, ext := range []bool{true, false} {
		card, r := newCard(t, "takasaki", ext)
		// Count the APDUs of a full session, then pull the card after each.
		s, _, err := fullRead(ctx, connect(t, card, ext), r.PIN)
		if err != nil {
			t.Fatal(err)
		}
		total := s.APDUCount()
		for n := 1; n < total; n++ {
			card.SetFaults(virtualcard.Faults{RemoveAfter: n})
			_, _, err := fullRead(ctx, connect(t, card, ext), r.PIN)
			if !errors.Is(err, cardreader.ErrCardRemoved) {
				t.Fatalf("ext=%v removed after %d APDUs: %v", ext, n, err)
			}
		}
		if card.TriesLeft() != 3 {
			t.Fatalf("removals spent PIN tries: %d left", card.TriesLeft())
		}
	}
}

func TestSlowCardHonoursDeadline(t *testing.T) {
	card, r := newCard(t, "hanako", true)
	card.SetFaults(virtualcard.Faults{Delay: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := fullRead(ctx, connect(t, card, true), r.PIN)
	if !errors.Is(err, cardreader.ErrTimeout) {
		t.Fatalf("slow card: %v", err)
	}
	if time.Since(start) > 900*time.Millisecond {
		t.Fatal("read did not stop at the deadline")
	}
}

func TestGarbageAnswers(t *testing.T) {
	card, r := newCard(t, "hanako", true)
	card.SetFaults(virtualcard.Faults{Garbage: true})
	for i := 0; i < 50; i++ {
		if _, _, err := fullRead(context.Background(), connect(t, card, true), r.PIN); err == nil {
			t.Fatal("garbage card read succeeded")
		}
	}
}

func TestTamperedCard(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		tamper func(*virtualcard.Card)
		want   error
	}{
		{"my number", (*virtualcard.Card).TamperMyNumber, carddata.ErrMyNumberHash},
		{"four items", (*virtualcard.Card).TamperFourItems, carddata.ErrFourItemsHash},
	} {
		t.Run(tt.name, func(t *testing.T) {
			card, r := newCard(t, "hanako", true)
			tt.tamper(card)
			_, raw, err := fullRead(ctx, connect(t, card, true), r.PIN)
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "my number" {
				// The forger kept the check digit valid: only the signature catches it.
				if _, err := carddata.ParseMyNumber(raw.MyNumber); err != nil {
					t.Fatalf("tampered number should still parse: %v", err)
				}
			}
			if _, err := verifier.Verify(raw); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func BenchmarkSessionInProcess(b *testing.B) {
	for _, ext := range []bool{true, false} {
		name := "short"
		if ext {
			name = "extended"
		}
		b.Run(name, func(b *testing.B) {
			card, r := newCard(b, "hanako", ext)
			slot := virtualcard.NewSlot("bench", ext)
			slot.Insert(card)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				tr, err := slot.Connect(ctx)
				if err != nil {
					b.Fatal(err)
				}
				_, raw, err := fullRead(ctx, tr, r.PIN)
				if err != nil {
					b.Fatal(err)
				}
				raw.Wipe()
				tr.Close()
			}
		})
	}
}
