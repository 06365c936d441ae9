package localapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/agent"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow/flowtest"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
	"github.com/kioskcert/kioskcert/kiosk/internal/terminal"
)

// FuzzIntegratorAnswers sends arbitrary bodies to the routes that decode
// one, against a terminal with a payment and a print job open. The API
// must answer with a 2xx or 4xx JSON body, never fail, and accept only
// well-formed answers.
func FuzzIntegratorAnswers(f *testing.F) {
	f.Add(0, []byte(`{"result":"paid"}`))
	f.Add(0, []byte(`{"result":"failed","reason":"declined"}`))
	f.Add(1, []byte(`{"result":"printed"}`))
	f.Add(1, []byte(`{"result":"failed","reason":"paper_out"}`))
	f.Add(2, []byte(`{"state":"paper-out"}`))
	f.Add(3, []byte(``))
	f.Add(0, []byte(`{"result":"paid"} {"result":"failed"}`))
	f.Add(1, []byte(`{"result":"printed","reason":"","extra":1}`))
	f.Add(0, []byte("\xff\xfe{"))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cards := flowtest.Cards(f)
	kiosk, err := flow.New(flow.Config{Reader: virtualcard.NewSlot("fuzz", true), Verifier: cards.Verifier,
		Center: flowtest.NewCenter(cards), Renderer: flowtest.Renderer(f), Printer: agent.Printer{P: printerNone{}}, Payment: terminal.New(terminal.Config{Log: quiet}), Log: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, route int, body []byte) {
		term := terminal.New(terminal.Config{Log: quiet})
		ch, cancelStream := term.Subscribe()
		defer cancelStream()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		payDone := make(chan error, 1)
		go func() { payDone <- term.Authorize(ctx, "0123456789abcdef0123456789abcdef", 120) }()
		printDone := make(chan error, 1)
		go func() {
			printDone <- term.Print(ctx, printer.Job{Name: "kioskcert-0123456789abcdef0123456789abcdef", PDF: []byte("%PDF-1.7\n%%EOF\n"), Copies: 1})
		}()
		var payID, jobID string
		for payID == "" || jobID == "" {
			ev := <-ch
			if ev.Payment != nil {
				payID = ev.Payment.ID
			}
			if ev.PrintJob != nil {
				jobID = ev.PrintJob.ID
			}
		}
		srv, err := localapi.New(localapi.Config{Listen: "127.0.0.1:0", Kiosk: kiosk, Token: integToken, Integrator: &localapi.Integrator{Terminal: term}, Log: quiet})
		if err != nil {
			t.Fatal(err)
		}
		paths := []struct{ method, path string }{
			{"POST", "/api/v1/integrator/payments/" + payID},
			{"POST", "/api/v1/integrator/print-jobs/" + jobID},
			{"PUT", "/api/v1/integrator/printer"},
			{"POST", "/api/v1/integrator/session/cancel"},
		}
		p := paths[uint(route)%uint(len(paths))]
		req := httptest.NewRequest(p.method, p.path, bytes.NewReader(body))
		req.Host = "127.0.0.1:8800"
		req.Header.Set("Authorization", "Bearer "+integToken)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s %q: %d %s", p.method, p.path, body, rec.Code, rec.Body)
		}
		if rec.Code < 300 {
			var a struct{ Result, Reason, State string }
			if err := json.Unmarshal(body, &a); err != nil && p.method == "POST" && p.path != paths[3].path {
				t.Fatalf("accepted an undecodable body %q", body)
			}
			switch p.path {
			case paths[0].path:
				if !slices.Contains([]string{"paid", "failed"}, a.Result) {
					t.Fatalf("accepted payment answer %q", body)
				}
			case paths[1].path:
				// "printed" is refused too: the PDF was never fetched.
				if a.Result != "failed" {
					t.Fatalf("accepted print report %q", body)
				}
			}
		}
		cancel()
		<-payDone
		<-printDone
	})
}

// printerNone is a printer the fuzz kiosk never uses.
type printerNone struct{}

func (printerNone) Print(context.Context, printer.Job) error { return printer.ErrPrinterOffline }
func (printerNone) Status(context.Context) (printer.Status, error) {
	return printer.Status{State: printer.StateOffline}, nil
}
