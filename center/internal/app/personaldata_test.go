package app_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestPersonalDataInEveryField: a hostile or broken kiosk puts a resident's
// My Number, name and birth date into every field of every message type —
// as values, as field names, as the message type, as card files — and
// none of it reaches the center's log, its files or its answers' details.
func TestPersonalDataInEveryField(t *testing.T) {
	// The frame-rate limit is not what is tested here, and on a loaded
	// machine frames sent 60 ms apart can arrive in bursts: give this
	// connection room so a slow scheduler cannot close it.
	tc := startCenter(t, func(c *config.Config) {
		c.Limits.FrameRate = 1000
		c.Limits.FrameBurst = 1000
	})
	k, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	r := tc.residents.Residents[0]
	secrets := []string{r.MyNumber, r.Name, r.CardBirthDate(), r.Address}
	templates := map[string]map[string]any{
		"issue": {"requestId": "0123456789abcdef0123456789abcdef", "municipality": "012041", "kind": "domestic", "copies": 1,
			"card": map[string]any{"myNumber": "AA==", "fourItems": "AA==", "signature": "AA==", "certificate": "AA=="}},
		"outcome": {"requestId": "0123456789abcdef0123456789abcdef", "outcome": "printed", "copies": 1, "reason": "cancelled"},
		"status":  {"reader": "ok", "printer": "ok", "state": "idle"},
		"ping":    {"nonce": "n"},
		"pong":    {"nonce": "n"},
		"error":   {"requestId": "0123456789abcdef0123456789abcdef", "code": "internal_error", "message": map[string]any{"ja": "x", "en": "x"}, "detail": "d", "retryable": false},
		"hello":   {"protocolVersion": 1, "kioskId": "K-GOOD", "time": "t", "municipalities": []any{}, "feePerCopyYen": 0, "kinds": []any{}, "maxCopies": 1, "heartbeatSeconds": 1},
	}
	var frames [][]byte
	frame := func(typ string, body any) {
		b, err := json.Marshal(map[string]any{"v": 1, "type": typ, "body": body})
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	for typ, tmpl := range templates {
		for field, v := range tmpl {
			for _, sec := range secrets {
				body := clone(tmpl)
				switch v := v.(type) {
				case map[string]any:
					inner := clone(v)
					for f := range inner {
						inner[f] = sec
						if field == "card" {
							inner[f] = base64.StdEncoding.EncodeToString([]byte(sec))
						}
					}
					body[field] = inner
				default:
					body[field] = sec
				}
				frame(typ, body)
				named := clone(tmpl)
				named[sec] = 1 // the personal data as a field name
				frame(typ, named)
			}
		}
	}
	for _, sec := range secrets {
		frame(sec, map[string]any{"nonce": "n"})                                      // as the message type
		frames = append(frames, []byte(`{"v":1,"type":"ping","body":{"nonce":"`+sec)) // truncated JSON
	}
	// A reader checks every answer.
	answers := make(chan []byte, 1024)
	// Pongs would be written by the reader while the test writes frames:
	// the frames themselves keep the connection alive instead.
	k.ws.SetPingHandler(func(string) error { return nil })
	go func() {
		defer close(answers)
		for {
			_, b, err := k.ws.ReadMessage()
			if err != nil {
				return
			}
			answers <- b
		}
	}()
	for _, f := range frames {
		k.sendRaw(f)
		time.Sleep(5 * time.Millisecond)
	}
	k.send(protocol.Ping{Nonce: "alive"})
	deadline := time.After(10 * time.Second)
	for alive := false; !alive; {
		select {
		case b, ok := <-answers:
			if !ok {
				t.Fatal("the center closed the connection")
			}
			// A pong returns the kiosk's own nonce to it, by definition;
			// anything else must not carry what the kiosk sent.
			if !strings.Contains(string(b), `"type":"pong"`) {
				for _, sec := range secrets {
					if strings.Contains(string(b), sec) {
						t.Fatalf("the center echoed personal data in %s", b)
					}
				}
			}
			alive = strings.Contains(string(b), `"alive"`)
		case <-deadline:
			t.Fatal("no pong after the frames")
		}
	}
	t.Logf("%d frames sent", len(frames))
	tc.checkNoPersonalData(t)
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
