// Package ledgercsv reads and writes the municipal ledger export the records
// component imports: CSV in UTF-8 or CP932 (Shift_JIS), a header row, one
// row per dose, the rows of one person together.
//
// docs/RECORDS.md defines the file. In short: the header names the columns
// (any order; the required ones present, no unknown ones); each data row is
// one dose of one person; the rows of a person are adjacent and repeat the
// person's fields identically. A full ledger replaces the municipality's
// records; a changes file (mode "changes", with an action column) adds,
// replaces and removes persons.
//
// Import streams the file into a records import job: each row is
// validated as it is read, each person's record is staged as soon as their
// rows end, and memory stays bounded whatever the file's size. Every
// problem is reported by row number and column, never by value, so the
// report can be shown and logged; a file with any problem imports nothing.
// Start runs an import in the background with progress to poll.
//
// Parse reads a small full ledger into memory (tests, the demo); Writer and
// demoledger.WriteDemo write the format, so the demo and the tests feed the importer
// exactly as a municipality would.
package ledgercsv

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
)

// Column names, as they appear in the header row.
const (
	ColAction         = "action"
	ColMunicipality   = "municipality_code"
	ColMyNumber       = "my_number"
	ColResidentNumber = "resident_number"
	ColTicketNumber   = "ticket_number"
	ColName           = "name"
	ColNameKana       = "name_kana"
	ColRomanFamily    = "roman_family"
	ColRomanGiven     = "roman_given"
	ColBirthDate      = "birth_date"
	ColSex            = "sex"
	ColNationality    = "nationality"
	ColPassportNumber = "passport_number"
	ColCounterOnly    = "counter_only"
	ColDeceasedDate   = "deceased_date"
	ColMovedOutDate   = "moved_out_date"
	ColDoseNumber     = "dose_number"
	ColDate           = "vaccination_date"
	ColProduct        = "product_code"
	ColManufacturer   = "manufacturer"
	ColLot            = "lot_number"
	ColVaccineType    = "vaccine_type"
)

// Actions of a changes file.
const (
	ActionSet    = "set"    // add the person, or replace their record
	ActionRemove = "remove" // remove the person's record
)

// Columns lists the columns of a full ledger in the order Writer uses.
// Parse and Import accept them in any order; the flag columns
// (counter_only, deceased_date, moved_out_date) may be left out (no
// flags), the others are required. A changes file has ColAction as well.
var Columns = []string{
	ColMunicipality, ColMyNumber, ColResidentNumber, ColTicketNumber,
	ColName, ColNameKana, ColRomanFamily, ColRomanGiven, ColBirthDate, ColSex,
	ColNationality, ColPassportNumber, ColCounterOnly, ColDeceasedDate, ColMovedOutDate,
	ColDoseNumber, ColDate, ColProduct, ColManufacturer, ColLot, ColVaccineType,
}

var optionalColumns = map[string]bool{ColCounterOnly: true, ColDeceasedDate: true, ColMovedOutDate: true}

// personColumns repeat on every row of the same person and must agree.
var personColumns = []string{
	ColResidentNumber, ColTicketNumber, ColName, ColNameKana, ColRomanFamily,
	ColRomanGiven, ColBirthDate, ColSex, ColNationality, ColPassportNumber,
	ColCounterOnly, ColDeceasedDate, ColMovedOutDate,
}

// fieldColumn maps records' field names (in records.Problem) to columns.
var fieldColumn = map[string]string{
	"municipality":      ColMunicipality,
	"residentNumber":    ColResidentNumber,
	"ticketNumber":      ColTicketNumber,
	"name":              ColName,
	"nameKana":          ColNameKana,
	"romanFamily":       ColRomanFamily,
	"romanGiven":        ColRomanGiven,
	"birthDate":         ColBirthDate,
	"sex":               ColSex,
	"nationality":       ColNationality,
	"passportNumber":    ColPassportNumber,
	"dose.number":       ColDoseNumber,
	"dose.date":         ColDate,
	"dose.product":      ColProduct,
	"dose.manufacturer": ColManufacturer,
	"dose.lot":          ColLot,
	"dose.vaccineType":  ColVaccineType,
	"flags.counterOnly": ColCounterOnly,
	"flags.deceasedOn":  ColDeceasedDate,
	"flags.movedOutOn":  ColMovedOutDate,
}

// ErrInvalidFile is wrapped by every *Error.
var ErrInvalidFile = errors.New("ledgercsv: invalid ledger file")

// RowError is one problem in the file. Row counts CSV records with the
// header as row 1, as a spreadsheet numbers them; row 0 means the file as a
// whole. Column is empty when the problem is not about one column. Problem
// says what is wrong and never quotes the value.
type RowError struct {
	Row     int
	Column  string
	Problem string
}

func (e RowError) String() string {
	switch {
	case e.Row == 0:
		return "file: " + e.Problem
	case e.Column == "":
		return fmt.Sprintf("row %d: %s", e.Row, e.Problem)
	}
	return fmt.Sprintf("row %d, column %s: %s", e.Row, e.Column, e.Problem)
}

// Error lists the problems that made a file be rejected.
type Error struct {
	// Problems are ordered by row.
	Problems []RowError
	// Omitted counts problems beyond Options.MaxErrors, not listed.
	Omitted int
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ledgercsv: the ledger file was rejected (%d problems); nothing was imported", len(e.Problems)+e.Omitted)
	for i, p := range e.Problems {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)+e.Omitted-5)
			break
		}
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidFile) true.
func (e *Error) Unwrap() error { return ErrInvalidFile }

// Defaults for Options.
const (
	// DefaultMaxRows caps a file's data rows: ten doses for each of six
	// million persons, above Japan's largest city. Memory does not grow
	// with it; it only stops a runaway file.
	DefaultMaxRows   = 60_000_000
	DefaultMaxErrors = 100
)

// Options tunes Parse, Import and Start.
type Options struct {
	// Mode is the kind of file: records.ModeFull (the whole ledger; the
	// default of Parse) or records.ModeChanges (added, changed and removed
	// persons, with an action column). Import and Start require it.
	Mode records.ImportMode
	// Encoding is the file's encoding; EncodingAuto (the default) detects
	// UTF-8 or CP932.
	Encoding Encoding
	// KnownProduct reports whether a product code is in the vaccine
	// catalogue. Nil means pkg/vaccine's catalogue.
	KnownProduct func(code string) bool
	// MaxRows caps the data rows (0: DefaultMaxRows).
	MaxRows int
	// MaxErrors caps the problems listed (0: DefaultMaxErrors).
	MaxErrors int
	// Size is the file's size in bytes, for progress (0: unknown).
	Size int64
	// OnProgress is passed to the records import (see
	// records.ImportOptions).
	OnProgress func(records.Progress)
	// KeepPriority runs Start's import at the process's priority instead
	// of lowering its thread's (benchmarks measuring throughput on a
	// machine others load use it; the center should not).
	KeepPriority bool
}

func (o *Options) defaults() {
	if o.KnownProduct == nil {
		o.KnownProduct = func(code string) bool { _, err := vaccine.Lookup(code); return err == nil }
	}
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultMaxRows
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = DefaultMaxErrors
	}
}

// sink receives what the parser reads: each valid person as soon as their
// rows end, each removal. An error stops the parse.
type sink interface {
	set(e records.Entry, row int) error
	remove(myNumber string, row int) error
}

type parser struct {
	opts   Options
	code   string
	col    [numColumns]int // column → field index + 1 (0: absent), by position in allColumns
	nField int
	errs   *Error
	sink   sink

	g group // the person whose rows are being read
}

// allColumns is Columns plus the action column, for the header map.
var allColumns = append(slices.Clone(Columns), ColAction)

func colIndex(name string) int {
	for i, c := range allColumns {
		if c == name {
			return i
		}
	}
	return -1
}

// Indexes into allColumns (checked by TestColumnIndexes).
const (
	cMunicipality = iota
	cMyNumber
	cResidentNumber
	cTicketNumber
	cName
	cNameKana
	cRomanFamily
	cRomanGiven
	cBirthDate
	cSex
	cNationality
	cPassportNumber
	cCounterOnly
	cDeceasedDate
	cMovedOutDate
	cDoseNumber
	cDate
	cProduct
	cManufacturer
	cLot
	cVaccineType
	cAction
	numColumns
)

// Column indexes into parser.col, resolved once.
var (
	iAction   = cAction
	iMyNumber = cMyNumber
	iPerson   = func() []int {
		out := make([]int, len(personColumns))
		for i, c := range personColumns {
			out[i] = colIndex(c)
		}
		return out
	}()
)

// group is the person being read: the first row's person fields, the
// doses so far.
type group struct {
	active   bool
	myNumber string
	first    int // the person's first row
	remove   bool
	bad      bool // a row of this person had a problem
	person   [13]string
	record   records.Record
	rows     []int // row of each dose in record.Doses
}

func (p *parser) fail(row int, column, problem string) {
	if len(p.errs.Problems) < p.opts.MaxErrors {
		p.errs.Problems = append(p.errs.Problems, RowError{row, column, problem})
	} else {
		p.errs.Omitted++
	}
}

func (p *parser) failed() bool { return len(p.errs.Problems)+p.errs.Omitted > 0 }

// get returns the field of column c (an index into allColumns), "" if the
// file has no such column.
func (p *parser) get(fields []string, c int) string {
	if i := p.col[c]; i > 0 {
		return fields[i-1]
	}
	return ""
}

// scan reads the whole file, validating every row, handing each valid
// person to the sink. It returns a sink or read error; problems in the file
// are in p.errs. rowsRead is called every few thousand rows with the
// number read.
func (p *parser) scan(ctx context.Context, r io.Reader, rowsRead func(int)) error {
	dec, _, err := decoder(r, p.opts.Encoding)
	if err != nil {
		p.fail(0, "", err.Error())
		return nil
	}
	cr := csv.NewReader(dec)
	cr.FieldsPerRecord = -1 // counted here, to report the row and go on
	cr.ReuseRecord = true

	header, err := cr.Read()
	if err == io.EOF {
		p.fail(0, "", "is empty; a header row naming the columns is required")
		return nil
	}
	if err != nil {
		p.fail(1, "", csvProblem(err))
		return nil
	}
	if !p.readHeader(header) {
		return nil
	}
	row, data := 1, 0
	for {
		fields, err := cr.Read()
		if err == io.EOF {
			break
		}
		row++
		if err != nil {
			// After a quoting error the reader's position in the file is
			// unreliable; stop rather than report noise.
			p.fail(row, "", csvProblem(err))
			return nil
		}
		if data++; data > p.opts.MaxRows {
			p.fail(row, "", fmt.Sprintf("the file has more than %d data rows; split it", p.opts.MaxRows))
			return nil
		}
		if err := p.readRow(row, fields); err != nil {
			return err
		}
		if data%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if rowsRead != nil {
				rowsRead(data)
			}
		}
	}
	if err := p.endGroup(); err != nil {
		return err
	}
	if rowsRead != nil {
		rowsRead(data)
	}
	if data == 0 && !p.failed() {
		p.fail(0, "", "has a header but no data rows")
	}
	return nil
}

func csvProblem(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return "is not valid CSV (" + pe.Err.Error() + ")"
	}
	return "could not be read (" + err.Error() + ")"
}

func (p *parser) readHeader(header []string) bool {
	for i, name := range header {
		idx := colIndex(name)
		switch {
		case idx < 0:
			// The name is not quoted back: a file without a header row
			// would have personal data here.
			p.fail(1, "", fmt.Sprintf("header field %d is not a column name this format defines (is the header row missing, or the encoding wrong?)", i+1))
		case p.col[idx] != 0:
			p.fail(1, name, "appears twice in the header")
		default:
			p.col[idx] = i + 1
		}
	}
	p.nField = len(header)
	for _, c := range Columns {
		if p.col[colIndex(c)] == 0 && !optionalColumns[c] {
			p.fail(1, c, "is missing from the header")
		}
	}
	switch hasAction := p.col[iAction] != 0; {
	case p.opts.Mode == records.ModeChanges && !hasAction:
		p.fail(1, ColAction, "is missing from the header; a changes file says for each row whether it sets or removes the person")
	case p.opts.Mode != records.ModeChanges && hasAction:
		p.fail(1, ColAction, "is in the header of a full ledger; import a file with an action column as a changes file")
	}
	return !p.failed()
}

func (p *parser) readRow(row int, fields []string) error {
	if len(fields) != p.nField {
		p.fail(row, "", fmt.Sprintf("has %d fields; the header has %d", len(fields), p.nField))
		// The person cannot be told; end their group as failed.
		p.g.bad = p.g.active
		return nil
	}
	myNumber := fields[p.col[iMyNumber]-1]
	if !p.g.active || myNumber != p.g.myNumber {
		if err := p.endGroup(); err != nil {
			return err
		}
		p.g = group{active: true, myNumber: myNumber, first: row, rows: p.g.rows[:0], record: records.Record{Doses: p.g.record.Doses[:0]}}
		p.startPerson(row, fields)
		return nil
	}
	p.nextRow(row, fields)
	return nil
}

// problem reports a problem of the person being read.
func (p *parser) problem(row int, column, why string) {
	p.g.bad = true
	p.fail(row, column, why)
}

func (p *parser) action(row int, fields []string) (remove, ok bool) {
	if p.col[iAction] == 0 {
		return false, true
	}
	switch p.get(fields, cAction) {
	case ActionSet:
		return false, true
	case ActionRemove:
		return true, true
	}
	p.problem(row, ColAction, `must be "set" or "remove"`)
	return false, false
}

// startPerson reads a person's first row: everything is checked.
func (p *parser) startPerson(row int, fields []string) {
	g := &p.g
	if err := mynumber.Validate(g.myNumber); errors.Is(err, mynumber.ErrCheckDigit) {
		p.problem(row, ColMyNumber, "check digit does not match the first 11 digits")
	} else if err != nil {
		p.problem(row, ColMyNumber, "must be 12 digits")
	}
	if p.get(fields, cMunicipality) != p.code {
		p.problem(row, ColMunicipality, "is not the code of the municipality being imported")
	}
	remove, ok := p.action(row, fields)
	if !ok {
		return
	}
	g.remove = remove
	if remove {
		for i, c := range allColumns {
			if c != ColAction && c != ColMunicipality && c != ColMyNumber && p.col[i] != 0 && fields[p.col[i]-1] != "" {
				p.problem(row, c, "must be empty in a remove row (a removal names the person only)")
				return
			}
		}
		return
	}
	for i, idx := range iPerson {
		if p.col[idx] != 0 {
			g.person[i] = fields[p.col[idx]-1]
		}
	}
	rec := records.Record{
		Municipality:   p.get(fields, cMunicipality),
		ResidentNumber: p.get(fields, cResidentNumber),
		TicketNumber:   p.get(fields, cTicketNumber),
		Name:           p.get(fields, cName),
		NameKana:       p.get(fields, cNameKana),
		RomanFamily:    p.get(fields, cRomanFamily),
		RomanGiven:     p.get(fields, cRomanGiven),
		BirthDate:      p.get(fields, cBirthDate),
		Sex:            p.get(fields, cSex),
		Nationality:    p.get(fields, cNationality),
		PassportNumber: p.get(fields, cPassportNumber),
	}
	reason, err := records.ParseCounterReason(p.get(fields, cCounterOnly))
	if err != nil {
		p.problem(row, ColCounterOnly, "must be empty or one of support_measure, alias_on_record, travel_document, staff_review")
	}
	rec.Flags = records.Flags{CounterOnly: reason, DeceasedOn: p.get(fields, cDeceasedDate), MovedOutOn: p.get(fields, cMovedOutDate)}
	seen := map[string]bool{}
	for _, pr := range records.PersonProblems(&rec) {
		if c := fieldColumn[pr.Field]; !seen[c] {
			seen[c] = true
			p.problem(row, c, pr.Why)
		}
	}
	g.record.Municipality, g.record.ResidentNumber, g.record.TicketNumber = rec.Municipality, rec.ResidentNumber, rec.TicketNumber
	g.record.Name, g.record.NameKana, g.record.RomanFamily, g.record.RomanGiven = rec.Name, rec.NameKana, rec.RomanFamily, rec.RomanGiven
	g.record.BirthDate, g.record.Sex, g.record.Nationality, g.record.PassportNumber = rec.BirthDate, rec.Sex, rec.Nationality, rec.PassportNumber
	g.record.Flags = rec.Flags
	p.readDose(row, fields)
}

// nextRow reads a further row of the same person: the person's fields must
// repeat the first row's (so need no second check), the dose is checked.
func (p *parser) nextRow(row int, fields []string) {
	g := &p.g
	remove, ok := p.action(row, fields)
	if !ok {
		return
	}
	if remove || g.remove {
		p.problem(row, ColMyNumber, fmt.Sprintf("repeats the person of row %d; a person is removed with one row, and is either set or removed", g.first))
		return
	}
	if p.get(fields, cMunicipality) != p.code {
		p.problem(row, ColMunicipality, "is not the code of the municipality being imported")
	}
	for i, idx := range iPerson {
		if p.col[idx] != 0 && fields[p.col[idx]-1] != g.person[i] {
			p.problem(row, personColumns[i], fmt.Sprintf("differs from row %d of the same my_number", g.first))
		}
	}
	p.readDose(row, fields)
}

func (p *parser) readDose(row int, fields []string) {
	g := &p.g
	raw := p.get(fields, cDoseNumber)
	number, err := strconv.Atoi(raw)
	bad := false
	if err != nil || !isDigits(raw) {
		p.problem(row, ColDoseNumber, fmt.Sprintf("must be a whole number 1-%d", certificate.MaxDoses))
		bad = true
	}
	dose := records.Dose{
		Number:       number,
		Date:         p.get(fields, cDate),
		Product:      p.get(fields, cProduct),
		Manufacturer: p.get(fields, cManufacturer),
		Lot:          p.get(fields, cLot),
		VaccineType:  p.get(fields, cVaccineType),
	}
	var last string
	for _, pr := range records.DoseProblems(&dose) {
		if c := fieldColumn[pr.Field]; c != last && !(bad && c == ColDoseNumber) {
			last = c
			p.problem(row, c, pr.Why)
			bad = true
		}
	}
	if records.IsProductCode(dose.Product) && !p.opts.KnownProduct(dose.Product) {
		p.problem(row, ColProduct, "is not a product code in the vaccine catalogue")
		bad = true
	}
	if bad {
		return
	}
	if len(g.record.Doses) >= certificate.MaxDoses {
		p.problem(row, ColDoseNumber, fmt.Sprintf("is more than %d doses for the same my_number", certificate.MaxDoses))
		return
	}
	g.record.Doses = append(g.record.Doses, dose)
	g.rows = append(g.rows, row)
}

// endGroup checks the person whose rows ended as a whole and hands them to
// the sink.
func (p *parser) endGroup() error {
	g := &p.g
	if !g.active {
		return nil
	}
	g.active = false
	if g.bad {
		return nil
	}
	if g.remove {
		return p.sink.remove(g.myNumber, g.first)
	}
	// Doses by number, then as a sequence.
	idx := make([]int, len(g.record.Doses))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return g.record.Doses[a].Number - g.record.Doses[b].Number })
	doses := make([]records.Dose, len(idx))
	rows := make([]int, len(idx))
	for i, j := range idx {
		doses[i], rows[i] = g.record.Doses[j], g.rows[j]
	}
	ok := true
	for i := range doses {
		switch {
		case i > 0 && doses[i].Number == doses[i-1].Number:
			p.fail(rows[i], ColDoseNumber, fmt.Sprintf("repeats the dose number of row %d for the same my_number", rows[i-1]))
			ok = false
		case i > 0 && doses[i].Date < doses[i-1].Date:
			p.fail(rows[i], ColDate, fmt.Sprintf("is before the date of the previous dose (row %d)", rows[i-1]))
			ok = false
		case doses[i].Date < g.record.BirthDate:
			p.fail(rows[i], ColDate, "is before the birth date")
			ok = false
		}
	}
	if !ok {
		return nil
	}
	rec := g.record
	rec.Doses = doses
	// The person's fields and each dose passed on their rows; what is
	// left (flag dates against doses) is reported at the person's first
	// row.
	if ps := rec.SequenceProblems(); len(ps) > 0 {
		for _, pr := range ps {
			p.fail(g.first, fieldColumn[pr.Field], pr.Why)
		}
		return nil
	}
	return p.sink.set(records.Entry{MyNumber: g.myNumber, Record: rec}, g.first)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// memorySink collects a small file in memory, checking what the records
// import would: a person once, a resident number for one person.
type memorySink struct {
	p        *parser
	sets     []records.Entry
	removes  []string
	persons  map[string]int // my_number → first row
	resident map[string]residentUse
}

type residentUse struct {
	myNumber string
	row      int
}

func (m *memorySink) person(myNumber string, row int) bool {
	if first, ok := m.persons[myNumber]; ok {
		m.p.fail(row, ColMyNumber, samePerson(first))
		return false
	}
	m.persons[myNumber] = row
	return true
}

func (m *memorySink) set(e records.Entry, row int) error {
	if !m.person(e.MyNumber, row) {
		return nil
	}
	if use, ok := m.resident[e.Record.ResidentNumber]; ok && use.myNumber != e.MyNumber {
		m.p.fail(row, ColResidentNumber, sameResident(use.row))
		return nil
	}
	m.resident[e.Record.ResidentNumber] = residentUse{e.MyNumber, row}
	m.sets = append(m.sets, e)
	return nil
}

func (m *memorySink) remove(myNumber string, row int) error {
	if m.person(myNumber, row) {
		m.removes = append(m.removes, myNumber)
	}
	return nil
}

func samePerson(first int) string {
	return fmt.Sprintf("the same my_number has rows from row %d already; the rows of one person must be adjacent, and a person is set or removed once", first)
}

func sameResident(first int) string {
	return fmt.Sprintf("is already used for another my_number in row %d", first)
}

func (p *parser) sortProblems() {
	slices.SortStableFunc(p.errs.Problems, func(a, b RowError) int { return a.Row - b.Row })
}

// parse reads a whole file into memory.
func parse(r io.Reader, municipality string, opts Options) (sets []records.Entry, removes []string, err error) {
	opts.defaults()
	p := &parser{opts: opts, code: municipality, errs: &Error{}}
	m := &memorySink{p: p, persons: map[string]int{}, resident: map[string]residentUse{}}
	p.sink = m
	if err := p.scan(context.Background(), r, nil); err != nil {
		return nil, nil, err
	}
	if p.failed() {
		p.sortProblems()
		return nil, nil, p.errs
	}
	return m.sets, m.removes, nil
}

// Parse reads a full ledger export for one municipality into memory and
// returns one entry per person, in file order, doses ordered by number.
// Every row must name municipality. Any problem rejects the whole file with
// an *Error listing the problems (wrapping ErrInvalidFile). It is meant for
// small files (tests, the demo); Import streams a file of any size.
func Parse(r io.Reader, municipality string, opts Options) ([]records.Entry, error) {
	if opts.Mode == "" {
		opts.Mode = records.ModeFull
	}
	if opts.Mode != records.ModeFull {
		return nil, fmt.Errorf("ledgercsv: Parse reads full ledgers; import a changes file with Import")
	}
	sets, _, err := parse(r, municipality, opts)
	return sets, err
}
