package ledgercsv

import (
	"bytes"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"flag"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv/demoledger"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/text/encoding/japanese"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/boltrecords"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	asahikawa = "012041"
	sapporo   = "011002"
)

func demoData(t testing.TB) *demo.Data {
	t.Helper()
	d, err := demo.Load()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func demoCSV(t testing.TB, code string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeDemo(&b, demoData(t), code); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The testdata files are golden: the documented examples and the fixtures
// other tests and the demo use. go test -update rewrites them.
func TestGoldenFiles(t *testing.T) {
	for _, tc := range []struct {
		file string
		make func(t *testing.T) []byte
	}{
		{"ledger-012041.csv", func(t *testing.T) []byte { return demoCSV(t, asahikawa) }},
		{"ledger-011002.csv", func(t *testing.T) []byte { return demoCSV(t, sapporo) }},
		{"ledger-012041-cp932.csv", func(t *testing.T) []byte { return toCP932(t, demoCSV(t, asahikawa)) }},
		{"changes-011002.csv", func(t *testing.T) []byte { return sapporoChanges(t) }},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got := tc.make(t)
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from what the generator writes (run go test -update if the change is intended)", path)
			}
		})
	}
}

func toCP932(t testing.TB, utf8 []byte) []byte {
	t.Helper()
	out, err := japanese.ShiftJIS.NewEncoder().Bytes(utf8)
	if err != nil {
		t.Fatalf("encoding to CP932: %v", err)
	}
	return out
}

// sapporoChanges is the example changes file: ichiro moved out of Sapporo
// (to Asahikawa, where his later doses are) and an is removed.
func sapporoChanges(t testing.TB) []byte {
	t.Helper()
	entries, err := demoledger.FromDemo(demoData(t), sapporo)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w, err := NewWriter(&b, records.ModeChanges)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Record.Name {
		case "試験　一郎":
			e.Record.Flags.MovedOutOn = "2021-11-15"
			if err := w.Set(e); err != nil {
				t.Fatal(err)
			}
		default:
			if err := w.Remove(sapporo, e.MyNumber); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestParseRoundTrip(t *testing.T) {
	for _, code := range []string{asahikawa, sapporo} {
		t.Run(code, func(t *testing.T) {
			want, err := demoledger.FromDemo(demoData(t), code)
			if err != nil {
				t.Fatal(err)
			}
			raw := demoCSV(t, code)
			got, err := Parse(bytes.NewReader(raw), code, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Error("Parse(WriteDemo) differs from FromDemo")
			}
			var again bytes.Buffer
			if err := Write(&again, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), raw) {
				t.Error("Write(Parse(file)) differs from the file")
			}
		})
	}
}

// Accepted variations: BOM, CRLF, columns in another order, a person's dose
// rows out of order, no flag columns, CP932.
func TestParseVariations(t *testing.T) {
	want, _ := Parse(bytes.NewReader(demoCSV(t, asahikawa)), asahikawa, Options{})
	rows := readRows(t, demoCSV(t, asahikawa))
	tests := []struct {
		name string
		file []byte
	}{
		{"BOM", append([]byte{0xEF, 0xBB, 0xBF}, demoCSV(t, asahikawa)...)},
		{"CRLF", bytes.ReplaceAll(demoCSV(t, asahikawa), []byte("\n"), []byte("\r\n"))},
		{"CP932", toCP932(t, demoCSV(t, asahikawa))},
		{"CP932, CRLF", toCP932(t, bytes.ReplaceAll(demoCSV(t, asahikawa), []byte("\n"), []byte("\r\n")))},
		{"columns reversed", func() []byte {
			rev := make([][]string, len(rows))
			for i, r := range rows {
				rev[i] = make([]string, len(r))
				for j := range r {
					rev[i][j] = r[len(r)-1-j]
				}
			}
			return writeRows(t, rev)
		}()},
		{"doses out of order within a person", func() []byte {
			// Taro's dose 1 after his dose 7.
			moved := append([][]string{}, rows[:3]...)
			moved = append(moved, rows[4:10]...)
			moved = append(moved, rows[3])
			moved = append(moved, rows[10:]...)
			return writeRows(t, moved)
		}()},
		{"without the flag columns", func() []byte {
			var out [][]string
			for _, r := range rows {
				out = append(out, append(append([]string{}, r[:12]...), r[15:]...))
			}
			return writeRows(t, out)
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(bytes.NewReader(tc.file), asahikawa, Options{})
			if err != nil {
				t.Fatal(err)
			}
			w := want
			if tc.name == "without the flag columns" {
				// Only the flags are gone (the demo's shiro is counter only).
				w = nil
				for _, e := range want {
					e.Record.Flags = records.Flags{}
					w = append(w, e)
				}
			}
			if !reflect.DeepEqual(got, w) {
				t.Error("parsed entries differ from the plain file's")
			}
		})
	}
}

func readRows(t testing.TB, raw []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func writeRows(t testing.TB, rows [][]string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	if err := w.WriteAll(rows); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func ci(t testing.TB, name string) int {
	for i, c := range Columns {
		if c == name {
			return i
		}
	}
	t.Fatalf("no column %s", name)
	return -1
}

// Row 2 is hanako's dose 1, row 3 her dose 2, rows 4-10 taro's doses 1-7,
// rows 11-12 takasaki's, rows 13-14 ichiro's doses 3-4 (see testdata).
func TestParseRowErrors(t *testing.T) {
	type cell struct {
		row    int
		column string
		value  string
	}
	tests := []struct {
		name      string
		set       []cell
		wantRow   int
		wantCol   string
		wantWords string
	}{
		{"My Number check digit", []cell{{2, ColMyNumber, "314159265353"}, {3, ColMyNumber, "314159265353"}}, 2, ColMyNumber, "check digit"},
		{"My Number too short", []cell{{4, ColMyNumber, "27182818284"}}, 4, ColMyNumber, "12 digits"},
		{"other municipality", []cell{{5, ColMunicipality, sapporo}}, 5, ColMunicipality, "municipality being imported"},
		{"birth date 30 Feb", []cell{{11, ColBirthDate, "1960-02-30"}, {12, ColBirthDate, "1960-02-30"}}, 11, ColBirthDate, "date"},
		{"birth date not ISO", []cell{{2, ColBirthDate, "1985/04/02"}, {3, ColBirthDate, "1985/04/02"}}, 2, ColBirthDate, "YYYY-MM-DD"},
		{"vaccination date invalid", []cell{{6, ColDate, "2022-13-01"}}, 6, ColDate, "date"},
		{"vaccination before 2021-02-17", []cell{{2, ColDate, "2020-12-01"}}, 2, ColDate, "2021-02-17"},
		{"sex 3", []cell{{13, ColSex, "3"}, {14, ColSex, "3"}}, 13, ColSex, "ISO 5218"},
		{"dose number zero", []cell{{2, ColDoseNumber, "0"}}, 2, ColDoseNumber, "1-10"},
		{"dose number word", []cell{{2, ColDoseNumber, "one"}}, 2, ColDoseNumber, "whole number"},
		{"dose number signed", []cell{{2, ColDoseNumber, "+1"}}, 2, ColDoseNumber, "whole number"},
		{"unknown product", []cell{{7, ColProduct, "sputnik-v"}}, 7, ColProduct, "catalogue"},
		{"product with capitals", []cell{{7, ColProduct, "Comirnaty"}}, 7, ColProduct, "product code"},
		{"empty lot", []cell{{8, ColLot, ""}}, 8, ColLot, "1-20"},
		{"empty manufacturer", []cell{{8, ColManufacturer, ""}}, 8, ColManufacturer, "required"},
		{"empty vaccine type", []cell{{8, ColVaccineType, ""}}, 8, ColVaccineType, "required"},
		{"empty name", []cell{{2, ColName, ""}, {3, ColName, ""}}, 2, ColName, "required"},
		{"hiragana kana", []cell{{2, ColNameKana, "しけん　はなこ"}, {3, ColNameKana, "しけん　はなこ"}}, 2, ColNameKana, "katakana"},
		{"passport without nationality", []cell{{2, ColNationality, ""}, {3, ColNationality, ""}}, 2, ColNationality, "passport"},
		{"name differs between rows", []cell{{3, ColName, "試験　華子"}}, 3, ColName, "differs from row 2"},
		{"passport differs between rows", []cell{{10, ColPassportNumber, "TR7654322"}}, 10, ColPassportNumber, "differs from row 4"},
		{"repeated dose number", []cell{{3, ColDoseNumber, "1"}}, 3, ColDoseNumber, "repeats"},
		{"dose dates out of order", []cell{{5, ColDate, "2021-05-01"}}, 5, ColDate, "before the date of the previous dose"},
		{"resident number reused", []cell{{4, ColResidentNumber, "0000012345"}, {5, ColResidentNumber, "0000012345"}, {6, ColResidentNumber, "0000012345"}, {7, ColResidentNumber, "0000012345"}, {8, ColResidentNumber, "0000012345"}, {9, ColResidentNumber, "0000012345"}, {10, ColResidentNumber, "0000012345"}}, 4, ColResidentNumber, "another my_number in row 2"},
		{"invalid UTF-8", []cell{{2, ColName, "\xff\xfe"}, {3, ColName, "\xff\xfe"}}, 2, ColName, "UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows := readRows(t, demoCSV(t, asahikawa))
			var secrets []string
			for _, c := range tc.set {
				old := rows[c.row-1][ci(t, c.column)]
				rows[c.row-1][ci(t, c.column)] = c.value
				if c.column == ColMyNumber || c.column == ColName || c.column == ColBirthDate || c.column == ColPassportNumber || c.column == ColResidentNumber {
					secrets = append(secrets, c.value, old)
				}
			}
			secrets = append(secrets, rows[tc.wantRow-1][ci(t, ColMyNumber)], rows[tc.wantRow-1][ci(t, ColName)])
			entries, err := Parse(bytes.NewReader(writeRows(t, rows)), asahikawa, Options{})
			if entries != nil {
				t.Error("Parse returned entries along with problems")
			}
			var perr *Error
			if !errors.As(err, &perr) || !errors.Is(err, ErrInvalidFile) {
				t.Fatalf("Parse: %v, want *Error", err)
			}
			found := false
			for _, p := range perr.Problems {
				if p.Row == tc.wantRow && p.Column == tc.wantCol && strings.Contains(p.Problem, tc.wantWords) {
					found = true
				}
			}
			if !found {
				t.Errorf("problems %v lack row %d column %s (%q)", perr.Problems, tc.wantRow, tc.wantCol, tc.wantWords)
			}
			assertNoValues(t, err.Error(), secrets)
		})
	}
}

// assertNoValues checks an error message quotes none of the personal
// values and stays within ASCII (so no name can be in it).
func assertNoValues(t *testing.T, msg string, values []string) {
	t.Helper()
	for _, v := range values {
		if len(v) >= 4 && strings.Contains(msg, v) {
			t.Errorf("error message quotes a personal value: %q", msg)
		}
	}
	for i := 0; i < len(msg); i++ {
		if msg[i] >= 0x80 {
			t.Errorf("error message is not ASCII: %q", msg)
			break
		}
	}
}

func TestParseFileErrors(t *testing.T) {
	header := strings.Join(Columns, ",")
	rows := readRows(t, demoCSV(t, asahikawa))
	tests := []struct {
		name    string
		file    string
		wantRow int
		wantCol string
		words   string
	}{
		{"empty file", "", 0, "", "header row"},
		{"header only", header + "\n", 0, "", "no data rows"},
		{"missing column", strings.Replace(header, ",lot_number", "", 1) + "\n", 1, ColLot, "missing"},
		{"duplicate column", header + ",sex\n", 1, ColSex, "twice"},
		{"no header row", string(writeRows(t, rows[1:])), 1, "", "header row missing"},
		{"unknown column", header + ",address\n", 1, "", "not a column name"},
		{"short row", header + "\n012041,314159265352\n", 2, "", "has 2 fields"},
		{"bare quote", header + "\n012041,3141\"59265352," + strings.Repeat(",", len(Columns)-3) + "\n", 2, "", "not valid CSV"},
		{"Shift_JIS name", string(writeRows(t, [][]string{rows[0], replaceCell(rows[1], ci(t, ColName), "\x8e\x8e\x8c\xb1")})), 2, ColName, "UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.file), asahikawa, Options{})
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Parse: %v, want *Error", err)
			}
			p := perr.Problems[0]
			if p.Row != tc.wantRow || p.Column != tc.wantCol || !strings.Contains(p.Problem, tc.words) {
				t.Errorf("first problem %+v, want row %d column %q with %q", p, tc.wantRow, tc.wantCol, tc.words)
			}
			// The data row used as a header must not be quoted back.
			assertNoValues(t, err.Error(), rows[1])
		})
	}
}

func replaceCell(row []string, i int, v string) []string {
	out := append([]string(nil), row...)
	out[i] = v
	return out
}

func TestParseTooManyDoses(t *testing.T) {
	rows := readRows(t, demoCSV(t, asahikawa))
	taroDose7 := rows[9]
	dates := []string{"2023-11-01", "2023-12-01", "2024-01-01", "2024-02-01"}
	var extra [][]string
	for i, n := range []string{"8", "9", "10", "11"} {
		r := replaceCell(taroDose7, ci(t, ColDoseNumber), n)
		extra = append(extra, replaceCell(r, ci(t, ColDate), dates[i]))
	}
	rows = append(rows[:10], append(extra, rows[10:]...)...)
	_, err := Parse(bytes.NewReader(writeRows(t, rows)), asahikawa, Options{})
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("Parse: %v", err)
	}
	// Dose 11 is rejected at row 14 (dose_number must be 1-10).
	if p := perr.Problems[0]; p.Row != 14 || p.Column != ColDoseNumber {
		t.Errorf("problem %+v, want row 14 dose_number", p)
	}
}

func TestParseLimits(t *testing.T) {
	rows := readRows(t, demoCSV(t, asahikawa))
	for i := 1; i < len(rows); i++ {
		rows[i][ci(t, ColSex)] = "7"
	}
	_, err := Parse(bytes.NewReader(writeRows(t, rows)), asahikawa, Options{MaxErrors: 3})
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("Parse: %v", err)
	}
	// The person's fields are checked on their first row and compared on
	// the others: one problem per person.
	if len(perr.Problems) != 3 || perr.Omitted != 3 {
		t.Errorf("listed %d, omitted %d; want 3 and 3", len(perr.Problems), perr.Omitted)
	}
	if !strings.Contains(err.Error(), "6 problems") {
		t.Errorf("message %q does not count all problems", err)
	}

	_, err = Parse(bytes.NewReader(demoCSV(t, asahikawa)), asahikawa, Options{MaxRows: 5})
	if !errors.As(err, &perr) || !strings.Contains(perr.Problems[0].Problem, "more than 5 data rows") {
		t.Errorf("MaxRows: %v", err)
	}
}

func TestParseKnownProductOption(t *testing.T) {
	onlyComirnaty := func(code string) bool { return code == "comirnaty" }
	_, err := Parse(bytes.NewReader(demoCSV(t, asahikawa)), asahikawa, Options{KnownProduct: onlyComirnaty})
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("Parse: %v", err)
	}
	for _, p := range perr.Problems {
		if p.Column != ColProduct {
			t.Errorf("unexpected problem %+v", p)
		}
	}
	// Not comirnaty: taro's doses 3, 5, 6, 7; takasaki's 1, 2; ichiro's 3,
	// 4; shiro's 1, 2.
	if len(perr.Problems) != 10 {
		t.Errorf("%d product problems, want 10: %v", len(perr.Problems), perr.Problems)
	}
	everything := func(string) bool { return true }
	if _, err := Parse(bytes.NewReader(demoCSV(t, asahikawa)), asahikawa, Options{KnownProduct: everything}); err != nil {
		t.Errorf("Parse with a permissive catalogue: %v", err)
	}
}

func newVault(t *testing.T, path string) (*records.Vault, func()) {
	t.Helper()
	db, err := boltfile.Open(path, boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, records.MasterKeySize)
	rand.Read(key)
	master, err := records.NewMasterKey(key)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := boltrecords.New(db)
	if err != nil {
		t.Fatal(err)
	}
	v, err := records.Open(t.Context(), backend, master, records.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v, func() { db.Close() }
}

var full = Options{Mode: records.ModeFull}

// A file with one bad row imports nothing, even over existing records; the
// database file holds no personal value in clear afterwards.
func TestImportAllOrNothing(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "records.db")
	v, closeDB := newVault(t, path)
	good := demoCSV(t, asahikawa)
	res, err := Import(ctx, v, bytes.NewReader(good), asahikawa, "op-sato", full)
	if err != nil {
		t.Fatal(err)
	}
	if res.Persons != 6 || res.Doses != 17 {
		t.Errorf("Import = %+v", res)
	}

	rows := readRows(t, good)
	for i := 1; i < len(rows); i++ {
		rows[i][ci(t, ColLot)] = "NEW-LOT"
	}
	rows[len(rows)-1][ci(t, ColBirthDate)] = "1978-12-32" // the very last row is bad
	_, err = Import(ctx, v, bytes.NewReader(writeRows(t, rows)), asahikawa, "op-sato", full)
	if !errors.Is(err, ErrInvalidFile) {
		t.Fatalf("Import of a file with a bad row: %v", err)
	}
	entries, _ := demoledger.FromDemo(demoData(t), asahikawa)
	for _, e := range entries {
		got, err := v.Lookup(ctx, asahikawa, e.MyNumber)
		if err != nil || !reflect.DeepEqual(got, e.Record) {
			t.Errorf("record changed by a rejected file (err %v)", err)
		}
	}
	log, _ := v.Log(ctx)
	if len(log) != 1 {
		t.Errorf("operations log has %d entries, want 1", len(log))
	}

	closeDB()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	personal := []int{ci(t, ColMyNumber), ci(t, ColResidentNumber), ci(t, ColTicketNumber), ci(t, ColName), ci(t, ColNameKana), ci(t, ColBirthDate), ci(t, ColPassportNumber), ci(t, ColLot)}
	checked := 0
	for _, row := range readRows(t, good)[1:] {
		for _, i := range personal {
			if len(row[i]) < 6 {
				continue
			}
			checked++
			if bytes.Contains(raw, []byte(row[i])) {
				t.Errorf("database file holds the %s of a row in clear", Columns[i])
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d values checked", checked)
	}
}

func TestWriteRequiresMunicipality(t *testing.T) {
	entries, _ := demoledger.FromDemo(demoData(t), asahikawa)
	entries[0].Record.Municipality = ""
	if err := Write(&bytes.Buffer{}, entries); err == nil {
		t.Error("Write accepted a record without municipality")
	}
}

var longDigits = regexp.MustCompile(`[0-9]{8,}`)

func TestColumnIndexes(t *testing.T) {
	want := map[int]string{cMunicipality: ColMunicipality, cMyNumber: ColMyNumber, cResidentNumber: ColResidentNumber,
		cTicketNumber: ColTicketNumber, cName: ColName, cNameKana: ColNameKana, cRomanFamily: ColRomanFamily, cRomanGiven: ColRomanGiven,
		cBirthDate: ColBirthDate, cSex: ColSex, cNationality: ColNationality, cPassportNumber: ColPassportNumber,
		cCounterOnly: ColCounterOnly, cDeceasedDate: ColDeceasedDate, cMovedOutDate: ColMovedOutDate, cDoseNumber: ColDoseNumber,
		cDate: ColDate, cProduct: ColProduct, cManufacturer: ColManufacturer, cLot: ColLot, cVaccineType: ColVaccineType, cAction: ColAction}
	if len(allColumns) != numColumns || len(want) != numColumns {
		t.Fatalf("%d columns, %d indexes", len(allColumns), numColumns)
	}
	for i, name := range want {
		if allColumns[i] != name {
			t.Errorf("index %d is %s, want %s", i, allColumns[i], name)
		}
	}
}

// writeDemo writes the demo ledger of one municipality in the ledger format.
func writeDemo(w io.Writer, d *demo.Data, municipality string) error {
	entries, err := demoledger.FromDemo(d, municipality)
	if err != nil {
		return err
	}
	return Write(w, entries)
}
