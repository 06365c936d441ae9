package ledgercsv

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
)

// FuzzParse feeds arbitrary files to Parse. Whatever the input: no panic; a
// rejection is an *Error whose message is ASCII and quotes no long digit
// run (no My Number); an acceptance yields valid records that survive
// Write → Parse unchanged.
func FuzzParse(f *testing.F) {
	good := demoCSV(f, asahikawa)
	header := strings.Join(Columns, ",") + "\n"
	f.Add(good)
	f.Add(append([]byte{0xEF, 0xBB, 0xBF}, good...))
	f.Add(bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")))
	f.Add([]byte(header))
	f.Add([]byte(""))
	f.Add([]byte(header + "012041,314159265353,1,1,a,,,,1985-04-02,2,,,1,2021-06-14,comirnaty,m,L,t\n"))
	f.Add([]byte(header + "\"012041\",\"314159265352\",\"1\",\"\",\"a,b\",,,,1985-04-02,2,,,1,2021-06-14,comirnaty,m,L,t\n"))
	f.Add([]byte(header + "012041,3141\"59265352\n"))
	f.Add(demoCSV(f, sapporo))
	f.Add(toCP932(f, good))
	f.Add([]byte("action," + header + "remove,012041,314159265352" + strings.Repeat(",", len(Columns)-2) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A changes file: whatever comes back obeys the same rules.
		sets, removes, err := parse(bytes.NewReader(data), asahikawa, Options{MaxRows: 1000, Mode: records.ModeChanges})
		if err != nil {
			checkRejection(t, err)
		} else {
			for _, e := range sets {
				if err := e.Record.Validate(); err != nil {
					t.Fatalf("accepted an invalid record: %v", err)
				}
			}
			for _, mn := range removes {
				if mynumber.Validate(mn) != nil {
					t.Fatal("accepted a removal of an invalid My Number")
				}
			}
		}

		entries, err := Parse(bytes.NewReader(data), asahikawa, Options{MaxRows: 1000})
		if err != nil {
			checkRejection(t, err)
			return
		}
		if len(entries) == 0 {
			t.Fatal("accepted a file without entries")
		}
		for _, e := range entries {
			if err := e.Record.Validate(); err != nil {
				t.Fatalf("accepted an invalid record: %v", err)
			}
		}
		var out bytes.Buffer
		if err := Write(&out, entries); err != nil {
			t.Fatal(err)
		}
		again, err := Parse(&out, asahikawa, Options{MaxRows: 1000})
		if err != nil {
			t.Fatalf("Parse(Write(entries)): %v", err)
		}
		if !reflect.DeepEqual(again, entries) {
			t.Fatal("Write → Parse changed the entries")
		}
	})
}

// checkRejection: a rejection is an *Error with problems, ASCII, quoting
// no long digit run (no My Number).
func checkRejection(t *testing.T, err error) {
	t.Helper()
	var perr *Error
	if !errors.As(err, &perr) || len(perr.Problems) == 0 {
		t.Fatalf("rejection is not an *Error with problems: %v", err)
	}
	msg := err.Error()
	for i := 0; i < len(msg); i++ {
		if msg[i] >= 0x80 {
			t.Fatalf("error message is not ASCII: %q", msg)
		}
	}
	if longDigits.MatchString(msg) {
		t.Fatalf("error message quotes a long digit run: %q", msg)
	}
}
