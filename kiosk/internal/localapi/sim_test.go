package localapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/flow/flowtest"
	"github.com/kioskcert/kioskcert/kiosk/internal/localapi"
	"github.com/kioskcert/kioskcert/kiosk/internal/payment"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
)

func TestSimPayment(t *testing.T) {
	ctx := context.Background()
	t.Run("auto", func(t *testing.T) {
		p := localapi.NewSimPayment(true)
		if err := p.Authorize(ctx, "r1", 120); err != nil {
			t.Fatal(err)
		}
		if _, pending := p.Pending(); pending {
			t.Fatal("auto mode left a payment waiting")
		}
		if err := p.Capture(ctx, "r1"); err != nil || p.Ledger.CapturedYen() != 120 {
			t.Fatalf("capture: %v, captured ¥%d", err, p.Ledger.CapturedYen())
		}
	})
	t.Run("approve and decline", func(t *testing.T) {
		p := localapi.NewSimPayment(false)
		if err := p.Decide(true); !errors.Is(err, localapi.ErrNoPayment) {
			t.Fatalf("Decide with nothing waiting: %v", err)
		}
		for _, approve := range []bool{true, false} {
			done := make(chan error, 1)
			go func() { done <- p.Authorize(ctx, "r2", 240) }()
			waitPending(t, p, 240)
			if err := p.Decide(approve); err != nil {
				t.Fatal(err)
			}
			err := <-done
			if approve && err != nil {
				t.Fatalf("approved payment: %v", err)
			}
			if !approve && !errors.Is(err, payment.ErrDeclined) {
				t.Fatalf("declined payment: %v, want payment.ErrDeclined", err)
			}
		}
		if err := p.Void(ctx, "r2"); err != nil {
			t.Fatalf("void the approved one: %v", err)
		}
		if p.Ledger.CapturedYen() != 0 {
			t.Fatal("a voided payment was charged")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		p := localapi.NewSimPayment(false)
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := p.Authorize(cctx, "r3", 120); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Authorize past its deadline: %v", err)
		}
		if _, pending := p.Pending(); pending {
			t.Fatal("a payment that timed out is still waiting")
		}
	})
}

func waitPending(t *testing.T, p *localapi.SimPayment, amount int) {
	t.Helper()
	for range 200 {
		if got, ok := p.Pending(); ok {
			if got != amount {
				t.Fatalf("pending ¥%d, want ¥%d", got, amount)
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no payment waiting")
}

type countingPrinter struct{ jobs int }

func (c *countingPrinter) Print(context.Context, string, []byte, int) error { c.jobs++; return nil }

func TestSimPrinter(t *testing.T) {
	inner := &countingPrinter{}
	p := &localapi.SimPrinter{P: inner}
	tests := []struct {
		fault string
		want  error
	}{
		{localapi.FaultPaperOut, printer.ErrPaperOut},
		{localapi.FaultJam, printer.ErrPaperJam},
		{"", nil},
	}
	for _, tc := range tests {
		t.Run("fault "+tc.fault, func(t *testing.T) {
			if err := p.FailNext(tc.fault); err != nil {
				t.Fatal(err)
			}
			before := inner.jobs
			err := p.Print(context.Background(), "job", []byte("%PDF-"), 1)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Print: %v, want %v", err, tc.want)
			}
			if wantJobs := before + map[bool]int{true: 1, false: 0}[tc.want == nil]; inner.jobs != wantJobs {
				t.Fatalf("printer got %d jobs, want %d", inner.jobs, wantJobs)
			}
			// A fault is for one print only.
			if err := p.Print(context.Background(), "job", []byte("%PDF-"), 1); err != nil {
				t.Fatalf("the print after the fault: %v", err)
			}
		})
	}
	if err := p.FailNext("fire"); err == nil {
		t.Fatal("an unknown fault was accepted")
	}
}

// TestSimRoutes drives the panel's API: place and take cards, decide the
// payment, fail the next print.
func TestSimRoutes(t *testing.T) {
	p := newPageKiosk(t, true)
	const host, self, js = "127.0.0.1:8800", "http://127.0.0.1:8800", "application/json"
	state := func() map[string]any {
		w := p.do("GET", "/sim/api/state", host, "", "", "")
		if w.Code != 200 {
			t.Fatalf("state: HTTP %d", w.Code)
		}
		var st map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := state()
	cards, _ := st["cards"].([]any)
	if len(cards) != len(flowtest.Cards(t).Residents.Residents)+1 {
		t.Fatalf("panel offers %d cards, want every demo resident and a foreign card", len(cards))
	}
	if p.do("GET", "/sim/", host, "", "", "").Code != 200 {
		t.Fatal("no panel page in simulator mode")
	}
	tests := []struct {
		name, path, origin, body string
		status                   int
		inserted                 string
	}{
		{"place a card", "/sim/api/card", self, `{"id":"taro"}`, 204, "taro"},
		{"replace it", "/sim/api/card", self, `{"id":"foreign"}`, 204, "foreign"},
		{"unknown card", "/sim/api/card", self, `{"id":"nobody"}`, 400, "foreign"},
		{"from another origin", "/sim/api/card", "http://attacker.example", `{"id":"taro"}`, 403, "foreign"},
		{"take it off", "/sim/api/card", self, `{"id":""}`, 204, ""},
		{"unknown field", "/sim/api/card", self, `{"card":"taro"}`, 400, ""},
		{"nothing to approve", "/sim/api/payment", self, `{"approve":true}`, 409, ""},
		{"auto mode", "/sim/api/payment", self, `{"auto":true}`, 204, ""},
		{"fail the next print", "/sim/api/printer", self, `{"failNext":"jam"}`, 204, ""},
		{"unknown fault", "/sim/api/printer", self, `{"failNext":"fire"}`, 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if w := p.do("POST", tc.path, host, tc.origin, js, tc.body); w.Code != tc.status {
				t.Fatalf("HTTP %d (%s), want %d", w.Code, w.Body, tc.status)
			}
			if got := p.sim.Inserted(); got != tc.inserted {
				t.Fatalf("card on the reader %q, want %q", got, tc.inserted)
			}
		})
	}
	st = state()
	pay, _ := st["payment"].(map[string]any)
	prn, _ := st["printer"].(map[string]any)
	if pay["auto"] != true || prn["failNext"] != "jam" {
		t.Fatalf("state %v, want auto payment and a jam next", st)
	}
}
