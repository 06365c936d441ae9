package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/cardreader/pcsc"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/cardreader/vpcd"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/kiosk/internal/headless"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certverify"
)

// SlotCard puts a virtual card into an in-process slot.
type SlotCard struct {
	Slot *virtualcard.Slot
	Card *virtualcard.Card
}

// Insert implements headless.Card.
func (c SlotCard) Insert() error { c.Slot.Insert(c.Card); return nil }

// Remove implements headless.Card.
func (c SlotCard) Remove() error { c.Slot.Remove(); return nil }

// VPCDCard puts a virtual card into a real pcscd's vpcd reader.
type VPCDCard struct {
	Addr   string
	Card   *virtualcard.Card
	Reader cardreader.Reader // to wait until pcscd has seen the change
	conn   *vpcd.Connection
}

// Insert implements headless.Card.
func (c *VPCDCard) Insert() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := vpcd.Insert(ctx, c.Addr, c.Card)
	if err != nil {
		return err
	}
	c.conn = conn
	return c.Reader.WaitForCard(ctx)
}

// Remove implements headless.Card. pcscd polls its readers every 400 ms and
// the vpcd driver takes a card inserted within one poll of a removal for
// the old card, so Remove waits until pcscd has seen the reader empty and
// one poll more.
func (c *VPCDCard) Remove() error {
	if c.conn == nil {
		return nil
	}
	c.conn.Remove()
	c.conn = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Reader.WaitForRemoval(ctx); err != nil {
		return err
	}
	time.Sleep(600 * time.Millisecond)
	return nil
}

// Options configure Run.
type Options struct {
	Out    string // output directory (out/demo)
	Center string // path of the issuance-center binary
	// Reader is "virtual" (in process, the default) or "pcsc" (through the
	// machine's pcscd and its vpcd driver at VPCD).
	Reader string
	VPCD   string
	// Keys says where the center's signing keys live: auto (SoftHSM2 when
	// installed and the center binary has PKCS#11 support), softhsm or
	// file ("" is auto).
	Keys string
	// Stdout receives what people should read (which keys); nil discards.
	Stdout io.Writer
	Log    *slog.Logger
}

// Result lists what the demo produced.
type Result struct {
	Domestic, Overseas, JWKS, Resident, CSCA string
	Reports                                  map[string]*certverify.Report
	// Keys says where the center's signing keys were.
	Keys string
}

// Run builds a demo center and kiosk under o.Out, issues one domestic and
// one overseas certificate for the demo resident hanako through the kiosk
// flow, prints them to the spool directory, and verifies both PDFs.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return nil, err
	}
	o.Out = out
	if err := os.RemoveAll(o.Out); err != nil {
		return nil, err
	}
	for _, d := range []string{o.Out, filepath.Join(o.Out, "jlis"), filepath.Join(o.Out, "spool")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	auth, trust, err := NewAuthority(filepath.Join(o.Out, "jlis"))
	if err != nil {
		return nil, err
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	tok, err := SetupKeys(o.Keys, o.Center, filepath.Join(o.Out, "softhsm"), o.Stdout)
	if err != nil {
		return nil, err
	}
	center, err := SetupCenterWith(ctx, CenterOptions{Bin: o.Center, Dir: filepath.Join(o.Out, "center"), CardTrust: trust, SoftHSM: tok}, "KIOSK-DEMO-0001")
	if err != nil {
		return nil, err
	}
	if err := center.Start(ctx); err != nil {
		return nil, err
	}
	defer center.Stop()

	spool := filepath.Join(o.Out, "spool")
	readerCfg := config.Reader{Kind: "virtual"}
	if o.Reader == "pcsc" {
		readerCfg = config.Reader{Kind: "pcsc", Name: "Virtual PCD"}
	}
	cfg, _, err := center.KioskConfig("KIOSK-DEMO-0001", trust, readerCfg, config.Printer{Kind: "spool", SpoolDir: spool})
	if err != nil {
		return nil, err
	}
	cards, err := virtualcard.NewDemoSet(auth)
	if err != nil {
		return nil, err
	}
	hanako, err := cards.Residents.Resident("hanako")
	if err != nil {
		return nil, err
	}

	var reader cardreader.Reader
	var slot *virtualcard.Slot
	if o.Reader == "pcsc" {
		r, err := pcsc.Open(pcsc.Options{Reader: "Virtual PCD 00 00"})
		if err != nil {
			return nil, fmt.Errorf("demo: %w (is pcscd running with vsmartcard-vpcd?)", err)
		}
		defer r.Close()
		reader = r
	} else {
		slot = virtualcard.NewSlot("virtual", true)
		reader = slot
	}
	rec := &recordingPrinter{}
	sp, err := printer.NewSpool(spool)
	if err != nil {
		return nil, err
	}
	rec.p = agent.Printer{P: sp}
	a, err := agent.New(cfg, agent.Options{Reader: reader, Printer: rec, Log: o.Log})
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() { stop(); <-done }()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = a.Client.WaitConnected(cctx)
	cancel()
	if err != nil {
		return nil, err
	}

	res := &Result{
		Domestic: filepath.Join(o.Out, "domestic.pdf"), Overseas: filepath.Join(o.Out, "overseas.pdf"),
		JWKS: filepath.Join(o.Out, "jwks.json"), Resident: filepath.Join(o.Out, "resident.json"),
		CSCA: center.CSCAFile(), Reports: map[string]*certverify.Report{}, Keys: center.KeysDescription(),
	}
	for _, run := range []struct {
		kind certificate.Kind
		out  string
	}{{certificate.Domestic, res.Domestic}, {certificate.Overseas, res.Overseas}} {
		card, _, err := cards.Card("hanako", virtualcard.Options{ExtendedLength: true})
		if err != nil {
			return nil, err
		}
		var hc headless.Card = SlotCard{Slot: slot, Card: card}
		if o.Reader == "pcsc" {
			hc = &VPCDCard{Addr: o.VPCD, Card: card, Reader: reader}
		}
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		r, err := headless.Run(sctx, a.Kiosk, hc, headless.Resident{PIN: hanako.PIN, Municipality: "012041", Kind: run.kind, Copies: 1})
		cancel()
		if err != nil {
			return nil, err
		}
		if err := r.Must(); err != nil {
			return nil, fmt.Errorf("demo: %s certificate: %w", run.kind, err)
		}
		job := rec.last()
		if job == "" {
			return nil, errors.New("demo: printer received no job")
		}
		if err := os.Rename(filepath.Join(spool, job+".pdf"), run.out); err != nil {
			return nil, err
		}
	}

	jwks, err := center.JWKS(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(res.JWKS, jwks, 0o644); err != nil {
		return nil, err
	}
	if err := writeResident(res.Resident, hanako.BirthDate, hanako.Name, hanako.RomanFamily, hanako.RomanGiven, len(hanako.Records[0].Doses), hanako.PassportNumber); err != nil {
		return nil, err
	}
	// Verify the printed documents as a recipient would.
	for _, pdf := range []string{res.Domestic, res.Overseas} {
		rep, err := verifyPDF(ctx, pdf, res.JWKS, res.CSCA)
		if err != nil {
			return res, fmt.Errorf("demo: verify %s: %w", pdf, err)
		}
		res.Reports[pdf] = rep
	}
	return res, nil
}

func verifyPDF(ctx context.Context, pdf, jwksFile, cscaFile string) (*certverify.Report, error) {
	b, err := os.ReadFile(pdf)
	if err != nil {
		return nil, err
	}
	jwks, _, err := certverify.LoadJWKS(ctx, jwksFile, nil)
	if err != nil {
		return nil, err
	}
	cscas, err := certverify.LoadCSCAs(cscaFile)
	if err != nil {
		return nil, err
	}
	rep, err := certverify.Verify(ctx, b, certverify.Options{JWKS: jwks, CSCAs: cscas})
	if err != nil {
		return rep, err
	}
	if !rep.OK() {
		return rep, errors.New("a QR code did not verify")
	}
	return rep, nil
}

func writeResident(path, birth, name, family, given string, doses int, passport string) error {
	b, err := json.MarshalIndent(map[string]any{
		"comment":        "Synthetic demo resident (assets/demo/residents.json): what the printed certificates must show.",
		"birthDate":      birth,
		"name":           name,
		"romanFamily":    family,
		"romanGiven":     given,
		"doses":          doses,
		"passportNumber": passport,
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// recordingPrinter remembers the last job name.
type recordingPrinter struct {
	p    agent.Printer
	mu   sync.Mutex
	name string
}

func (r *recordingPrinter) Print(ctx context.Context, name string, pdf []byte, copies int) error {
	if err := r.p.Print(ctx, name, pdf, copies); err != nil {
		return err
	}
	r.mu.Lock()
	r.name = name
	r.mu.Unlock()
	return nil
}

func (r *recordingPrinter) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.name
}
