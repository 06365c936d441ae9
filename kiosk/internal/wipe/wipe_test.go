package wipe

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/pkg/certificate"
)

func TestArenaOwnsAndWipes(t *testing.T) {
	var c certificate.Certificate
	in := `{"id":"ABCDEFGHJK12","kind":"domestic","holder":{"name":"試験　花子","familyName":"試験","birthDate":"1985-04-02","sex":"2","passportNumber":"TK1234567"},"doses":[{"number":1,"lot":"FA5765","date":"2021-06-14"}],"shc":"shc:/0123"}`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	// Constants are safe too: Own copies them rather than writing to them.
	c.Doses[0].Country = "JPN"
	var a Arena
	a.Own(&c)
	// A snapshot that kept references (as a screen might).
	name, passport, lot, country := c.Holder.Name, c.Holder.PassportNumber, c.Doses[0].Lot, c.Doses[0].Country
	if name != "試験　花子" || country != "JPN" {
		t.Fatal("Own changed the values")
	}
	if a.Size() == 0 {
		t.Fatal("arena holds nothing")
	}
	a.Wipe()
	for label, s := range map[string]string{"name": name, "passport": passport, "lot": lot, "country": country} {
		if strings.Trim(s, "\x00") != "" {
			t.Errorf("%s still readable after wipe: %q", label, s)
		}
	}
	if "JPN" != "J"+"PN" {
		t.Fatal("a constant was overwritten")
	}
	a.Own(nil)
	a.Own(42)
}
