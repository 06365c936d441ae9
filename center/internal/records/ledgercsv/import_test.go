package ledgercsv

import (
	"bytes"
	"context"
	"errors"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv/demoledger"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The CP932 fixture imports exactly as the UTF-8 one, detected or named.
func TestImportCP932(t *testing.T) {
	want, err := Parse(bytes.NewReader(readFixture(t, "ledger-012041.csv")), asahikawa, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []Encoding{EncodingAuto, EncodingCP932} {
		v, closeDB := newVault(t, filepath.Join(t.TempDir(), "records.db"))
		defer closeDB()
		res, err := Import(t.Context(), v, bytes.NewReader(readFixture(t, "ledger-012041-cp932.csv")), asahikawa, "op-sato", Options{Mode: records.ModeFull, Encoding: enc})
		if err != nil {
			t.Fatalf("encoding %q: %v", enc, err)
		}
		if res.Persons != 6 || res.Doses != 17 {
			t.Errorf("encoding %q: %+v", enc, res)
		}
		for _, e := range want {
			got, err := v.Lookup(t.Context(), asahikawa, e.MyNumber)
			if err != nil || !reflect.DeepEqual(got, e.Record) {
				t.Errorf("encoding %q: a record differs from the UTF-8 file's (%v)", enc, err)
			}
		}
	}
	// Named UTF-8, the CP932 file is rejected by row and column.
	_, err = Parse(bytes.NewReader(readFixture(t, "ledger-012041-cp932.csv")), asahikawa, Options{Encoding: EncodingUTF8})
	var perr *Error
	if !errors.As(err, &perr) || perr.Problems[0].Row != 2 || perr.Problems[0].Column != ColName || !strings.Contains(perr.Problems[0].Problem, "UTF-8") {
		t.Errorf("CP932 read as UTF-8: %v", err)
	}
}

func TestDetectEncoding(t *testing.T) {
	utf := readFixture(t, "ledger-012041.csv")
	sjis := readFixture(t, "ledger-012041-cp932.csv")
	broken := bytes.Replace(bytes.Clone(utf), []byte("試験"), []byte{0xff, 0xfe, 0xfd}, 1) // one damaged name
	tests := []struct {
		name   string
		window []byte
		want   Encoding
	}{
		{"UTF-8", utf, EncodingUTF8},
		{"CP932", sjis, EncodingCP932},
		{"ASCII only", []byte(strings.Join(Columns, ",") + "\n"), EncodingUTF8},
		{"UTF-8 with one damaged name stays UTF-8", broken, EncodingUTF8},
		{"bytes that are neither", []byte("a,\x80\x80\xff\n"), EncodingUTF8},
		{"half-width katakana in CP932", []byte("a,\xbc\xb9\xdd\n"), EncodingCP932},
	}
	for _, tc := range tests {
		if got := detect(tc.window, false); got != tc.want {
			t.Errorf("%s: detected %q, want %q", tc.name, got, tc.want)
		}
	}
	// A window cut inside a character does not change the answer.
	if got := detect(sjis[:len(sjis)/2+1], true); got != EncodingCP932 {
		t.Errorf("truncated CP932 window: %q", got)
	}
	if got := detect(utf[:len(utf)/2+1], true); got != EncodingUTF8 {
		t.Errorf("truncated UTF-8 window: %q", got)
	}
	for _, s := range []string{"auto", "utf-8", "cp932", "Shift_JIS", "windows-31j"} {
		if _, err := ParseEncoding(s); err != nil {
			t.Errorf("ParseEncoding(%q): %v", s, err)
		}
	}
	if _, err := ParseEncoding("euc-jp"); err == nil {
		t.Error("ParseEncoding accepted euc-jp")
	}
}

// Problems only the whole file shows (a person's rows apart, a resident
// number of two persons) are found by the streaming import too, by row.
func TestImportCrossRowProblems(t *testing.T) {
	rows := readRows(t, demoCSV(t, asahikawa))
	apart := append([][]string{}, rows[:4]...) // header, hanako 1-2, taro 1
	apart = append(apart, rows[10:14]...)      // takasaki, ichiro
	apart = append(apart, rows[4:10]...)       // taro 2-7, after the others
	resident := readRows(t, demoCSV(t, asahikawa))
	for i := 11; i <= 12; i++ { // takasaki takes hanako's resident number
		resident[i-1][ci(t, ColResidentNumber)] = resident[1][ci(t, ColResidentNumber)]
	}
	both := readRows(t, writeRows(t, apart))
	both[2][ci(t, ColSex)] = "7" // and a bad row
	tests := []struct {
		name string
		file []byte
		want []RowError
	}{
		{"rows of a person apart", writeRows(t, apart), []RowError{{9, ColMyNumber, samePerson(4)}}},
		{"resident number of two persons", writeRows(t, resident), []RowError{{11, ColResidentNumber, sameResident(2)}}},
		{"a bad row and rows apart", writeRows(t, both), []RowError{{3, ColSex, "differs from row 2 of the same my_number"}, {9, ColMyNumber, samePerson(4)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, closeDB := newVault(t, filepath.Join(t.TempDir(), "records.db"))
			defer closeDB()
			_, err := Import(t.Context(), v, bytes.NewReader(tc.file), asahikawa, "op-sato", full)
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Import: %v", err)
			}
			if !reflect.DeepEqual(perr.Problems, tc.want) {
				t.Errorf("problems %+v, want %+v", perr.Problems, tc.want)
			}
			if c, _ := v.Counts(t.Context()); len(c) != 0 {
				t.Errorf("a rejected file left %+v", c)
			}
			// Parse (in memory) finds the same.
			_, err = Parse(bytes.NewReader(tc.file), asahikawa, Options{})
			if !errors.As(err, &perr) || !reflect.DeepEqual(perr.Problems, tc.want) {
				t.Errorf("Parse: %v", err)
			}
		})
	}
}

func TestImportChangesFile(t *testing.T) {
	ctx := t.Context()
	v, closeDB := newVault(t, filepath.Join(t.TempDir(), "records.db"))
	defer closeDB()
	changes := readFixture(t, "changes-011002.csv")
	if _, err := Import(ctx, v, bytes.NewReader(changes), sapporo, "op-sato", Options{Mode: records.ModeChanges}); !errors.Is(err, records.ErrNoRegion) {
		t.Fatalf("changes before the full ledger: %v", err)
	}
	if _, err := Import(ctx, v, bytes.NewReader(demoCSV(t, sapporo)), sapporo, "op-sato", full); err != nil {
		t.Fatal(err)
	}
	res, err := Import(ctx, v, bytes.NewReader(changes), sapporo, "op-sato", Options{Mode: records.ModeChanges})
	if err != nil {
		t.Fatal(err)
	}
	if res.Persons != 1 || res.Replaced != 1 || res.Removed != 2 || res.Added != 0 || res.Mode != records.ModeChanges {
		t.Errorf("Import = %+v", res)
	}
	entries, _ := demoledger.FromDemo(demoData(t), sapporo)
	for _, e := range entries {
		got, err := v.Lookup(ctx, sapporo, e.MyNumber)
		switch e.Record.Name {
		case "試験　一郎":
			if err != nil || got.Flags.MovedOutOn != "2021-11-15" {
				t.Errorf("ichiro after the changes: %+v, %v", got.Flags, err)
			}
			if _, blocks := got.Flags.CounterOnlyReason(); blocks {
				t.Error("moving out sends the person to the counter")
			}
		default:
			if !errors.Is(err, records.ErrNoRecord) {
				t.Errorf("removed person: %v", err)
			}
		}
	}
	// A full ledger with an action column, and a changes file without,
	// are refused before anything is read.
	_, err = Import(ctx, v, bytes.NewReader(changes), sapporo, "op-sato", full)
	var perr *Error
	if !errors.As(err, &perr) || perr.Problems[0].Column != ColAction {
		t.Errorf("changes file imported as full: %v", err)
	}
	_, err = Import(ctx, v, bytes.NewReader(demoCSV(t, sapporo)), sapporo, "op-sato", Options{Mode: records.ModeChanges})
	if !errors.As(err, &perr) || perr.Problems[0].Column != ColAction {
		t.Errorf("full file imported as changes: %v", err)
	}
	if _, err := Import(ctx, v, bytes.NewReader(changes), sapporo, "op-sato", Options{}); err == nil {
		t.Error("an import without a mode was accepted")
	}
}

func TestChangesFileRowErrors(t *testing.T) {
	rows := readRows(t, readFixture(t, "changes-011002.csv"))
	tests := []struct {
		name string
		edit func(rows [][]string) [][]string
		want RowError
	}{
		{"unknown action", func(r [][]string) [][]string { r[2][0] = "update"; return r }, RowError{3, ColAction, `must be "set" or "remove"`}},
		{"data in a remove row", func(r [][]string) [][]string { r[1][ci(t, ColName)+1] = "試験"; return r }, RowError{2, ColName, "must be empty in a remove row (a removal names the person only)"}},
		{"a person removed and set", func(r [][]string) [][]string { r[1][2] = r[2][2]; r[1], r[2] = r[2], r[1]; return r }, RowError{3, ColMyNumber, "repeats the person of row 2; a person is removed with one row, and is either set or removed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := readRows(t, writeRows(t, rows))
			_, _, err := parse(bytes.NewReader(writeRows(t, tc.edit(r))), sapporo, Options{Mode: records.ModeChanges})
			var perr *Error
			if !errors.As(err, &perr) || perr.Problems[0] != tc.want {
				t.Errorf("got %v, want %+v", err, tc.want)
			}
		})
	}
}

func TestFlagColumns(t *testing.T) {
	rows := readRows(t, demoCSV(t, asahikawa))
	set := func(rs [][]string, from, to int, col, val string) {
		for i := from; i <= to; i++ {
			rs[i-1][ci(t, col)] = val
		}
	}
	good := readRows(t, writeRows(t, rows))
	set(good, 2, 3, ColCounterOnly, "support_measure")
	set(good, 11, 12, ColDeceasedDate, "2024-05-01")
	v, closeDB := newVault(t, filepath.Join(t.TempDir(), "records.db"))
	defer closeDB()
	if _, err := Import(t.Context(), v, bytes.NewReader(writeRows(t, good)), asahikawa, "op-sato", full); err != nil {
		t.Fatal(err)
	}
	hanako, _ := v.Lookup(t.Context(), asahikawa, rows[1][ci(t, ColMyNumber)])
	takasaki, _ := v.Lookup(t.Context(), asahikawa, rows[10][ci(t, ColMyNumber)])
	if hanako.Flags.CounterOnly != records.CounterSupportMeasure || takasaki.Flags.DeceasedOn != "2024-05-01" {
		t.Errorf("flags %+v, %+v", hanako.Flags, takasaki.Flags)
	}
	tests := []struct {
		name string
		edit func([][]string)
		want RowError
	}{
		{"unknown reason", func(r [][]string) { set(r, 2, 3, ColCounterOnly, "dv") }, RowError{2, ColCounterOnly, "must be empty or one of support_measure, alias_on_record, travel_document, staff_review"}},
		{"deceased before a dose", func(r [][]string) { set(r, 11, 12, ColDeceasedDate, "2021-06-21") }, RowError{11, ColDeceasedDate, "is before the date of the last dose; the date of death cannot precede a dose given here"}},
		{"moved out not a date", func(r [][]string) { set(r, 13, 14, ColMovedOutDate, "2024-02-30") }, RowError{13, ColMovedOutDate, "must be a date YYYY-MM-DD from 1900-01-01"}},
		{"flag differs between rows", func(r [][]string) { set(r, 3, 3, ColCounterOnly, "staff_review") }, RowError{3, ColCounterOnly, "differs from row 2 of the same my_number"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := readRows(t, writeRows(t, rows))
			tc.edit(r)
			_, err := Parse(bytes.NewReader(writeRows(t, r)), asahikawa, Options{})
			var perr *Error
			if !errors.As(err, &perr) || perr.Problems[0] != tc.want {
				t.Errorf("got %v, want %+v", err, tc.want)
			}
		})
	}
}

// Start runs in the background with progress to poll; cancelling it
// leaves the records as they were.
func TestStartProgressAndCancel(t *testing.T) {
	ctx := t.Context()
	v, closeDB := newVault(t, filepath.Join(t.TempDir(), "records.db"))
	defer closeDB()
	file := demoCSV(t, asahikawa)
	var seen []records.Phase
	im, err := Start(ctx, v, bytes.NewReader(file), asahikawa, "op-sato", Options{Mode: records.ModeFull, Size: int64(len(file)),
		OnProgress: func(p records.Progress) { seen = append(seen, p.Phase) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(ctx, v, bytes.NewReader(file), asahikawa, "op-sato", full); !errors.Is(err, records.ErrImportRunning) {
		// The first may have finished already on a fast machine.
		select {
		case <-im.Done():
		default:
			t.Errorf("a second import of the same municipality: %v", err)
		}
	}
	res, err := im.Wait()
	if err != nil || res.Persons != 6 {
		t.Fatalf("Wait = %+v, %v", res, err)
	}
	p := im.Progress()
	if p.Phase != records.PhaseDone || p.Rows != 17 || p.Bytes != int64(len(file)) || p.TotalBytes != int64(len(file)) {
		t.Errorf("final progress %+v", p)
	}
	if len(seen) == 0 || seen[len(seen)-1] != records.PhaseDone {
		t.Errorf("OnProgress saw %v", seen)
	}

	// A cancelled context aborts: the records stay as they were.
	cctx, cancel := context.WithCancel(ctx)
	big := bytes.NewBuffer(nil)
	lw, _ := NewWriter(big, records.ModeFull)
	entries, _ := demoledger.FromDemo(demoData(t), asahikawa)
	for _, e := range entries[:3] {
		lw.Set(e)
	}
	lw.Flush()
	slow := &slowReader{r: bytes.NewReader(big.Bytes()), cancel: cancel}
	im, err = Start(cctx, v, slow, asahikawa, "op-sato", full)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel: %v", err)
	}
	if c, _ := v.Counts(ctx); len(c) != 1 || c[0].Records != 6 {
		t.Errorf("Counts after a cancelled import %+v", c)
	}
}

// slowReader cancels the import after its first read.
type slowReader struct {
	r      *bytes.Reader
	cancel func()
	n      int
}

func (s *slowReader) Read(p []byte) (int, error) {
	s.n++
	if s.n == 2 {
		s.cancel()
		time.Sleep(time.Millisecond)
	}
	if len(p) > 64 {
		p = p[:64]
	}
	return s.r.Read(p)
}
