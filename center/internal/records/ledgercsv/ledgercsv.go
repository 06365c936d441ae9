// Package ledgercsv reads and writes the municipal ledger export the records
// component imports: UTF-8 CSV, a header row, one row per dose.
//
// docs/RECORDS.md defines the file. In short: the header names the columns
// (any order, every column present, no others); each data row is one dose of
// one person; rows of the same person (same my_number) repeat the person's
// fields identically. Parse validates every row and reports each problem by
// row number and column, never by value, so the report can be shown and
// logged; it returns records only when the whole file is valid, and Import
// then commits them all in one transaction or none.
//
// Write produces the same format, and WriteDemo writes the demo residents'
// ledger of one municipality, so the demo and the tests feed the importer
// exactly as a municipality would.
package ledgercsv

import (
	"bufio"
	"bytes"
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
)

// Column names, as they appear in the header row.
const (
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
	ColDoseNumber     = "dose_number"
	ColDate           = "vaccination_date"
	ColProduct        = "product_code"
	ColManufacturer   = "manufacturer"
	ColLot            = "lot_number"
	ColVaccineType    = "vaccine_type"
)

// Columns lists every column in the order Write uses. Parse accepts them in
// any order but requires all of them.
var Columns = []string{
	ColMunicipality, ColMyNumber, ColResidentNumber, ColTicketNumber,
	ColName, ColNameKana, ColRomanFamily, ColRomanGiven, ColBirthDate, ColSex,
	ColNationality, ColPassportNumber,
	ColDoseNumber, ColDate, ColProduct, ColManufacturer, ColLot, ColVaccineType,
}

// personColumns repeat on every row of the same person and must agree.
var personColumns = []string{
	ColResidentNumber, ColTicketNumber, ColName, ColNameKana, ColRomanFamily,
	ColRomanGiven, ColBirthDate, ColSex, ColNationality, ColPassportNumber,
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
}

// ErrInvalidFile is wrapped by every *Error Parse returns.
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

// Error lists the problems that made Parse reject a file.
type Error struct {
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
	DefaultMaxRows   = 5_000_000
	DefaultMaxErrors = 100
)

// Options tunes Parse.
type Options struct {
	// KnownProduct reports whether a product code is in the vaccine
	// catalogue. Nil means KnownDemoProduct, this package's small list;
	// the center passes its catalogue's lookup.
	KnownProduct func(code string) bool
	// MaxRows caps the data rows (0: DefaultMaxRows).
	MaxRows int
	// MaxErrors caps the problems listed (0: DefaultMaxErrors).
	MaxErrors int
}

type parser struct {
	opts     Options
	code     string
	col      map[string]int // column name → field index
	errs     *Error
	groups   map[string]*group
	order    []*group
	resident map[string]residentUse // resident number → first use
}

type residentUse struct {
	myNumber string
	row      int
}

type group struct {
	myNumber string
	first    int               // row of the person's first valid row
	person   map[string]string // person column → value on the first row
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

// Parse reads a ledger export for one municipality and returns one entry
// per person, in order of first appearance, doses ordered by number. Every
// row must name municipality. Any problem rejects the whole file with an
// *Error listing the problems (wrapping ErrInvalidFile).
func Parse(r io.Reader, municipality string, opts Options) ([]records.Entry, error) {
	if opts.KnownProduct == nil {
		opts.KnownProduct = KnownDemoProduct
	}
	if opts.MaxRows <= 0 {
		opts.MaxRows = DefaultMaxRows
	}
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = DefaultMaxErrors
	}
	p := &parser{opts: opts, code: municipality, errs: &Error{}, groups: map[string]*group{}, resident: map[string]residentUse{}}

	br := bufio.NewReader(r)
	// A UTF-8 byte order mark, as spreadsheet programs write, is skipped.
	if bom, err := br.Peek(3); err == nil && bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // counted here, to report the row and go on

	header, err := cr.Read()
	if err == io.EOF {
		p.fail(0, "", "is empty; a header row naming the columns is required")
		return nil, p.errs
	}
	if err != nil {
		p.fail(1, "", csvProblem(err))
		return nil, p.errs
	}
	if !p.readHeader(header) {
		return nil, p.errs
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
			return nil, p.errs
		}
		if data++; data > opts.MaxRows {
			p.fail(row, "", fmt.Sprintf("the file has more than %d data rows; split it", opts.MaxRows))
			return nil, p.errs
		}
		p.readRow(row, fields)
	}
	if data == 0 && !p.failed() {
		p.fail(0, "", "has a header but no data rows")
	}
	entries := p.finish()
	if p.failed() {
		return nil, p.errs
	}
	return entries, nil
}

func csvProblem(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return "is not valid CSV (" + pe.Err.Error() + ")"
	}
	return "could not be read (" + err.Error() + ")"
}

func (p *parser) readHeader(header []string) bool {
	p.col = map[string]int{}
	known := map[string]bool{}
	for _, c := range Columns {
		known[c] = true
	}
	for i, name := range header {
		switch {
		case !known[name]:
			// The name is not quoted back: a file without a header row
			// would have personal data here.
			p.fail(1, "", fmt.Sprintf("header field %d is not a column name this format defines (is the header row missing, or the file not UTF-8?)", i+1))
		case p.col[name] != 0:
			p.fail(1, name, "appears twice in the header")
		default:
			p.col[name] = i + 1 // 1-based so the zero value means absent
		}
	}
	for _, c := range Columns {
		if p.col[c] == 0 {
			p.fail(1, c, "is missing from the header")
		}
	}
	return !p.failed()
}

func (p *parser) readRow(row int, fields []string) {
	if len(fields) != len(p.col) {
		p.fail(row, "", fmt.Sprintf("has %d fields; the header has %d", len(fields), len(p.col)))
		return
	}
	get := func(c string) string { return fields[p.col[c]-1] }

	// One problem per column is enough to act on.
	bad := map[string]bool{}
	problem := func(column, why string) {
		if !bad[column] {
			bad[column] = true
			p.fail(row, column, why)
		}
	}

	myNumber := get(ColMyNumber)
	if err := mynumber.Validate(myNumber); errors.Is(err, mynumber.ErrCheckDigit) {
		problem(ColMyNumber, "check digit does not match the first 11 digits")
	} else if err != nil {
		problem(ColMyNumber, "must be 12 digits")
	}
	if get(ColMunicipality) != p.code {
		problem(ColMunicipality, "is not the code of the municipality being imported")
	}
	number, err := strconv.Atoi(get(ColDoseNumber))
	if err != nil || !isDigits(get(ColDoseNumber)) {
		problem(ColDoseNumber, fmt.Sprintf("must be a whole number 1-%d", certificate.MaxDoses))
	}
	rec := records.Record{
		Municipality:   get(ColMunicipality),
		ResidentNumber: get(ColResidentNumber),
		TicketNumber:   get(ColTicketNumber),
		Name:           get(ColName),
		NameKana:       get(ColNameKana),
		RomanFamily:    get(ColRomanFamily),
		RomanGiven:     get(ColRomanGiven),
		BirthDate:      get(ColBirthDate),
		Sex:            get(ColSex),
		Nationality:    get(ColNationality),
		PassportNumber: get(ColPassportNumber),
	}
	dose := records.Dose{
		Number:       number,
		Date:         get(ColDate),
		Product:      get(ColProduct),
		Manufacturer: get(ColManufacturer),
		Lot:          get(ColLot),
		VaccineType:  get(ColVaccineType),
	}
	for _, pr := range append(records.PersonProblems(&rec), records.DoseProblems(&dose)...) {
		problem(fieldColumn[pr.Field], pr.Why)
	}
	if records.IsProductCode(dose.Product) && !p.opts.KnownProduct(dose.Product) {
		problem(ColProduct, "is not a product code in the vaccine catalogue")
	}
	if len(bad) > 0 {
		return
	}

	g := p.groups[myNumber]
	if g == nil {
		if use, ok := p.resident[rec.ResidentNumber]; ok && use.myNumber != myNumber {
			p.fail(row, ColResidentNumber, fmt.Sprintf("is already used for another my_number in row %d", use.row))
			return
		}
		p.resident[rec.ResidentNumber] = residentUse{myNumber, row}
		g = &group{myNumber: myNumber, first: row, person: map[string]string{}, record: rec}
		for _, c := range personColumns {
			g.person[c] = get(c)
		}
		p.groups[myNumber] = g
		p.order = append(p.order, g)
	} else {
		differs := false
		for _, c := range personColumns {
			if get(c) != g.person[c] {
				p.fail(row, c, fmt.Sprintf("differs from row %d of the same my_number", g.first))
				differs = true
			}
		}
		if differs {
			return
		}
	}
	g.record.Doses = append(g.record.Doses, dose)
	g.rows = append(g.rows, row)
}

// finish checks each person's doses as a sequence and builds the entries.
func (p *parser) finish() []records.Entry {
	entries := make([]records.Entry, 0, len(p.order))
	for _, g := range p.order {
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
		g.record.Doses, g.rows = doses, rows

		ok := true
		for i := range doses {
			switch {
			case i >= certificate.MaxDoses:
				p.fail(rows[i], ColDoseNumber, fmt.Sprintf("is more than %d doses for the same my_number", certificate.MaxDoses))
				ok = false
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
			continue
		}
		// The record as a whole must pass the same validation Import
		// applies; anything left is reported at the person's first row.
		for _, pr := range g.record.Problems() {
			p.fail(g.first, fieldColumn[pr.Field], pr.Why)
			ok = false
		}
		if ok {
			entries = append(entries, records.Entry{MyNumber: g.myNumber, Record: g.record})
		}
	}
	return entries
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

// Write writes entries in the ledger format: the header, then one row per
// dose in entry order. Every record must name its municipality.
func Write(w io.Writer, entries []records.Entry) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(Columns); err != nil {
		return fmt.Errorf("ledgercsv: writing header: %w", err)
	}
	for i, e := range entries {
		r := e.Record
		if r.Municipality == "" {
			return fmt.Errorf("ledgercsv: entry %d has no municipality code", i+1)
		}
		for _, d := range r.Doses {
			row := []string{
				r.Municipality, e.MyNumber, r.ResidentNumber, r.TicketNumber,
				r.Name, r.NameKana, r.RomanFamily, r.RomanGiven, r.BirthDate, r.Sex,
				r.Nationality, r.PassportNumber,
				strconv.Itoa(d.Number), d.Date, d.Product, d.Manufacturer, d.Lot, d.VaccineType,
			}
			if err := cw.Write(row); err != nil {
				return fmt.Errorf("ledgercsv: writing entry %d: %w", i+1, err)
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("ledgercsv: writing: %w", err)
	}
	return nil
}

// Import parses a ledger export for municipality and imports it into the
// vault in one transaction: all rows or none. operator is the individual
// ID of the person importing, recorded in the records' operations log.
func Import(ctx context.Context, v *records.Vault, r io.Reader, municipality, operator string, opts Options) (records.ImportResult, error) {
	entries, err := Parse(r, municipality, opts)
	if err != nil {
		return records.ImportResult{Municipality: municipality}, err
	}
	return v.Import(ctx, municipality, operator, entries)
}
