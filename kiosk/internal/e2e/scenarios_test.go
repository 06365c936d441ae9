package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	demodata "github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/centerclient"
	"github.com/kioskcert/kioskcert/kiosk/internal/demo"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/payment"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/ipptest"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certverify"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// newRequest returns the one request ID that is in the ledger after a
// session and was not before it.
func newRequest(t testing.TB, before, after map[string]payment.Entry) (string, payment.Entry) {
	t.Helper()
	var ids []string
	for id := range after {
		if _, ok := before[id]; !ok {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("the session added %d payments, want 1", len(ids))
	}
	return ids[0], after[ids[0]]
}

// checkPaidOnce checks that a request was charged once, the fee for one copy.
func checkPaidOnce(t testing.TB, e payment.Entry) {
	t.Helper()
	if e.Status != payment.Captured || e.Captures != 1 || e.AmountYen != 120 {
		t.Errorf("payment %+v, want captured once for ¥120", e)
	}
}

// checkSettledOnce checks the center's audit for one printed request:
// requested, printed exactly once each, and one "issued" event per
// certificate (an overseas request yields two: overseas and domestic).
func checkSettledOnce(t testing.TB, kioskID, requestID string, certs int) []auditEvent {
	t.Helper()
	evs := env.audit(t, kioskID)
	for typ, want := range map[string]int{"requested": 1, "issued": certs, "printed": 1, "print_failed": 0, "print_refused": 0, "cancelled": 0} {
		if n := countEvents(evs, typ, requestID); n != want {
			t.Errorf("audit of %s: %d %q events for the request, want %d", kioskID, n, typ, want)
		}
	}
	return evs
}

// kioskLog returns the agent log lines of one kiosk.
func kioskLog(id string) []string {
	var out []string
	for line := range strings.Lines(string(agentLog.Bytes())) {
		if strings.Contains(line, "kiosk="+id+" ") || strings.HasSuffix(strings.TrimSpace(line), "kiosk="+id) {
			out = append(out, line)
		}
	}
	return out
}

// TestGoodIssuance issues a domestic certificate to a Japanese resident and
// an overseas one to a foreign resident through the whole stack, and
// verifies every QR code on the paper the IPP printer kept against the
// center's published keys.
func TestGoodIssuance(t *testing.T) {
	env.ensureCenter(t)
	p := startPrinter(t, ipptest.Options{})
	k := startKiosk(t, kioskOptions{id: kioskGood, printerURI: p.URI})
	// Reading QR codes off a 300 dpi page takes seconds under the race
	// detector, so each paper is verified while the next session runs.
	type verification struct {
		kind string
		err  <-chan error
	}
	var verifications []verification
	for _, tc := range []struct {
		kind         certificate.Kind
		resident     string
		municipality string
		certs        int // certificates issued
		codes        int // QR codes on the paper
	}{
		// Domestic: one page, one SMART Health Card.
		{certificate.Domestic, "hanako", "012041", 1, 1},
		// Overseas, for a foreign resident: the overseas page (SHC in
		// travel-document form and a VDS-NC) and the domestic page.
		{certificate.Overseas, "an", "011002", 2, 3},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			card, r := demoCard(t, tc.resident)
			before := k.pay.Ledger()
			res := play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: tc.municipality, Kind: tc.kind, Copies: 1})
			if err := res.Must(); err != nil {
				t.Fatal(err)
			}
			if normName(res.PreviewHolder) != normName(r.Name) {
				t.Errorf("the preview showed another holder than the card's resident")
			}
			req, paid := newRequest(t, before, k.pay.Ledger())
			checkPaidOnce(t, paid)
			evs := checkSettledOnce(t, kioskGood, req, tc.certs)
			for _, e := range evs {
				if e.RequestID == req && e.Type == "printed" && (e.CertificateID == "" || !slices.Contains(res.PreviewIDs, e.CertificateID)) {
					t.Errorf("printed event for certificate %q, preview showed %v", e.CertificateID, res.PreviewIDs)
				}
			}
			docs := printedFor(t, p, req)
			if len(docs) != 1 {
				t.Fatalf("the printer kept %d documents for the request, want 1", len(docs))
			}
			errc := make(chan error, 1)
			go func() { errc <- verifyPaper(docs[0], r, tc.codes) }()
			verifications = append(verifications, verification{string(tc.kind), errc})
		})
	}
	for _, v := range verifications {
		if err := <-v.err; err != nil {
			t.Errorf("%s paper: %v", v.kind, err)
		}
	}
	if len(verifications) != 2 {
		t.Errorf("%d papers verified, want 2", len(verifications))
	}
	env.checkNoPersonalData(t)
}

// verifyPaper verifies every QR code of a printed PDF as a recipient
// would, against the JWKS the center publishes and its CSCA, and checks
// that each names the card's resident.
func verifyPaper(pdf []byte, r demodata.Resident, codes int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := certverify.Verify(ctx, pdf, certverify.Options{JWKS: env.jwks, SHCIssuer: demo.IssuerURL, CSCAs: env.cscas})
	if err != nil {
		return fmt.Errorf("certverify: %w", err)
	}
	var problems []string
	if !rep.OK() || len(rep.Codes) != codes {
		for _, c := range rep.Codes {
			problems = append(problems, fmt.Sprintf("code kind %s valid %v error %q", c.Kind, c.Valid, c.Error))
		}
		return fmt.Errorf("certverify found %d codes (all valid: %v), want %d valid: %s", len(rep.Codes), rep.OK(), codes, strings.Join(problems, "; "))
	}
	names := []string{normName(r.Name), normName(r.RomanFamily + r.RomanGiven)}
	kinds := map[certverify.Kind]int{}
	for i, c := range rep.Codes {
		kinds[c.Kind]++
		if c.Holder.BirthDate != r.BirthDate {
			problems = append(problems, fmt.Sprintf("code %d (%s): birth date differs from the card's", i+1, c.Kind))
		}
		if !slices.Contains(names, normName(c.Holder.Name)) {
			problems = append(problems, fmt.Sprintf("code %d (%s): holder name differs from the card's", i+1, c.Kind))
		}
		if c.Kind == certverify.KindVDSNC && c.Holder.PassportNumber != r.PassportNumber {
			problems = append(problems, fmt.Sprintf("code %d (VDS-NC): passport number differs from the record's", i+1))
		}
	}
	if codes == 3 && (kinds[certverify.KindSHC] != 2 || kinds[certverify.KindVDSNC] != 1) {
		problems = append(problems, fmt.Sprintf("overseas paper has codes %v, want 2 SHC and 1 VDS-NC", kinds))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// TestWrongPINThenRight: one wrong PIN, then the right one; the screen
// shows 3 tries, then 2, and the certificate is printed.
func TestWrongPINThenRight(t *testing.T) {
	env.ensureCenter(t)
	p := startPrinter(t, ipptest.Options{})
	k := startKiosk(t, kioskOptions{id: kioskPIN, printerURI: p.URI})
	card, r := demoCard(t, "taro")
	res := play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, WrongPINs: []string{wrongPIN(r.PIN, 0)}, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
	if err := res.Must(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.TriesShown, []int{3, 2}) || res.LastTryWarned {
		t.Errorf("tries shown %v (last-try warning %v), want [3 2] without warning", res.TriesShown, res.LastTryWarned)
	}
	if n := card.TriesLeft(); n != 3 {
		t.Errorf("card's PIN counter %d after the right PIN, want 3", n)
	}
	req, paid := onlyRequest(t, k.pay)
	checkPaidOnce(t, paid)
	checkSettledOnce(t, kioskPIN, req, 1)
	if docs := printedFor(t, p, req); len(docs) != 1 {
		t.Errorf("printed %d documents, want 1", len(docs))
	}
	env.checkNoPersonalData(t)
}

// wrongPIN returns a 4-digit PIN different from pin.
func wrongPIN(pin string, i int) string {
	for n := i; ; n++ {
		w := fmt.Sprintf("%04d", (n*1111+5)%10000)
		if w != pin {
			return w
		}
	}
}

// TestPINBlocked: three wrong PINs block the card; the kiosk says so,
// prints nothing and sends nothing to the center. The blocked card is then
// refused before any PIN is asked for.
func TestPINBlocked(t *testing.T) {
	env.ensureCenter(t)
	p := startPrinter(t, ipptest.Options{})
	k := startKiosk(t, kioskOptions{id: kioskBlocked, printerURI: p.URI})
	card, r := demoCard(t, "takasaki")
	wrong := []string{wrongPIN(r.PIN, 0), wrongPIN(r.PIN, 1), wrongPIN(r.PIN, 2)}
	res := play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, WrongPINs: wrong, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
	if res.Printed || res.Error == nil || res.Error.Code != "pin_blocked" {
		t.Fatalf("printed %v, error %+v; want error pin_blocked", res.Printed, res.Error)
	}
	if !slices.Equal(res.TriesShown, []int{3, 2, 1}) || !res.LastTryWarned {
		t.Errorf("tries shown %v (last-try warning %v), want [3 2 1] with the warning", res.TriesShown, res.LastTryWarned)
	}
	if slices.Contains(res.States, flow.StateReading) || slices.Contains(res.States, flow.StateRequesting) {
		t.Errorf("states %v: the card was read or the center asked", res.States)
	}
	if n := card.TriesLeft(); n != 0 {
		t.Errorf("card's PIN counter %d, want 0", n)
	}

	// Again with the blocked card: refused before the PIN screen.
	res = play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
	if res.Error == nil || res.Error.Code != "pin_blocked" || slices.Contains(res.States, flow.StatePIN) {
		t.Errorf("blocked card: error %+v, states %v; want pin_blocked before any PIN screen", res.Error, res.States)
	}
	if n := card.TriesLeft(); n != 0 {
		t.Errorf("card's PIN counter %d, want 0", n)
	}
	if l := k.pay.Ledger(); len(l) != 0 {
		t.Errorf("payment ledger %v, want empty", l)
	}
	if d := p.Documents(t); len(d) != 0 {
		t.Errorf("printer kept %d documents, want none", len(d))
	}
	if evs := env.audit(t, kioskBlocked); len(evs) != 0 {
		t.Errorf("the center recorded %d events for the kiosk, want none (nothing sent)", len(evs))
	}
	env.checkNoPersonalData(t)
}

// TestCardPulledMidRead: the card leaves the reader in the middle of
// reading its files; the session ends cleanly with card_removed, and the
// kiosk serves the next resident.
func TestCardPulledMidRead(t *testing.T) {
	env.ensureCenter(t)
	p := startPrinter(t, ipptest.Options{})
	k := startKiosk(t, kioskOptions{id: kioskPulled, printerURI: p.URI})
	card, r := demoCard(t, "ichiro")
	// SELECT AP, SELECT EF (PIN), VERIFY (status), VERIFY (PIN), then the
	// card files: the 7th command finds no card.
	card.SetFaults(virtualcard.Faults{RemoveAfter: 6})
	// A read that hung would end at the 15 s card-operation deadline as
	// card_read_failed; card_removed means the removal itself was seen.
	// play bounds the whole session.
	res := play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: "011002", Kind: certificate.Domestic, Copies: 1})
	if res.Printed || res.Error == nil || res.Error.Code != "card_removed" {
		t.Fatalf("printed %v, error %+v; want error card_removed", res.Printed, res.Error)
	}
	if !slices.Contains(res.States, flow.StateReading) || slices.Contains(res.States, flow.StateRemoveCard) {
		t.Errorf("states %v: want the card pulled while reading", res.States)
	}
	if n := card.Answered(); n != 6 {
		t.Errorf("the card answered %d commands, want 6 before it was pulled", n)
	}
	if evs := env.audit(t, kioskPulled); len(evs) != 0 {
		t.Errorf("the center recorded %d events, want none", len(evs))
	}

	// The next resident is served normally.
	card, r = demoCard(t, "ichiro")
	res = play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: "011002", Kind: certificate.Domestic, Copies: 1})
	if err := res.Must(); err != nil {
		t.Fatalf("the session after the pulled card: %v", err)
	}
	req, paid := onlyRequest(t, k.pay)
	checkPaidOnce(t, paid)
	checkSettledOnce(t, kioskPulled, req, 1)
	if d := p.Documents(t); len(d) != 1 {
		t.Errorf("printer kept %d documents, want 1", len(d))
	}
	env.checkNoPersonalData(t)
}

// TestTamperedCard: card data changed after signing is refused by the
// kiosk's own verification before anything is sent; sent directly, the
// center refuses it too.
func TestTamperedCard(t *testing.T) {
	env.ensureCenter(t)
	p := startPrinter(t, ipptest.Options{})
	k := startKiosk(t, kioskOptions{id: kioskTamper, printerURI: p.URI})
	tampers := []struct {
		name   string
		tamper func(*virtualcard.Card)
	}{
		{"my_number", (*virtualcard.Card).TamperMyNumber},
		{"four_items", (*virtualcard.Card).TamperFourItems},
	}
	for _, tc := range tampers {
		t.Run("kiosk/"+tc.name, func(t *testing.T) {
			card, r := demoCard(t, "hanako")
			tc.tamper(card)
			res := play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
			if res.Printed || res.Error == nil || res.Error.Code != "card_invalid" {
				t.Fatalf("printed %v, error %+v; want card_invalid", res.Printed, res.Error)
			}
			if !slices.Contains(res.States, flow.StateReading) || slices.Contains(res.States, flow.StateRequesting) {
				t.Errorf("states %v: want a refusal after reading, before any request", res.States)
			}
		})
	}
	if evs := env.audit(t, kioskTamper); len(evs) != 0 {
		t.Errorf("the center recorded %d events for the kiosk, want none", len(evs))
	}
	if l := k.pay.Ledger(); len(l) != 0 || len(p.Documents(t)) != 0 {
		t.Errorf("payments %v, documents %d; want none", l, len(p.Documents(t)))
	}

	// The center's own check, for a kiosk that skipped the local one.
	direct := directClient(t, kioskDirect)
	for _, tc := range tampers {
		t.Run("center/"+tc.name, func(t *testing.T) {
			card, r := demoCard(t, "hanako")
			tc.tamper(card)
			raw := readCard(t, card, r.PIN)
			req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: "012041", Kind: certificate.Domestic, Copies: 1, Card: raw}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := direct.Issue(ctx, req)
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Code != protocol.CodeCardInvalid {
				t.Fatalf("center answered %v, want card_invalid", err)
			}
			evs := env.audit(t, kioskDirect)
			if countEvents(evs, "issued", req.RequestID) != 0 || countEvents(evs, "refused", req.RequestID) != 1 {
				t.Errorf("audit for the request: %d issued, %d refused; want 0 and 1",
					countEvents(evs, "issued", req.RequestID), countEvents(evs, "refused", req.RequestID))
			}
		})
	}
	env.checkNoPersonalData(t)
}

// readCard reads a card's files in process, as a kiosk without the local
// check would send them.
func readCard(t testing.TB, card *virtualcard.Card, pin string) carddata.Raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	slot := virtualcard.NewSlot("direct", true)
	slot.Insert(card)
	defer slot.Remove()
	tr, err := slot.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	s, err := cardreader.Open(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.VerifyPIN(ctx, []byte(pin)); err != nil {
		t.Fatal(err)
	}
	raw, err := s.ReadCardData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// directClient is a bare center client with an enrolled kiosk's
// credentials, for requests the kiosk flow would never send.
func directClient(t testing.TB, id string) *centerclient.Client {
	t.Helper()
	return directClientVia(t, id, env.center.KioskAddr)
}

// directClientVia is directClient connecting to addr (a proxy).
func directClientVia(t testing.TB, id, addr string) *centerclient.Client {
	t.Helper()
	dir := env.center.KioskDir(id)
	cert, err := tls.LoadX509KeyPair(dir+"/kiosk.pem", dir+"/kiosk.key")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(dir + "/center-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA certificate in center-ca.pem")
	}
	c := centerclient.New(centerclient.Config{
		URL: "wss://" + addr + "/v1/kiosk",
		TLS: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "localhost"},
		Log: newLogger(id),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNonParticipatingMunicipality: the kiosk offers only the
// municipalities the center lists as participating, ignores a choice of
// one it was not offered, and the center refuses such a request anyway.
func TestNonParticipatingMunicipality(t *testing.T) {
	env.ensureCenter(t)
	const fujimino = "112453" // a demo municipality that does not take part
	p := startPrinter(t, ipptest.Options{})
	k := startKiosk(t, kioskOptions{id: kioskNonPart, printerURI: p.URI})
	hello, ok := k.Client.Hello()
	if !ok {
		t.Fatal("no hello from the center")
	}
	var offered []string
	for _, m := range hello.Municipalities {
		offered = append(offered, m.Code)
	}
	slices.Sort(offered)
	if !slices.Equal(offered, []string{"011002", "012041"}) {
		t.Errorf("hello offers %v, want the participating demo municipalities [011002 012041]", offered)
	}

	// The resident chooses Fujimino; the kiosk stays on the municipality
	// screen until the resident gives up.
	snaps, stop := k.Kiosk.Subscribe()
	defer stop()
	shown := make(chan []string, 1)
	quit := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		seen := 0
		var lastSeq uint64
		for {
			var s flow.Snapshot
			select {
			case s = <-snaps:
			case <-quit:
				return
			}
			if s.State != flow.StateMunicipality || s.Seq == lastSeq {
				continue
			}
			lastSeq = s.Seq
			if seen++; seen == 1 {
				var codes []string
				for _, m := range s.Municipalities {
					codes = append(codes, m.Code)
				}
				shown <- codes
			}
			if s.Municipality != "" {
				return // a choice was taken
			}
			// The screen shown again without a choice: the input was
			// ignored. (Each ignored input re-shows it, and the scripted
			// resident answers every showing, so give up soon.)
			if seen >= 2 {
				k.Kiosk.Input(flow.Input{Type: flow.InputCancel})
			}
		}
	}()
	card, r := demoCard(t, "hanako")
	res := play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: fujimino, Kind: certificate.Domestic, Copies: 1})
	close(quit)
	<-watchDone
	if res.Printed || res.Error == nil || res.Error.Code != "cancelled" {
		t.Errorf("printed %v, error %+v; want the resident's cancel", res.Printed, res.Error)
	}
	for _, s := range []flow.State{flow.StateKind, flow.StateCopies, flow.StateRequesting} {
		if slices.Contains(res.States, s) {
			t.Errorf("states %v: the kiosk went on with a municipality it did not offer", res.States)
		}
	}
	select {
	case codes := <-shown:
		if slices.Contains(codes, fujimino) {
			t.Errorf("the municipality screen offered %v", codes)
		}
	default:
		t.Error("the municipality screen was never seen")
	}
	if evs := env.audit(t, kioskNonPart); len(evs) != 0 {
		t.Errorf("the center recorded %d events for the kiosk, want none", len(evs))
	}

	// A client that sends it anyway is refused by the center.
	direct := directClient(t, kioskDirect)
	card, r = demoCard(t, "hanako")
	req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: fujimino, Kind: certificate.Domestic, Copies: 1, Card: readCard(t, card, r.PIN)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := direct.Issue(ctx, req)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeNotParticipating {
		t.Errorf("center answered %v, want not_participating", err)
	}
	env.checkNoPersonalData(t)
}

// TestCenterDownThenBack takes the center away at three moments of a
// session and checks that one request yields one certificate and one
// settlement at most.
func TestCenterDownThenBack(t *testing.T) {
	env.ensureCenter(t)
	p := startPrinter(t, ipptest.Options{})

	// The center stops while the resident makes the choices and comes back
	// on the same ports: the request waits for the reconnection and is
	// issued once.
	t.Run("stopped_while_choosing", func(t *testing.T) {
		defer env.ensureCenter(t)
		k := startKiosk(t, kioskOptions{id: kioskDown, printerURI: p.URI})
		card, r := demoCard(t, "hanako")
		restarted := make(chan error, 1)
		pc := &pcscCard{card: card, beforeRemove: func() {
			if err := env.center.Stop(); err != nil {
				restarted <- err
				return
			}
			go func() {
				time.Sleep(time.Second)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				restarted <- env.center.Start(ctx)
			}()
		}}
		res := play(t, k, pc, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
		select {
		case err := <-restarted:
			if err != nil {
				t.Fatalf("center stop/start: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("the center was never stopped (session: %v)", res.Must())
		}
		if err := res.Must(); err != nil {
			t.Fatal(err)
		}
		lost := false
		for _, l := range kioskLog(kioskDown) {
			lost = lost || strings.Contains(l, "center connection lost")
		}
		if !lost {
			t.Error("the kiosk never lost the center: the scenario did not happen")
		}
		req, paid := onlyRequest(t, k.pay)
		checkPaidOnce(t, paid)
		checkSettledOnce(t, kioskDown, req, 1)
		if docs := printedFor(t, p, req); len(docs) != 1 {
			t.Errorf("printed %d documents for the request, want 1", len(docs))
		}
	})

	// The connection dies after the center has issued but before its
	// answer arrives: the kiosk resends the same request ID on a new
	// connection and the center replays the same certificate.
	t.Run("answer_lost", func(t *testing.T) {
		proxy := newFaultProxy(t, env.center.KioskAddr, 0, 1)
		k := startKiosk(t, kioskOptions{id: kioskRetry, printerURI: p.URI, centerAddr: proxy.Addr()})
		replayedBefore := env.metric(t, `kioskcert_center_issue_requests_total{result="replayed"}`)
		card, r := demoCard(t, "taro")
		cutDone := make(chan error, 1)
		// Answers are held from the kind screen on: the center has
		// answered the municipality check by then, and the next answer is
		// the certificate's.
		snaps, stopSnaps := k.Kiosk.Subscribe()
		defer stopSnaps()
		played := make(chan struct{})
		go func() {
			for {
				var s flow.Snapshot
				select {
				case s = <-snaps:
				case <-played:
					cutDone <- errors.New("the session ended before the kind screen")
					return
				}
				if s.State != flow.StateKind {
					continue
				}
				proxy.holdAnswers()
				ok := waitFor(30*time.Second, func() bool {
					evs, err := env.opsGet("/ops/audit?kiosk=" + kioskRetry)
					return err == nil && bytes.Contains(evs, []byte(`"type":"issued"`))
				})
				proxy.cutAll()
				if !ok {
					cutDone <- errors.New("the center never issued")
					return
				}
				cutDone <- nil
				return
			}
		}()
		pc := &pcscCard{card: card}
		res := play(t, k, pc, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
		close(played)
		if err := <-cutDone; err != nil { // joins the watcher
			t.Fatal(err)
		}
		if err := res.Must(); err != nil {
			t.Fatal(err)
		}
		if accepted, cut := proxy.stats(); accepted < 2 || cut < 1 {
			t.Errorf("proxy accepted %d connections and cut %d; want a reconnection after a cut", accepted, cut)
		}
		// The center answers a request ID it has seen from its cache
		// ("replayed"); a new ID would have been issued afresh. (It is
		// replayed twice today: TestIssueResentOnceAfterReconnect.)
		if d := env.metric(t, `kioskcert_center_issue_requests_total{result="replayed"}`) - replayedBefore; d < 1 {
			t.Errorf("the center replayed %v requests, want the same request ID resent", d)
		}
		req, paid := onlyRequest(t, k.pay)
		checkPaidOnce(t, paid)
		checkSettledOnce(t, kioskRetry, req, 1)
		if docs := printedFor(t, p, req); len(docs) != 1 {
			t.Errorf("printed %d documents for the request, want 1", len(docs))
		}
	})

	// The center is killed after answering, before the kiosk reports the
	// outcome, and restarts with an empty pending cache: it settles the
	// outcome from its audit log (the request was issued to this kiosk), so
	// the printed copy is counted exactly once.
	t.Run("killed_before_outcome", func(t *testing.T) {
		defer env.ensureCenter(t)
		restarted := make(chan error, 1)
		pay := &hookPayment{Simulator: payment.NewSimulator(), beforeAuthorize: func() {
			env.center.Kill()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			restarted <- env.center.Start(ctx)
		}}
		k := startKiosk(t, kioskOptions{id: kioskKilled, printerURI: p.URI, payment: pay})
		card, r := demoCard(t, "hanako")
		res := play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
		// A session that ended before payment never ran the hook: say
		// why instead of waiting for a restart that never comes.
		select {
		case err := <-restarted:
			if err != nil {
				t.Fatalf("center restart: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("the center was never killed (session: %v)", res.Must())
		}
		if err := res.Must(); err != nil {
			t.Fatal(err)
		}
		req, paid := onlyRequest(t, pay.Simulator)
		checkPaidOnce(t, paid)
		if docs := printedFor(t, p, req); len(docs) != 1 {
			t.Errorf("printed %d documents for the request, want 1", len(docs))
		}
		if !waitFor(30*time.Second, func() bool { return k.Client.PendingOutcomes() == 0 }) {
			t.Fatalf("the kiosk still holds %d outcomes", k.Client.PendingOutcomes())
		}
		evs := env.audit(t, kioskKilled)
		for typ, want := range map[string]int{"requested": 1, "issued": 1, "printed": 1} {
			if n := countEvents(evs, typ, req); n != want {
				t.Errorf("audit: %d %q events, want %d", n, typ, want)
			}
		}
	})
	env.checkNoPersonalData(t)
}

// hookPayment runs a hook once, before the first authorisation.
type hookPayment struct {
	*payment.Simulator
	beforeAuthorize func()
}

// Authorize implements flow.Payment.
func (h *hookPayment) Authorize(ctx context.Context, requestID string, amountYen int) error {
	if f := h.beforeAuthorize; f != nil {
		h.beforeAuthorize = nil
		f()
	}
	return h.Simulator.Authorize(ctx, requestID, amountYen)
}

// paperHook reports print failures to the test and, when refill is set,
// waits until the test has loaded paper, as store staff would before the
// resident presses retry.
type paperHook struct {
	inner  flow.Printer
	refill bool
	failed chan error
	loaded chan struct{}
	mu     sync.Mutex
	errs   []error
}

// Print implements flow.Printer.
func (h *paperHook) Print(ctx context.Context, name string, pdf []byte, copies int) error {
	err := h.inner.Print(ctx, name, pdf, copies)
	if err != nil {
		h.mu.Lock()
		h.errs = append(h.errs, err)
		h.mu.Unlock()
		if h.refill {
			h.failed <- err
			<-h.loaded
		}
	}
	return err
}

func (h *paperHook) failures() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.errs)
}

// TestPrinterPaperOut: the IPP printer's tray is empty. Once staff load
// paper, the resident's retry prints and the fee is captured once; if the
// retry fails too, nothing is charged and the outcome is failed.
func TestPrinterPaperOut(t *testing.T) {
	env.ensureCenter(t)
	p := startPrinter(t, ipptest.Options{})
	ipp, err := printer.NewIPP(p.URI, printer.IPPOptions{PollInterval: 50 * time.Millisecond, RootCAs: env.printerCA.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		kiosk  string
		refill bool
	}{
		{"retry_after_refill", kioskPaper, true},
		{"fails_twice", kioskPaper2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.SetPaperLevel(t, 0)
			hook := &paperHook{inner: agent.Printer{P: ipp}, refill: tc.refill, failed: make(chan error), loaded: make(chan struct{})}
			k := startKiosk(t, kioskOptions{id: tc.kiosk, printer: hook})
			card, r := demoCard(t, "taro")
			type result struct {
				res *headless.Result
				err error
			}
			results := make(chan result, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			go func() {
				res, err := headless.Run(ctx, k.Kiosk, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1, RetryPrint: true})
				results <- result{res, err}
			}()
			var out result
		wait:
			for {
				select {
				case <-hook.failed:
					p.SetPaperLevel(t, 50)
					hook.loaded <- struct{}{}
				case out = <-results:
					break wait
				}
			}
			if out.err != nil {
				t.Fatalf("session: %v", out.err)
			}
			res := out.res
			if !slices.Contains(res.States, flow.StatePrintFailed) {
				t.Errorf("states %v: the print-failed screen was not shown", res.States)
			}
			fails := hook.failures()
			for _, err := range fails {
				if agent.PrintCode(err) != protocol.CodePrinterPaperOut {
					t.Errorf("print failure %v, want paper out", err)
				}
			}
			req, paid := onlyRequest(t, k.pay)
			evs := env.audit(t, tc.kiosk)
			if tc.refill {
				if err := res.Must(); err != nil {
					t.Fatal(err)
				}
				if len(fails) != 1 {
					t.Errorf("%d print failures, want 1", len(fails))
				}
				checkPaidOnce(t, paid)
				checkSettledOnce(t, tc.kiosk, req, 1)
				if docs := printedFor(t, p, req); len(docs) != 1 {
					t.Errorf("printed %d documents for the request, want 1", len(docs))
				}
				return
			}
			if res.Printed || res.Error == nil || res.Error.Code != string(protocol.CodePrinterPaperOut) {
				t.Errorf("printed %v, error %+v; want printer_paper_out", res.Printed, res.Error)
			}
			if len(fails) != 2 {
				t.Errorf("%d print failures, want 2", len(fails))
			}
			if paid.Status != payment.Voided || paid.Captures != 0 {
				t.Errorf("payment %+v, want voided, never captured", paid)
			}
			if docs := printedFor(t, p, req); len(docs) != 0 {
				t.Errorf("printed %d documents, want none", len(docs))
			}
			if countEvents(evs, "printed", req) != 0 || countEvents(evs, "print_failed", req) != 1 {
				t.Errorf("audit: %d printed, %d print_failed; want 0 and 1", countEvents(evs, "printed", req), countEvents(evs, "print_failed", req))
			}
			for _, e := range evs {
				if e.Type == "print_failed" && e.Result != string(protocol.CodePrinterPaperOut) {
					t.Errorf("print_failed event result %q, want printer_paper_out", e.Result)
				}
			}
		})
	}
	env.checkNoPersonalData(t)
}

// swapCenter answers every request with another resident's certificates,
// as a center mixing up two requests would. Everything else goes to the
// real center, so the kiosk's refusal reaches it.
type swapCenter struct {
	flow.Center
	others []certificate.Certificate
}

// Issue implements flow.Center.
func (s *swapCenter) Issue(ctx context.Context, req protocol.Issue) (*protocol.CertificateResponse, error) {
	resp, err := s.Center.Issue(ctx, req)
	if err != nil {
		return resp, err
	}
	out := *resp
	out.Certificates = cloneCertificates(s.others)
	return &out, nil
}

func cloneCertificates(cs []certificate.Certificate) []certificate.Certificate {
	b, err := json.Marshal(cs)
	if err != nil {
		panic(err)
	}
	var out []certificate.Certificate
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// TestHolderMismatch: the answer to hanako's request carries taro's
// (genuine, correctly signed) certificate. The kiosk must refuse to print
// it, charge nothing, and report the refusal to the center.
func TestHolderMismatch(t *testing.T) {
	env.ensureCenter(t)
	// Taro's certificate, issued for real through another kiosk.
	direct := directClient(t, kioskDirect)
	taroCard, taro := demoCard(t, "taro")
	treq := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: "012041", Kind: certificate.Domestic, Copies: 1, Card: readCard(t, taroCard, taro.PIN)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tresp, err := direct.Issue(ctx, treq)
	if err != nil {
		t.Fatal(err)
	}
	others := cloneCertificates(tresp.Certificates)
	if err := direct.ReportOutcome(ctx, protocol.Outcome{RequestID: treq.RequestID, Outcome: protocol.OutcomeCancelled, Reason: protocol.CodeCancelled}); err != nil {
		t.Fatal(err)
	}

	p := startPrinter(t, ipptest.Options{})
	k := startKiosk(t, kioskOptions{id: kioskMismatch, printerURI: p.URI, wrapCenter: func(c flow.Center) flow.Center {
		return &swapCenter{Center: c, others: others}
	}})
	card, r := demoCard(t, "hanako")
	res := play(t, k, &pcscCard{card: card}, headless.Resident{PIN: r.PIN, Municipality: "012041", Kind: certificate.Domestic, Copies: 1})
	if res.Printed || res.Error == nil || res.Error.Code != "binding_mismatch" {
		t.Fatalf("printed %v, error %+v; want binding_mismatch", res.Printed, res.Error)
	}
	for _, s := range []flow.State{flow.StatePreview, flow.StatePayment, flow.StatePrinting} {
		if slices.Contains(res.States, s) {
			t.Errorf("states %v: the mismatched certificate got as far as %s", res.States, s)
		}
	}
	if l := k.pay.Ledger(); len(l) != 0 {
		t.Errorf("payment ledger %v, want no charge at all", l)
	}
	if d := p.Documents(t); len(d) != 0 {
		t.Errorf("the printer kept %d documents, want none", len(d))
	}
	if !waitFor(10*time.Second, func() bool { return k.Client.PendingOutcomes() == 0 }) {
		t.Errorf("the refusal was not acknowledged by the center")
	}
	evs := env.audit(t, kioskMismatch)
	ids := requestIDs(evs)
	if len(ids) != 1 {
		t.Fatalf("audit has %d requests for the kiosk, want 1", len(ids))
	}
	for typ, want := range map[string]int{"issued": 1, "print_refused": 1, "printed": 0} {
		if n := countEvents(evs, typ, ids[0]); n != want {
			t.Errorf("audit: %d %q events, want %d", n, typ, want)
		}
	}
	for _, e := range evs {
		if e.Type == "print_refused" && e.Result != string(protocol.CodeHolderMismatch) {
			t.Errorf("print_refused result %q, want holder_mismatch", e.Result)
		}
	}
	refused := slices.ContainsFunc(kioskLog(kioskMismatch), func(l string) bool {
		return strings.Contains(l, "refusing to print") && strings.Contains(l, ids[0])
	})
	if !refused {
		t.Error("the kiosk log does not record the refusal")
	}
	env.checkNoPersonalData(t)
}
