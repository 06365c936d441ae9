package centerclient

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// testChain stands for a certificate chain: the client passes it on
// without reading it.
const testChain = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

// testCSR is a DER SEQUENCE, all the client checks of a CSR.
var testCSR = []byte{0x30, 0x03, 0x02, 0x01, 0x01}

func (tc *testCenter) setRenew(f func(sc *serverConn, r protocol.Renew)) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.onRenew = f
}

func (tc *testCenter) renewals() []protocol.Renew {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var out []protocol.Renew
	for _, r := range tc.received {
		if m, ok := r.msg.(protocol.Renew); ok {
			out = append(out, m)
		}
	}
	return out
}

// TestRenew: the answer to a renewal, a refusal of it, and a renewal lost
// with its connection, which is sent again on the next.
func TestRenew(t *testing.T) {
	for _, tt := range []struct {
		name     string
		answer   func(tc *testCenter) func(sc *serverConn, r protocol.Renew)
		code     protocol.Code // "": renewed
		renewals int
	}{
		{name: "renewed", answer: func(*testCenter) func(*serverConn, protocol.Renew) { return nil }, renewals: 1},
		{name: "refused", answer: func(tc *testCenter) func(*serverConn, protocol.Renew) {
			return func(sc *serverConn, r protocol.Renew) {
				sc.send(tc.t, protocol.NewError(r.RequestID, protocol.CodeKioskNotAllowed, "renew: this kiosk is not active"))
			}
		}, code: protocol.CodeKioskNotAllowed, renewals: 1},
		{name: "bad csr", answer: func(tc *testCenter) func(*serverConn, protocol.Renew) {
			return func(sc *serverConn, r protocol.Renew) {
				sc.send(tc.t, protocol.NewError(r.RequestID, protocol.CodeBadMessage, ""))
			}
		}, code: protocol.CodeBadMessage, renewals: 1},
		{name: "lost with the connection", answer: func(tc *testCenter) func(*serverConn, protocol.Renew) {
			return func(sc *serverConn, r protocol.Renew) {
				if sc.n == 1 {
					sc.cut()
					return
				}
				sc.send(tc.t, protocol.Renewed{RequestID: r.RequestID, Chain: testChain})
			}
		}, renewals: 2},
		{name: "unavailable, then renewed", answer: func(tc *testCenter) func(*serverConn, protocol.Renew) {
			n := 0
			return func(sc *serverConn, r protocol.Renew) {
				if n++; n == 1 {
					sc.send(tc.t, protocol.NewError(r.RequestID, protocol.CodeUnavailable, ""))
					return
				}
				sc.send(tc.t, protocol.Renewed{RequestID: r.RequestID, Chain: testChain})
			}
		}, renewals: 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCenter(t)
			tc.setRenew(tt.answer(tc))
			c := tc.newClient(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			chain, err := c.Renew(ctx, testCSR)
			if tt.code == "" {
				if err != nil || chain != testChain {
					t.Fatalf("Renew = %q, %v", chain, err)
				}
			} else {
				var e *protocol.Error
				if !errors.As(err, &e) || e.Code != tt.code {
					t.Fatalf("Renew error %v, want %s", err, tt.code)
				}
			}
			rs := tc.renewals()
			if len(rs) != tt.renewals {
				t.Fatalf("the center received %d renewals, want %d", len(rs), tt.renewals)
			}
			for _, r := range rs {
				if r.RequestID != rs[0].RequestID || string(r.CSR) != string(testCSR) {
					t.Fatalf("renewals differ: %+v", rs)
				}
			}
		})
	}
}

// TestReconnect: Reconnect ends the connection and the client is back on
// a new one.
func TestReconnect(t *testing.T) {
	tc := newTestCenter(t)
	c := tc.newClient(t)
	c.Reconnect()
	awaitReconnect(t, tc, c, 2)
	if n := tc.connCount(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}
