package printer

import (
	"errors"
	"strings"
	"testing"

	"github.com/OpenPrinting/goipp"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		state     int
		accepting bool
		reasons   []string
		want      State
	}{
		{3, true, nil, StateReady},
		{4, true, []string{"toner-low-warning"}, StateBusy},
		{5, true, []string{"other"}, StateStopped},
		{3, false, nil, StateStopped},
		{3, true, []string{"media-empty-report"}, StatePaperOut}, // ippeveprinter's empty tray
		{3, true, []string{"media-empty"}, StatePaperOut},
		{5, true, []string{"media-needed-error"}, StatePaperOut},
		{3, true, []string{"media-low-warning"}, StateReady}, // low is not out
		{5, true, []string{"media-jam-error", "media-empty-error"}, StateJammed},
		{5, true, []string{"door-open-error"}, StateCoverOpen},
		{5, true, []string{"marker-supply-empty-error"}, StateSupplyEmpty},
		{5, true, []string{"offline-report"}, StateOffline},
		{3, true, []string{"media-jammed"}, StateReady}, // not a keyword
		{3, true, []string{"media-jam-errors"}, StateReady},
	}
	for _, tc := range tests {
		if got := classify(tc.state, tc.accepting, tc.reasons); got != tc.want {
			t.Errorf("classify(%d, %v, %v) = %v, want %v", tc.state, tc.accepting, tc.reasons, got, tc.want)
		}
	}
}

func TestStatusErr(t *testing.T) {
	want := map[State]error{
		StateReady: nil, StateBusy: nil, StatePaperOut: ErrPaperOut, StateJammed: ErrPaperJam,
		StateCoverOpen: ErrCoverOpen, StateSupplyEmpty: ErrSupplyEmpty, StateStopped: ErrPrinterStopped,
		StateOffline: ErrPrinterOffline,
	}
	for s, w := range want {
		if got := (Status{State: s}).Err(); got != w {
			t.Errorf("%v.Err() = %v, want %v", s, got, w)
		}
		if s.String() == "" || strings.HasPrefix(s.String(), "State(") {
			t.Errorf("state %d has no name", s)
		}
	}
}

func TestValidateJob(t *testing.T) {
	pdf := []byte("%PDF-1.7\n")
	tests := []struct {
		name string
		job  Job
		ok   bool
	}{
		{"request ID", Job{Name: "req-01J2Z3.a_b", PDF: pdf, Copies: 1}, true},
		{"max copies", Job{Name: "r", PDF: pdf, Copies: MaxCopies}, true},
		{"kanji name", Job{Name: "試験花子", PDF: pdf, Copies: 1}, false},
		{"space", Job{Name: "SHIKEN HANAKO", PDF: pdf, Copies: 1}, false},
		{"path", Job{Name: "../x", PDF: pdf, Copies: 1}, false},
		{"hidden", Job{Name: ".x", PDF: pdf, Copies: 1}, false},
		{"empty", Job{Name: "", PDF: pdf, Copies: 1}, false},
		{"too long", Job{Name: strings.Repeat("a", MaxNameLen+1), PDF: pdf, Copies: 1}, false},
		{"not a PDF", Job{Name: "r", PDF: []byte("hello"), Copies: 1}, false},
		{"no copies", Job{Name: "r", PDF: pdf, Copies: 0}, false},
		{"too many", Job{Name: "r", PDF: pdf, Copies: MaxCopies + 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateJob(tc.job)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidJob)) {
				t.Fatalf("ValidateJob: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && len(tc.job.Name) > 3 && strings.Contains(err.Error(), tc.job.Name) {
				t.Errorf("error repeats the job name: %v", err)
			}
		})
	}
}

// FuzzStatusFrom feeds arbitrary IPP responses (what a printer on the
// network may send) through the decoder and statusFrom: no panic, and a
// valid state.
func FuzzStatusFrom(f *testing.F) {
	seed := goipp.NewResponse(goipp.DefaultVersion, goipp.StatusOk, 1)
	seed.Printer.Add(goipp.MakeAttribute("printer-state", goipp.TagEnum, goipp.Integer(5)))
	seed.Printer.Add(goipp.MakeAttribute("printer-state-reasons", goipp.TagKeyword, goipp.String("media-empty-error")))
	seed.Printer.Add(goipp.MakeAttribute("printer-is-accepting-jobs", goipp.TagBoolean, goipp.Boolean(true)))
	seed.Printer.Add(goipp.MakeAttribute("printer-state-message", goipp.TagText, goipp.String("Load paper")))
	b, err := seed.EncodeBytes()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 1, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m goipp.Message
		if err := m.DecodeBytes(data); err != nil {
			return
		}
		st := statusFrom(m.Printer)
		if st.State < StateReady || st.State > StateOffline {
			t.Fatalf("state %d out of range", st.State)
		}
		// Round trip: re-encoding and decoding gives the same status.
		enc, err := m.EncodeBytes()
		if err != nil {
			return
		}
		var m2 goipp.Message
		if err := m2.DecodeBytes(enc); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if st2 := statusFrom(m2.Printer); st2.State != st.State {
			t.Fatalf("status changed across a round trip: %v -> %v", st.State, st2.State)
		}
	})
}
