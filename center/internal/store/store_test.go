package store

import (
	"reflect"
	"sort"
	"testing"
	"time"
)

// The audit event must not grow a field where personal data could go. This
// list is the review gate: adding a field means changing it here, on purpose.
func TestEventHasNoPersonalDataFields(t *testing.T) {
	allowed := []string{
		"Seq", "Time", "Type", "KioskID", "StoreCode", "Municipality", "Kind",
		"Copies", "CertificateID", "RequestID", "Result", "Latency",
		// Operator actions: the operator's ID and the address it came
		// from, both restricted to identifier characters.
		"Operator", "Source",
		// The object of an operator action (an operator, token or key
		// ID), restricted to identifier characters.
		"Object",
		// The hash chain: hex digests.
		"PrevHash", "Hash",
	}
	var got []string
	typ := reflect.TypeFor[Event]()
	for i := range typ.NumField() {
		got = append(got, typ.Field(i).Name)
	}
	sort.Strings(got)
	sort.Strings(allowed)
	if !reflect.DeepEqual(got, allowed) {
		t.Errorf("Event fields = %v, want exactly %v", got, allowed)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Event](), reflect.TypeFor[Kiosk](), reflect.TypeFor[Revocation](), reflect.TypeFor[Municipality](), reflect.TypeFor[Request]()} {
		for i := range typ.NumField() {
			switch typ.Field(i).Name {
			case "MyNumber", "Name", "BirthDate", "Address", "PassportNumber", "Holder", "PIN":
				t.Errorf("%s has a personal data field %s", typ.Name(), typ.Field(i).Name)
			}
		}
	}
}

func TestSettlementDay(t *testing.T) {
	tests := []struct {
		at   time.Time
		want string
	}{
		{time.Date(2024, 4, 1, 14, 59, 59, 999999999, time.UTC), "2024-04-01"},
		{time.Date(2024, 4, 1, 15, 0, 0, 0, time.UTC), "2024-04-02"},
		{time.Date(2024, 12, 31, 23, 0, 0, 0, time.UTC), "2025-01-01"},
		{time.Date(2024, 4, 1, 0, 0, 0, 0, time.FixedZone("JST", 9*3600)), "2024-04-01"},
	}
	for _, tc := range tests {
		t.Run(tc.at.String(), func(t *testing.T) {
			if got := SettlementDay(tc.at); got != tc.want {
				t.Errorf("SettlementDay = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestTimeNormalises(t *testing.T) {
	in := time.Date(2024, 4, 1, 9, 0, 0, 123456789, time.FixedZone("JST", 9*3600))
	got := Time(in)
	if got.Location() != time.UTC || got.Nanosecond() != 123456000 || !got.Equal(in.Truncate(time.Microsecond)) {
		t.Errorf("Time(%v) = %v", in, got)
	}
	if !Time(time.Time{}).IsZero() {
		t.Error("Time(zero) is not zero")
	}
}

func TestEventQueryLimit(t *testing.T) {
	tests := []struct{ in, want int }{{0, DefaultEventLimit}, {-5, DefaultEventLimit}, {10, 10}, {MaxEventLimit + 1, MaxEventLimit}}
	for _, tc := range tests {
		if got := (EventQuery{Limit: tc.in}).EffectiveLimit(); got != tc.want {
			t.Errorf("EffectiveLimit(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestKioskStatusChange(t *testing.T) {
	tests := []struct {
		from, to KioskStatus
		reason   string
		ok       bool
	}{
		{KioskActive, KioskSuspended, "maintenance", true},
		{KioskSuspended, KioskActive, "", true},
		{KioskActive, KioskRevoked, "stolen", true},
		{KioskActive, KioskSuspended, "", false},
		{KioskRevoked, KioskActive, "", false},
		{KioskRevoked, KioskRevoked, "again", false},
		{KioskActive, "paused", "x", false},
	}
	for _, tc := range tests {
		t.Run(string(tc.from)+"-"+string(tc.to), func(t *testing.T) {
			if err := CheckKioskStatusChange(tc.from, tc.to, tc.reason); (err == nil) != tc.ok {
				t.Errorf("CheckKioskStatusChange = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
