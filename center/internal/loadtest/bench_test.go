package loadtest

import (
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// BenchmarkIssueWebsocket measures one kiosk's full round trip through a
// real center on loopback (app.Open and Serve: mutual TLS 1.3, websocket,
// strict decoding, the pending cache, issuance with synced bbolt writes):
// Issue → certificate → Outcome "printed" → Ack, one request at a time on
// one connection. The client's encoding and decoding run on the same CPUs.
func BenchmarkIssueWebsocket(b *testing.B) {
	s := selfHost(b, SelfHostOptions{Kiosks: 1, CardsPerKiosk: 4, Kinds: []certificate.Kind{certificate.Domestic, certificate.Overseas}})
	byKind := map[certificate.Kind]Card{}
	for _, c := range s.Cards[0] {
		if _, ok := byKind[c.Kind]; !ok {
			byKind[c.Kind] = c
		}
	}
	for _, kind := range []certificate.Kind{certificate.Domestic, certificate.Overseas} {
		card, ok := byKind[kind]
		if !ok {
			b.Fatalf("no %s card", kind)
		}
		b.Run(string(kind), func(b *testing.B) {
			c, err := dial(s.Addr(), s.Kiosks[0], 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.close()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: card.Municipality, Kind: card.Kind, Copies: 1, Card: card.Raw}
				if err := c.send(req); err != nil {
					b.Fatal(err)
				}
				resp, perr, err := c.answer(req.RequestID)
				if err != nil || perr != nil {
					b.Fatal(err, perr)
				}
				if err := checkBinding(req, card, resp); err != nil {
					b.Fatal(err)
				}
				if err := c.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: 1}); err != nil {
					b.Fatal(err)
				}
				if perr, err := c.ack(req.RequestID); err != nil || perr != nil {
					b.Fatal(err, perr)
				}
			}
		})
	}
}
