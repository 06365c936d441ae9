package records

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The record encoding: what is sealed inside each stored value. It is a
// compact binary form (a person with three doses takes about 200 bytes,
// against 700 as JSON) whose first byte is its version, so the format can
// evolve: a later build reads every version it knows and writes the newest.
//
// Version 1, in order:
//
//	version        1 byte = 1
//	flags          1 byte: bit 0 counter only, bit 1 deceased, bit 2 moved
//	               out; bits 4-6 the same flags set by an operator
//	counter reason 1 byte, if bit 0
//	deceased on    uvarint days since 1900-01-01, if bit 1
//	moved out on   uvarint days since 1900-01-01, if bit 2
//	sex            1 byte, the ISO 5218 digit's value
//	birth date     uvarint days since 1900-01-01
//	8 strings      uvarint length, bytes: resident number, ticket number,
//	               name, kana, romanized family, romanized given,
//	               nationality, passport number
//	doses          1 byte count, then per dose:
//	  number       1 byte
//	  date         uvarint days since 2021-02-17 (FirstVaccinationDate)
//	  product, manufacturer, vaccine type
//	               uvarint n, then n-1 bytes; n = 0 repeats the previous
//	               dose's value (most persons have one maker's wording)
//	  lot          uvarint length, bytes
//
// The municipality code is not encoded: it is the region's, and bound to
// the value by the associated data.
const encodingV1 = 1

const (
	flagBitCounter  = 1 << 0
	flagBitDeceased = 1 << 1
	flagBitMovedOut = 1 << 2
	flagOperatorSh  = 4
)

var errEncoding = errors.New("malformed record encoding")

// appendRecord appends r's encoding to dst. r must be valid.
func appendRecord(dst []byte, r *Record) []byte {
	dst = append(dst, encodingV1)
	var bits byte
	if r.Flags.CounterOnly != NotCounterOnly {
		bits |= flagBitCounter
	}
	if r.Flags.DeceasedOn != "" {
		bits |= flagBitDeceased
	}
	if r.Flags.MovedOutOn != "" {
		bits |= flagBitMovedOut
	}
	bits |= byte(r.Flags.ByOperator&allFlags) << flagOperatorSh
	dst = append(dst, bits)
	if bits&flagBitCounter != 0 {
		dst = append(dst, byte(r.Flags.CounterOnly))
	}
	if bits&flagBitDeceased != 0 {
		dst = binary.AppendUvarint(dst, uint64(daysSince1900(r.Flags.DeceasedOn)))
	}
	if bits&flagBitMovedOut != 0 {
		dst = binary.AppendUvarint(dst, uint64(daysSince1900(r.Flags.MovedOutOn)))
	}
	dst = append(dst, r.Sex[0]-'0')
	dst = binary.AppendUvarint(dst, uint64(daysSince1900(r.BirthDate)))
	for _, s := range [...]string{r.ResidentNumber, r.TicketNumber, r.Name, r.NameKana, r.RomanFamily, r.RomanGiven, r.Nationality, r.PassportNumber} {
		dst = appendString(dst, s)
	}
	dst = append(dst, byte(len(r.Doses)))
	firstDay := daysSince1900(FirstVaccinationDate)
	for i := range r.Doses {
		d := &r.Doses[i]
		dst = append(dst, byte(d.Number))
		dst = binary.AppendUvarint(dst, uint64(daysSince1900(d.Date)-firstDay))
		var prev *Dose
		if i > 0 {
			prev = &r.Doses[i-1]
		}
		dst = appendRepeated(dst, d.Product, prev, func(p *Dose) string { return p.Product })
		dst = appendRepeated(dst, d.Manufacturer, prev, func(p *Dose) string { return p.Manufacturer })
		dst = appendRepeated(dst, d.VaccineType, prev, func(p *Dose) string { return p.VaccineType })
		dst = appendString(dst, d.Lot)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendRepeated(dst []byte, s string, prev *Dose, field func(*Dose) string) []byte {
	if prev != nil && field(prev) == s {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s))+1)
	return append(dst, s...)
}

// decoder reads an encoding; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errEncoding
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > max {
		d.err = errEncoding
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) string {
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errEncoding
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	if !utf8.ValidString(s) {
		d.err = errEncoding
	}
	return s
}

func (d *decoder) string() string { return d.bytes(d.uvarint(1 << 16)) }

func (d *decoder) date(base int) string {
	v := d.uvarint(1 << 20)
	if d.err != nil {
		return ""
	}
	return dateFromDays(base + int(v))
}

// decodeFlags reads only the flags of an encoding.
func decodeFlags(b []byte) (Flags, error) {
	d := &decoder{b: b}
	if v := d.byte(); v != encodingV1 {
		return Flags{}, fmt.Errorf("unknown record encoding version %d", v)
	}
	var f Flags
	err := d.flags(&f)
	return f, err
}

func (d *decoder) flags(f *Flags) error {
	bits := d.byte()
	if bits&^(flagBitCounter|flagBitDeceased|flagBitMovedOut|byte(allFlags)<<flagOperatorSh) != 0 {
		return errEncoding
	}
	if bits&flagBitCounter != 0 {
		f.CounterOnly = CounterReason(d.byte())
		if f.CounterOnly == NotCounterOnly || !f.CounterOnly.valid() {
			return errEncoding
		}
	}
	if bits&flagBitDeceased != 0 {
		f.DeceasedOn = d.date(0)
	}
	if bits&flagBitMovedOut != 0 {
		f.MovedOutOn = d.date(0)
	}
	f.ByOperator = FlagSet(bits>>flagOperatorSh) & allFlags
	if f.ByOperator&^f.Set() != 0 {
		return errEncoding
	}
	return d.err
}

// decodeRecord reads an encoding written by appendRecord (any version this
// build knows) into a record of municipality code.
func decodeRecord(b []byte, code string) (Record, error) {
	d := &decoder{b: b}
	if v := d.byte(); v != encodingV1 {
		return Record{}, fmt.Errorf("unknown record encoding version %d", v)
	}
	r := Record{Municipality: code}
	if err := d.flags(&r.Flags); err != nil {
		return Record{}, err
	}
	sex := d.byte()
	switch sex {
	case 0, 1, 2, 9:
		r.Sex = string(rune('0' + sex))
	default:
		return Record{}, errEncoding
	}
	r.BirthDate = d.date(0)
	for _, p := range [...]*string{&r.ResidentNumber, &r.TicketNumber, &r.Name, &r.NameKana, &r.RomanFamily, &r.RomanGiven, &r.Nationality, &r.PassportNumber} {
		*p = d.string()
	}
	n := int(d.byte())
	if d.err != nil || n == 0 || n > 255 {
		return Record{}, errEncoding
	}
	r.Doses = make([]Dose, n)
	firstDay := daysSince1900(FirstVaccinationDate)
	for i := range r.Doses {
		dose := &r.Doses[i]
		dose.Number = int(d.byte())
		dose.Date = d.date(firstDay)
		for _, f := range [...]struct {
			dst  *string
			prev func(*Dose) string
		}{
			{&dose.Product, func(p *Dose) string { return p.Product }},
			{&dose.Manufacturer, func(p *Dose) string { return p.Manufacturer }},
			{&dose.VaccineType, func(p *Dose) string { return p.VaccineType }},
		} {
			m := d.uvarint(1 << 16)
			switch {
			case d.err != nil:
			case m == 0 && i == 0:
				d.err = errEncoding
			case m == 0:
				*f.dst = f.prev(&r.Doses[i-1])
			default:
				*f.dst = d.bytes(m - 1)
			}
		}
		dose.Lot = d.string()
	}
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) != 0 {
		return Record{}, fmt.Errorf("%w: %d bytes after the record", errEncoding, len(d.b))
	}
	return r, nil
}

// Dates are stored as day numbers. The conversion is the proleptic
// Gregorian calendar's (Howard Hinnant's days_from_civil), which is exact
// for the dates the records accept and avoids time.Parse on the import's
// hot path. The callers pass validated YYYY-MM-DD dates.

var day1900 = daysFromCivil(1900, 1, 1)

func daysSince1900(s string) int {
	y := atoi(s[0:4])
	m := atoi(s[5:7])
	d := atoi(s[8:10])
	return daysFromCivil(y, m, d) - day1900
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func dateFromDays(days int) string {
	z := days + day1900 + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	b := [10]byte{byte('0' + y/1000%10), byte('0' + y/100%10), byte('0' + y/10%10), byte('0' + y%10), '-',
		byte('0' + m/10), byte('0' + m%10), '-', byte('0' + d/10), byte('0' + d%10)}
	return string(b[:])
}
