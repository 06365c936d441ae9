package pcsc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/cardreader/pcsc"
	"github.com/kioskcert/kioskcert/cardreader/pcsctest"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/cardreader/vpcd"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

var (
	daemon *pcsctest.Daemon
	cards  *virtualcard.DemoSet
)

// TestMain starts one private pcscd for this test binary. It is not
// optional: without pcscd the test fails, it does not skip.
func TestMain(m *testing.M) {
	var err error
	daemon, err = pcsctest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	a, err := virtualcard.GenerateAuthority("JLIS-TEST")
	if err == nil {
		cards, err = virtualcard.NewDemoSet(a)
	}
	if err != nil {
		daemon.Stop()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	daemon.Stop()
	os.Exit(code)
}

// insert puts a demo resident's card into the virtual reader and removes it
// when the test ends.
func insert(t testing.TB, id string, opts virtualcard.Options) (*virtualcard.Card, demo.Resident) {
	t.Helper()
	var card *virtualcard.Card
	var r demo.Resident
	var err error
	if id == "" {
		card = virtualcard.NewForeign()
	} else if card, r, err = cards.Card(id, opts); err != nil {
		t.Fatal(err)
	}
	insertCard(t, card)
	return card, r
}

func insertCard(t testing.TB, card *virtualcard.Card) *vpcd.Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := daemon.Insert(ctx, card)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := daemon.Remove(ctx, conn); err != nil {
			t.Error(err)
		}
	})
	return conn
}

func openReader(t testing.TB, mode pcsc.ExtendedMode) *pcsc.Reader {
	t.Helper()
	r, err := pcsc.Open(pcsc.Options{Reader: pcsctest.ReaderName, Extended: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func fullRead(ctx context.Context, reader cardreader.Reader, pin string) (*cardreader.Session, carddata.Raw, error) {
	tr, err := reader.Connect(ctx)
	if err != nil {
		return nil, carddata.Raw{}, err
	}
	defer tr.Close()
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

func TestListReaders(t *testing.T) {
	names, err := pcsc.ListReaders()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range names {
		found = found || n == pcsctest.ReaderName
	}
	if !found {
		t.Fatalf("readers %q lack %q", names, pcsctest.ReaderName)
	}
	if _, err := pcsc.Open(pcsc.Options{Reader: "No Such Reader"}); !errors.Is(err, cardreader.ErrNoReader) {
		t.Fatalf("unknown reader: %v", err)
	}
}

func TestFullReadThroughPCSCD(t *testing.T) {
	tests := []struct {
		name     string
		resident string
		cardExt  bool
		mode     pcsc.ExtendedMode
		wantExt  bool
		max      int
	}{
		{"extended from ATR", "takasaki", true, pcsc.ExtendedAuto, true, 12},
		{"short from ATR", "takasaki", false, pcsc.ExtendedAuto, false, 16},
		{"forced short", "hanako", true, pcsc.ExtendedOff, false, 16},
		{"forced extended on a short card falls back", "an", false, pcsc.ExtendedOn, false, 17},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			card, r := insert(t, tt.resident, virtualcard.Options{ExtendedLength: tt.cardExt})
			s, raw, err := fullRead(ctx, openReader(t, tt.mode), r.PIN)
			if err != nil {
				t.Fatal(err)
			}
			if s.ExtendedLength() != tt.wantExt {
				t.Errorf("extended = %v, want %v", s.ExtendedLength(), tt.wantExt)
			}
			if s.APDUCount() > tt.max || card.Answered() != s.APDUCount() {
				t.Errorf("session sent %d APDUs, card answered %d, want at most %d", s.APDUCount(), card.Answered(), tt.max)
			}
			d, err := cards.Verifier.Verify(raw)
			if err != nil {
				t.Fatal(err)
			}
			if d.MyNumber != r.MyNumber || d.FourItems.Name != r.Name || d.FourItems.Address != r.Address {
				t.Fatal("read data differs from the card's resident")
			}
		})
	}
}

func TestWrongPINThroughPCSCD(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	card, r := insert(t, "hanako", virtualcard.Options{ExtendedLength: true})
	reader := openReader(t, pcsc.ExtendedAuto)
	for want := 2; want >= 0; want-- {
		_, _, err := fullRead(ctx, reader, "0000")
		var pe *cardreader.PINIncorrectError
		if !errors.As(err, &pe) || pe.TriesLeft != want {
			t.Fatalf("wrong PIN: %v, want %d tries left", err, want)
		}
	}
	_, _, err := fullRead(ctx, reader, r.PIN)
	if !errors.Is(err, cardreader.ErrPINBlocked) {
		t.Fatalf("after three wrong PINs: %v", err)
	}
	if card.TriesLeft() != 0 {
		t.Fatalf("card counter %d", card.TriesLeft())
	}
}

func TestCardRemovedMidRead(t *testing.T) {
	for _, n := range []int{1, 4, 6, 9} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			card, r := insert(t, "takasaki", virtualcard.Options{})
			card.SetFaults(virtualcard.Faults{RemoveAfter: n})
			start := time.Now()
			_, _, err := fullRead(ctx, openReader(t, pcsc.ExtendedAuto), r.PIN)
			if !errors.Is(err, cardreader.ErrCardRemoved) {
				t.Fatalf("removed after %d APDUs: %v", n, err)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("removal took too long to surface")
			}
		})
	}
}

func TestTamperedCardThroughPCSCD(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	card, _, err := cards.Card("an", virtualcard.Options{ExtendedLength: true})
	if err != nil {
		t.Fatal(err)
	}
	card.TamperFourItems()
	insertCard(t, card)
	rd := openReader(t, pcsc.ExtendedAuto)
	res, _ := cards.Residents.Resident("an")
	_, raw, err := fullRead(ctx, rd, res.PIN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cards.Verifier.Verify(raw); !errors.Is(err, carddata.ErrFourItemsHash) {
		t.Fatalf("tampered four items: %v", err)
	}
}

func TestForeignCardThroughPCSCD(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	insert(t, "", virtualcard.Options{})
	_, _, err := fullRead(ctx, openReader(t, pcsc.ExtendedAuto), "1234")
	if !errors.Is(err, cardreader.ErrNotMyNumberCard) {
		t.Fatalf("foreign card: %v", err)
	}
}

func TestSlowCardDeadline(t *testing.T) {
	card, r := insert(t, "hanako", virtualcard.Options{})
	card.SetFaults(virtualcard.Faults{Delay: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := fullRead(ctx, openReader(t, pcsc.ExtendedAuto), r.PIN)
	if !errors.Is(err, cardreader.ErrTimeout) {
		t.Fatalf("slow card: %v", err)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("deadline overrun: %v", el)
	}
}

func TestInsertRemoveEvents(t *testing.T) {
	rd := openReader(t, pcsc.ExtendedAuto)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if ok, err := rd.CardPresent(ctx); err != nil || ok {
		t.Fatalf("empty reader: present=%v err=%v", ok, err)
	}
	card, _, err := cards.Card("hanako", virtualcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- rd.WaitForCard(ctx) }()
	time.Sleep(200 * time.Millisecond)
	conn, err := vpcd.Insert(ctx, daemon.VPCDAddr, card)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("WaitForCard: %v", err)
	}
	go func() { got <- rd.WaitForRemoval(ctx) }()
	time.Sleep(200 * time.Millisecond)
	if err := daemon.Remove(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("WaitForRemoval: %v", err)
	}
	// A cancelled wait returns promptly.
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if err := rd.WaitForCard(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

func TestATRExtendedLength(t *testing.T) {
	ext, _, err := cards.Card("hanako", virtualcard.Options{ExtendedLength: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		atr  []byte
		want bool
	}{
		{ext.ATR(), true},
		{virtualcard.NewForeign().ATR(), false},
		{[]byte{0x3B}, false},
		{[]byte{0x3B, 0x8F}, false},
	}
	for _, tt := range tests {
		if got := pcsc.ATRSupportsExtendedLength(tt.atr); got != tt.want {
			t.Errorf("ATR %X: %v, want %v", tt.atr, got, tt.want)
		}
	}
}

func BenchmarkSessionThroughPCSCD(b *testing.B) {
	for _, ext := range []bool{true, false} {
		name := map[bool]string{true: "extended", false: "short"}[ext]
		b.Run(name, func(b *testing.B) {
			_, r := insert(b, "hanako", virtualcard.Options{ExtendedLength: ext})
			rd := openReader(b, pcsc.ExtendedAuto)
			ctx := context.Background()
			for b.Loop() {
				_, raw, err := fullRead(ctx, rd, r.PIN)
				if err != nil {
					b.Fatal(err)
				}
				raw.Wipe()
			}
		})
	}
}

func TestZZDumpLog(t *testing.T) {
	if os.Getenv("PCSCTEST_DEBUG") != "" {
		t.Log(daemon.Log())
	}
}
