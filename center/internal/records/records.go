// Package records is the center's stand-in for the vaccination record
// system (VRS): per-municipality, logically separated, encrypted vaccination
// records keyed by My Number.
//
// # Use
//
//	master, err := records.LoadMasterKey("/etc/kioskcert/records.key") // 32 bytes, mode 0600 or 0400
//	db, err := boltfile.Open("/var/lib/kioskcert/records.db", boltfile.Options{})
//	backend, err := boltrecords.New(db)                                 // or another Backend
//	vault, err := records.Open(ctx, backend, master, records.Options{})
//	rec, err := vault.Lookup(ctx, "012041", myNumber)                    // ErrNoRecord, ErrBadMyNumber
//	res, err := ledgercsv.Import(ctx, vault, file, "012041", "operator-id",
//		ledgercsv.Options{Mode: records.ModeFull})                        // all or nothing
//	op, err := vault.SetFlag(ctx, "012041", myNumber, "operator-id",
//		records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterStaffReview})
//	region, err := vault.Region(ctx, "012041")
//	op, err = region.Delete(ctx, "operator-id")                           // crypto-shredding
//
// An import is a job (BeginImport, Add or Remove per person, Commit or
// Abort) with a Progress snapshot to poll; ledgercsv drives it from a
// municipality's ledger file and Vault.Import from a slice. docs/RECORDS.md
// defines the file and this design.
//
// # Separation and encryption
//
// Each municipality has its own region: a random 256-bit data key
// (AES-256-GCM) and a random 256-bit lookup key (HMAC-SHA256). A record's
// key is HMAC-SHA256(lookup key, My Number): My Number itself is never
// stored, and the same person has unrelated keys in two municipalities. A
// record's value is its compact encoding (encoding.go) sealed with the
// region's data key; the associated data binds it to the municipality
// code, the record key and the region's key version and identity, so a
// ciphertext copied into another region, under another person's key, or
// into a re-created region fails to open (ErrCorrupt). The region keys are
// stored wrapped (AES-256-GCM) by the master key, which is read from a
// file and never stored in the database.
//
// A region is read and deleted only through a Region handle, which holds
// that region's unwrapped keys and nothing else. Deleting a region deletes
// its keys (crypto-shredding: leftover ciphertext cannot be opened without
// them) and its records, and writes a deletion entry to the operations log
// (municipality, time, record count, operator).
//
// # Storage
//
// The Vault sees its database through Backend, which stores opaque keys
// and values in generations: an import stages a new generation in sorted
// runs, in bounded memory and small transactions beside live lookups, and
// publishes it in one small transaction (a full ledger replaces the
// region's records, a changes file is layered over them and merged). A
// failed or aborted import leaves the records as they were. boltrecords is
// the bbolt backend; recordstest is the suite every backend passes.
//
// # What is stored
//
// The items of Asahikawa's record file (annex 2) that a certificate needs:
// resident number, municipality code, vaccination ticket number, name, kana,
// romanized name, birth date, sex, nationality, passport number and the
// doses; and the record's flags (counter only with its reason, deceased,
// moved out). My Number is input only. Certificate IDs and issue dates are
// not stored: the center keeps no certificate data (brief §2).
//
// Record and Entry print as redacted text with fmt and log/slog, so a stray
// log call does not leak personal data; errors never carry field values.
package records

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/lgcode"
)

// Errors, grouped by operation. Messages never contain personal data.
var (
	// ErrBadMyNumber: the My Number is malformed or its check digit is
	// wrong. Lookup refuses it before touching the records.
	ErrBadMyNumber = errors.New("records: invalid My Number")
	// ErrNoRecord: the municipality holds no record for this person.
	ErrNoRecord = errors.New("records: no record")
	// ErrNoRegion: the municipality has no region (never imported, or
	// deleted). A handle to a deleted region fails with it too.
	ErrNoRegion = errors.New("records: no region for this municipality")
	// ErrInvalidRecord: a record failed validation; the message names the
	// field, never its value.
	ErrInvalidRecord = errors.New("records: invalid record")
	// ErrCorrupt: a stored value does not authenticate under its region's
	// key and position (tampered, moved between regions or persons, or
	// damaged), or does not decode.
	ErrCorrupt = errors.New("records: stored record does not authenticate")
	// ErrWrongMasterKey: the master key does not unwrap the region keys
	// (the wrong key file, or a key from before a rotation).
	ErrWrongMasterKey = errors.New("records: wrong master key")
	// ErrMasterKeyFile: the master key file is unusable (permissions
	// looser than 0600/0400, wrong size, not a regular file).
	ErrMasterKeyFile = errors.New("records: unusable master key file")
	// ErrInvalidOperator: the operator ID is missing or malformed.
	ErrInvalidOperator = errors.New("records: invalid operator ID")

	// ErrImportRunning: an import of this municipality is being staged in
	// this process; a second import, or a flag change (which the import
	// would overwrite), must wait until it ends.
	ErrImportRunning = errors.New("records: an import of this municipality is running")
	// ErrConflict: the region changed under an operation that expected it
	// unchanged (another process imported, or changed a record,
	// meanwhile). Nothing was changed; run the operation again.
	ErrConflict = errors.New("records: the region changed meanwhile")
	// ErrImportRejected: staged entries conflict with each other (the same
	// person twice, a resident number used for two persons); see
	// *ConflictError. Nothing became visible.
	ErrImportRejected = errors.New("records: import rejected")
	// ErrImportClosed: the import job was already committed or aborted.
	ErrImportClosed = errors.New("records: import already committed or aborted")
	// ErrFlagNotSet: ClearFlag named a flag the record does not carry.
	ErrFlagNotSet = errors.New("records: flag not set")
	// ErrStaging: the backend no longer knows the staging generation (it
	// was abandoned for too long and collected, or the region was
	// deleted meanwhile). Run the import again.
	ErrStaging = errors.New("records: staged import no longer available")
)

// Record is one person's vaccination record in one municipality.
type Record struct {
	// Municipality is the 6-digit local government code (自治体コード).
	Municipality string `json:"municipality"`
	// ResidentNumber is the municipality's 宛名番号, 1-16 digits.
	ResidentNumber string `json:"residentNumber"`
	// TicketNumber is the vaccination ticket number (接種券番号), 1-20
	// digits; empty when the ledger has none.
	TicketNumber string `json:"ticketNumber,omitempty"`
	// Name is the registered name (kanji or katakana), as on the card.
	Name string `json:"name"`
	// NameKana is the name in full-width katakana; may be empty.
	NameKana string `json:"nameKana,omitempty"`
	// RomanFamily and RomanGiven are the romanized name as in the passport
	// (A-Z and single spaces, at most 39 characters each).
	RomanFamily string `json:"romanFamily,omitempty"`
	RomanGiven  string `json:"romanGiven,omitempty"`
	// BirthDate is YYYY-MM-DD.
	BirthDate string `json:"birthDate"`
	// Sex is the ISO/IEC 5218 digit: 0 not known, 1 male, 2 female, 9 not
	// applicable.
	Sex string `json:"sex"`
	// Nationality is the three-letter code (JPN, VNM, …); may be empty.
	Nationality string `json:"nationality,omitempty"`
	// PassportNumber is 1-11 of A-Z and 0-9; may be empty. When present,
	// Nationality and RomanFamily are required (the overseas kind needs
	// them together).
	PassportNumber string `json:"passportNumber,omitempty"`
	// Doses lists the doses given in this municipality, ordered by number.
	Doses []Dose `json:"doses"`
	// Flags are the record's flags (counter only, deceased, moved out);
	// the zero value has none.
	Flags Flags `json:"flags,omitzero"`
}

// Dose is one vaccination.
type Dose struct {
	// Number is the dose number (n回目), 1-10. Numbering may start above 1
	// when earlier doses were given in another municipality.
	Number int `json:"number"`
	// Date is the vaccination date, YYYY-MM-DD.
	Date string `json:"date"`
	// Product is the product code of the vaccine catalogue (e.g.
	// "comirnaty", "spikevax-bivalent-ba45").
	Product string `json:"product"`
	// Manufacturer and VaccineType are as the ledger records them.
	Manufacturer string `json:"manufacturer"`
	Lot          string `json:"lot"`
	VaccineType  string `json:"vaccineType"`
}

// Entry is a record with the My Number it is filed under: the form records
// take on their way in. My Number is used to derive the record key and is
// then dropped.
type Entry struct {
	MyNumber string
	Record   Record
}

// String redacts the record: it is personal data.
func (r Record) String() string {
	return fmt.Sprintf("records.Record{municipality %s, %d doses, personal fields redacted}", r.Municipality, len(r.Doses))
}

// GoString redacts the record for %#v.
func (r Record) GoString() string { return r.String() }

// LogValue redacts the record for log/slog.
func (r Record) LogValue() slog.Value { return slog.StringValue(r.String()) }

// String redacts the entry: it is personal data.
func (e Entry) String() string { return "records.Entry{redacted}" }

// GoString redacts the entry for %#v.
func (e Entry) GoString() string { return e.String() }

// LogValue redacts the entry for log/slog.
func (e Entry) LogValue() slog.Value { return slog.StringValue(e.String()) }

// Problem is one thing wrong with a record: the field (as named in the JSON
// encoding, "dose." for dose fields) and why, never the value.
type Problem struct {
	Field string
	Why   string
}

func (p Problem) Error() string { return p.Field + " " + p.Why }

// Validate checks the whole record and returns the first problem as an
// ErrInvalidRecord.
func (r *Record) Validate() error {
	if ps := r.Problems(); len(ps) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidRecord, ps[0].Error())
	}
	return nil
}

// Problems lists everything wrong with the record: person fields, each
// dose, the doses as a sequence, and the flags.
func (r *Record) Problems() []Problem {
	ps := PersonProblems(r)
	for i := range r.Doses {
		ps = append(ps, DoseProblems(&r.Doses[i])...)
	}
	return append(ps, r.SequenceProblems()...)
}

// SequenceProblems checks what needs the record as a whole, once its
// person fields and each dose have been checked on their own
// (PersonProblems, DoseProblems): the number of doses, their numbers and
// dates against each other and the birth date, and the flags.
func (r *Record) SequenceProblems() []Problem {
	var ps []Problem
	if len(r.Doses) == 0 || len(r.Doses) > certificate.MaxDoses {
		ps = append(ps, Problem{"doses", fmt.Sprintf("must list 1-%d doses", certificate.MaxDoses)})
	}
	for i := range r.Doses {
		if i == 0 {
			continue
		}
		prev, d := r.Doses[i-1], r.Doses[i]
		if d.Number <= prev.Number {
			ps = append(ps, Problem{"dose.number", "must increase from dose to dose (no repeats)"})
		}
		if d.Date < prev.Date {
			ps = append(ps, Problem{"dose.date", "is before the previous dose's date"})
		}
	}
	if len(r.Doses) > 0 && isDate(r.BirthDate) && r.Doses[0].Date < r.BirthDate {
		ps = append(ps, Problem{"dose.date", "is before the birth date"})
	}
	return append(ps, flagProblems(r)...)
}

// Earliest and latest dates the records accept. Japan's COVID-19
// vaccination began on 17 February 2021.
const (
	FirstVaccinationDate = "2021-02-17"
	earliestBirthDate    = "1900-01-01"
	latestDate           = "2099-12-31"
)

// PersonProblems checks the person-level fields of r (not the doses).
func PersonProblems(r *Record) []Problem {
	var ps []Problem
	add := func(field, why string) { ps = append(ps, Problem{field, why}) }
	if err := lgcode.Validate(r.Municipality); err != nil {
		add("municipality", "must be a 6-digit local government code with a valid check digit")
	}
	if !isDigitsRange(r.ResidentNumber, 1, 16) {
		add("residentNumber", "must be 1-16 digits")
	}
	if r.TicketNumber != "" && !isDigitsRange(r.TicketNumber, 1, 20) {
		add("ticketNumber", "must be 1-20 digits")
	}
	switch {
	case r.Name == "":
		add("name", "is required")
	default:
		if why := textProblem(r.Name, certificate.MaxNameLen); why != "" {
			add("name", why)
		}
	}
	if r.NameKana != "" {
		if why := textProblem(r.NameKana, certificate.MaxNameLen); why != "" {
			add("nameKana", why)
		} else if !isKatakana(r.NameKana) {
			add("nameKana", "must be full-width katakana and spaces")
		}
	}
	if r.RomanFamily != "" && !isRoman(r.RomanFamily) {
		add("romanFamily", "must be 1-39 of A-Z with single spaces between words")
	}
	if r.RomanGiven != "" {
		if !isRoman(r.RomanGiven) {
			add("romanGiven", "must be 1-39 of A-Z with single spaces between words")
		} else if r.RomanFamily == "" {
			add("romanFamily", "is required when romanGiven is present")
		}
	}
	if !isDateBetween(r.BirthDate, earliestBirthDate, latestDate) {
		add("birthDate", "must be a date YYYY-MM-DD from 1900-01-01")
	}
	switch r.Sex {
	case "0", "1", "2", "9":
	default:
		add("sex", "must be an ISO 5218 digit: 0, 1, 2 or 9")
	}
	if r.Nationality != "" && !isUpperAlpha(r.Nationality, 3) {
		add("nationality", "must be a three-letter code in capitals")
	}
	if r.PassportNumber != "" {
		if !isPassport(r.PassportNumber) {
			add("passportNumber", fmt.Sprintf("must be 1-%d of A-Z and 0-9", certificate.MaxPassportLen))
		}
		if r.Nationality == "" {
			add("nationality", "is required when a passport number is present")
		}
		if r.RomanFamily == "" {
			add("romanFamily", "is required when a passport number is present")
		}
	}
	return ps
}

// DoseProblems checks one dose on its own.
func DoseProblems(d *Dose) []Problem {
	var ps []Problem
	add := func(field, why string) { ps = append(ps, Problem{field, why}) }
	if d.Number < 1 || d.Number > certificate.MaxDoses {
		add("dose.number", fmt.Sprintf("must be 1-%d", certificate.MaxDoses))
	}
	if !isDateBetween(d.Date, FirstVaccinationDate, latestDate) {
		add("dose.date", "must be a date YYYY-MM-DD from "+FirstVaccinationDate)
	}
	if !IsProductCode(d.Product) {
		add("dose.product", "must be a product code of 1-40 of a-z, 0-9 and '-'")
	}
	if d.Manufacturer == "" {
		add("dose.manufacturer", "is required")
	} else if why := textProblem(d.Manufacturer, 100); why != "" {
		add("dose.manufacturer", why)
	}
	if !isLot(d.Lot) {
		add("dose.lot", fmt.Sprintf("must be 1-%d of A-Z, a-z, 0-9 and '-'", certificate.MaxLotLen))
	}
	if d.VaccineType == "" {
		add("dose.vaccineType", "is required")
	} else if why := textProblem(d.VaccineType, 100); why != "" {
		add("dose.vaccineType", why)
	}
	return ps
}

// IsProductCode reports whether s has the syntax of a catalogue product
// code: 1-40 characters of a-z, 0-9 and '-', starting with a letter or digit.
func IsProductCode(s string) bool {
	if len(s) == 0 || len(s) > 40 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// textProblem checks free text: valid UTF-8, at most max bytes, no control
// characters, no leading or trailing spaces.
func textProblem(s string, max int) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case len(s) > max:
		return fmt.Sprintf("is longer than %d bytes", max)
	case strings.TrimSpace(s) != s:
		return "has leading or trailing spaces"
	}
	for _, r := range s {
		if r == utf8.RuneError {
			// What a decoder leaves for bytes that are not text in the
			// file's encoding.
			return "contains bytes that are not a character (is the file's encoding right?)"
		}
		if unicode.IsControl(r) {
			return "contains a control character"
		}
	}
	return ""
}

// isKatakana accepts full-width katakana (including ー and ・) and
// full-width or ASCII spaces.
func isKatakana(s string) bool {
	for _, r := range s {
		if !(r >= 0x30A0 && r <= 0x30FF || r == '　' || r == ' ') {
			return false
		}
	}
	return true
}

// isRoman accepts the romanized name as printed in passports: A-Z, words
// separated by single spaces, at most 39 characters (the VDS-NC name field).
func isRoman(s string) bool {
	if len(s) == 0 || len(s) > 39 || s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  ") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= 'A' && s[i] <= 'Z' || s[i] == ' ') {
			return false
		}
	}
	return true
}

func isUpperAlpha(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

func isPassport(s string) bool {
	if len(s) == 0 || len(s) > certificate.MaxPassportLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func isLot(s string) bool {
	if len(s) == 0 || len(s) > certificate.MaxLotLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func isDigitsRange(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isDate reports whether s is a real calendar date written YYYY-MM-DD (in
// the proleptic Gregorian calendar, as time.Parse reads it; written out
// because imports check millions of dates).
func isDate(s string) bool {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9} {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	y, m, d := atoi(s[0:4]), atoi(s[5:7]), atoi(s[8:10])
	if m < 1 || m > 12 || d < 1 {
		return false
	}
	days := [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
	if m == 2 && y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		days = 29
	}
	return d <= days
}

func isDateBetween(s, first, last string) bool {
	return isDate(s) && s >= first && s <= last
}
