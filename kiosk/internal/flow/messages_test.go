package flow

import (
	"testing"

	"github.com/kioskcert/kioskcert/assets/ui"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestScreenHasEveryMessage: every code a session can show (the protocol's
// and the kiosk's own) has a title and a detail in every language of the
// touch screen, so the screen never falls back to the agent's plain text
// (no furigana) or repeats the title.
func TestScreenHasEveryMessage(t *testing.T) {
	codes := []string{}
	for _, c := range protocol.Codes() {
		codes = append(codes, string(c))
	}
	for _, m := range []*Message{msgNotMyNumberCard, msgPINBlocked, msgCardRemoved, msgCardRead, msgCardInvalid,
		msgCenterDown, msgBinding, msgPaymentFailed, msgRenderFailed, msgTimeout, msgCancelled, msgDomesticOffer} {
		codes = append(codes, m.Code)
	}
	langs, err := ui.Languages()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range langs {
		msgs, err := ui.Messages(l.Code)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range codes {
			if msgs["error.title."+c] == "" {
				t.Errorf("%s: no error.title.%s", l.Code, c)
			}
			if _, ok := msgs["error.detail."+c]; !ok {
				t.Errorf("%s: no error.detail.%s (may be empty when the title says it all)", l.Code, c)
			}
		}
	}
}
