package refusal

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/pkg/protocol"
)

func TestPublicNeverCarriesTheCause(t *testing.T) {
	secret := errors.New("record 123456789018 of 試験 花子 is corrupt")
	tests := []struct {
		name       string
		err        error
		wantCode   protocol.Code
		wantDetail string
		retryable  bool
	}{
		{"refusal", New(protocol.CodeNoRecord, secret), protocol.CodeNoRecord, "", false},
		{"wrapped refusal", fmt.Errorf("issuance: step 6: %w", New(protocol.CodeNoRecord, secret)), protocol.CodeNoRecord, "", false},
		{"public detail", WithDetail(protocol.CodeCardInvalid, "four-item hash mismatch", secret), protocol.CodeCardInvalid, "four-item hash mismatch", false},
		{"retryable", Errorf(protocol.CodeUnavailable, "deadline: %w", secret), protocol.CodeUnavailable, "", true},
		{"plain error is internal", secret, protocol.CodeInternal, "", true},
		{"nil cause", New(protocol.CodeRequestIDReused, nil), protocol.CodeRequestIDReused, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Public("0123456789abcdef0123456789abcdef", tc.err)
			if p.Code != tc.wantCode || p.Detail != tc.wantDetail || p.RequestID != "0123456789abcdef0123456789abcdef" {
				t.Errorf("Public = %+v, want code %s detail %q", p, tc.wantCode, tc.wantDetail)
			}
			if p.Message != tc.wantCode.Text() {
				t.Errorf("Public message = %v, want the code's standard text", p.Message)
			}
			if b, _ := protocol.Encode(p); strings.Contains(string(b), "花子") || strings.Contains(string(b), "123456789018") {
				t.Errorf("the cause reached the wire: %s", b)
			}
			if Retryable(tc.err) != tc.retryable {
				t.Errorf("Retryable = %v, want %v", Retryable(tc.err), tc.retryable)
			}
		})
	}
}

func TestErrorKeepsTheCauseForLogsAndErrorsIs(t *testing.T) {
	cause := errors.New("store: closed")
	err := fmt.Errorf("wrap: %w", New(protocol.CodeUnavailable, cause))
	if !errors.Is(err, cause) {
		t.Error("errors.Is does not reach the cause")
	}
	if !strings.Contains(err.Error(), "store: closed") || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("Error() = %q, want code and cause", err.Error())
	}
	if code, ok := CodeOf(err); !ok || code != protocol.CodeUnavailable {
		t.Errorf("CodeOf = %s, %v", code, ok)
	}
}
