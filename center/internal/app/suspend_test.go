package app_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestSuspendCutsOffAtOnce: an operator suspends a kiosk on the running
// center; within a second its open connection closes and its reconnection
// is refused at the handshake. Reactivated, it settles what it printed.
func TestSuspendCutsOffAtOnce(t *testing.T) {
	tc := startCenter(t)
	k, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	req, m := k.issue("012041", certificate.Domestic, tc.card(t, "hanako", ""))
	if m.Type() != protocol.TypeCertificate {
		t.Fatalf("issue: %#v", m)
	}
	op := admin.Actor{Operator: "op-test", Source: "test"}
	start := time.Now()
	if _, err := tc.center.Admin.SetKioskStatus(context.Background(), op, "K-GOOD", store.KioskSuspended, "investigation"); err != nil {
		t.Fatal(err)
	}
	k.ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _, err = k.ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("suspended kiosk's connection read %v, want closed", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the connection closed %v after the suspension", d)
	}
	if _, err := tc.dial(t, tc.tlsFor(t, "K-GOOD")); err == nil {
		t.Fatal("a suspended kiosk reconnected")
	}
	// Reactivated, it may settle what it printed.
	if _, err := tc.center.Admin.SetKioskStatus(context.Background(), op, "K-GOOD", store.KioskActive, ""); err != nil {
		t.Fatal(err)
	}
	k2, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	k2.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1})
	if _, ok := k2.read().(protocol.Ack); !ok {
		t.Fatal("outcome after reactivation not acknowledged")
	}
}
