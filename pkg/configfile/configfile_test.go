package configfile

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDecodeStrict(t *testing.T) {
	type cfg struct {
		Timeout Duration `json:"timeout"`
		Name    string   `json:"name"`
	}
	tests := []struct {
		in      string
		wantErr bool
	}{
		{`{"timeout":"15s","name":"a"}`, false},
		{`{"timeout":"15s","nmae":"a"}`, true},
		{`{"timeout":15}`, true},
		{`{"timeout":"soon"}`, true},
		{`{"name":"a"} {}`, true},
		{`{"name":"a"}}`, true},
		{``, true},
	}
	for _, tt := range tests {
		var c cfg
		err := DecodeStrict([]byte(tt.in), &c)
		if (err != nil) != tt.wantErr {
			t.Errorf("DecodeStrict(%s) = %v", tt.in, err)
		}
		if err == nil && c.Timeout.Duration != 15*time.Second {
			t.Errorf("timeout %v", c.Timeout)
		}
	}
	b, _ := json.Marshal(Duration{90 * time.Second})
	if string(b) != `"1m30s"` {
		t.Fatalf("marshal: %s", b)
	}
}
