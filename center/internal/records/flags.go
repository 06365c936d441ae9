package records

import (
	"fmt"
	"log/slog"
	"strings"
)

// FlagKind names one of a record's flags.
type FlagKind uint8

// The flags a record can carry (issue 15). They come from the ledger's
// flag columns or from an operator (Vault.SetFlag).
const (
	// FlagCounterOnly: certificates for this person are issued at the
	// municipal counter only, for the internal reason in
	// Flags.CounterOnly.
	FlagCounterOnly FlagKind = 1 + iota
	// FlagDeceased: the person died on Flags.DeceasedOn.
	FlagDeceased
	// FlagMovedOut: the person moved out of the municipality on
	// Flags.MovedOutOn. It does not block issuance: the doses on record
	// were given while the person was registered here.
	FlagMovedOut
)

var flagKindNames = [...]string{FlagCounterOnly: "counter_only", FlagDeceased: "deceased", FlagMovedOut: "moved_out"}

// String returns the flag's name as the CSV and the operations log write
// it: counter_only, deceased, moved_out.
func (k FlagKind) String() string {
	if k >= FlagCounterOnly && k <= FlagMovedOut {
		return flagKindNames[k]
	}
	return fmt.Sprintf("FlagKind(%d)", uint8(k))
}

// ParseFlagKind reads a flag name as String writes it.
func ParseFlagKind(s string) (FlagKind, error) {
	for k := FlagCounterOnly; k <= FlagMovedOut; k++ {
		if s == flagKindNames[k] {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown flag; one of counter_only, deceased, moved_out", ErrInvalidRecord)
}

// MarshalText writes the flag's name (for the operations log's JSON).
func (k FlagKind) MarshalText() ([]byte, error) {
	if k < FlagCounterOnly || k > FlagMovedOut {
		return nil, fmt.Errorf("records: unknown flag kind %d", uint8(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText reads a flag name.
func (k *FlagKind) UnmarshalText(b []byte) error {
	v, err := ParseFlagKind(string(b))
	*k = v
	return err
}

// CounterReason is the internal reason a person is sent to the counter.
// It stays inside the encrypted record and the center's audit codes; the
// resident and anyone beside them see one neutral answer whatever the
// reason.
type CounterReason uint8

// Counter-only reasons. NotCounterOnly is the zero value: no flag.
const (
	NotCounterOnly CounterReason = iota
	// CounterSupportMeasure: the person is under support measures
	// (DV等支援措置: domestic violence, stalking); staff must handle
	// the record.
	CounterSupportMeasure
	// CounterAliasOnRecord: a former name, second surname or alias is on
	// record (旧姓・別姓・別名の併記).
	CounterAliasOnRecord
	// CounterTravelDocument: the person travels on a document other than
	// a passport.
	CounterTravelDocument
	// CounterStaffReview: a staff member must review the record first.
	CounterStaffReview
)

var counterReasonNames = [...]string{
	CounterSupportMeasure: "support_measure",
	CounterAliasOnRecord:  "alias_on_record",
	CounterTravelDocument: "travel_document",
	CounterStaffReview:    "staff_review",
}

// String returns the reason's code as the CSV writes it (support_measure,
// alias_on_record, travel_document, staff_review), or "" for
// NotCounterOnly.
func (r CounterReason) String() string {
	if r >= CounterSupportMeasure && r <= CounterStaffReview {
		return counterReasonNames[r]
	}
	if r == NotCounterOnly {
		return ""
	}
	return fmt.Sprintf("CounterReason(%d)", uint8(r))
}

// ParseCounterReason reads a reason code as String writes it; "" is
// NotCounterOnly.
func ParseCounterReason(s string) (CounterReason, error) {
	if s == "" {
		return NotCounterOnly, nil
	}
	for r := CounterSupportMeasure; r <= CounterStaffReview; r++ {
		if s == counterReasonNames[r] {
			return r, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown counter-only reason; one of %s", ErrInvalidRecord, strings.Join(counterReasonNames[1:], ", "))
}

func (r CounterReason) valid() bool { return r <= CounterStaffReview }

// FlagSet is a set of flag kinds.
type FlagSet uint8

// Has reports whether k is in the set.
func (s FlagSet) Has(k FlagKind) bool {
	return k >= FlagCounterOnly && k <= FlagMovedOut && s&(1<<(k-1)) != 0
}

func (s FlagSet) with(k FlagKind) FlagSet    { return s | 1<<(k-1) }
func (s FlagSet) without(k FlagKind) FlagSet { return s &^ (1 << (k - 1)) }

const allFlags FlagSet = 1<<3 - 1

// Flags are a record's flags. The zero value is a record without flags.
type Flags struct {
	// CounterOnly is the reason the person is sent to the counter, or
	// NotCounterOnly.
	CounterOnly CounterReason `json:"counterOnly,omitempty"`
	// DeceasedOn is the date of death (YYYY-MM-DD), or "".
	DeceasedOn string `json:"deceasedOn,omitempty"`
	// MovedOutOn is the date the person moved out (YYYY-MM-DD), or "".
	// It does not block issuance.
	MovedOutOn string `json:"movedOutOn,omitempty"`
	// ByOperator lists the flags an operator set with Vault.SetFlag rather
	// than the ledger. An import keeps them (the ledger cannot clear what
	// an operator set); Vault.ClearFlag removes them.
	ByOperator FlagSet `json:"byOperator,omitempty"`
}

// String redacts the flags: which a person carries, and why, is as
// sensitive as the rest of the record (a support measure above all).
func (f Flags) String() string { return "records.Flags{redacted}" }

// GoString redacts the flags for %#v.
func (f Flags) GoString() string { return f.String() }

// LogValue redacts the flags for log/slog.
func (f Flags) LogValue() slog.Value { return slog.StringValue(f.String()) }

// Has reports whether flag k is set.
func (f Flags) Has(k FlagKind) bool {
	switch k {
	case FlagCounterOnly:
		return f.CounterOnly != NotCounterOnly
	case FlagDeceased:
		return f.DeceasedOn != ""
	case FlagMovedOut:
		return f.MovedOutOn != ""
	}
	return false
}

// Set returns the flags whose kinds are set.
func (f Flags) Set() FlagSet {
	var s FlagSet
	for k := FlagCounterOnly; k <= FlagMovedOut; k++ {
		if f.Has(k) {
			s = s.with(k)
		}
	}
	return s
}

// CounterOnlyReason reports whether the kiosk must send the person to the
// municipal counter, and the internal reason code for the audit log:
// "support_measure", "alias_on_record", "travel_document", "staff_review"
// for the counter-only flag, "deceased" for the deceased flag. Moving out
// does not send anyone to the counter. The reason must never reach the
// kiosk's screen.
func (f Flags) CounterOnlyReason() (string, bool) {
	switch {
	case f.CounterOnly != NotCounterOnly:
		return f.CounterOnly.String(), true
	case f.DeceasedOn != "":
		return "deceased", true
	}
	return "", false
}

// FlagChange is one flag an operator sets with Vault.SetFlag.
type FlagChange struct {
	Kind FlagKind
	// Reason is the counter-only reason (FlagCounterOnly only).
	Reason CounterReason
	// Date is the date of death or of moving out, YYYY-MM-DD
	// (FlagDeceased and FlagMovedOut only).
	Date string
}

// apply sets the change on f and marks it as set by an operator.
func (c FlagChange) apply(f *Flags) error {
	switch c.Kind {
	case FlagCounterOnly:
		if c.Reason == NotCounterOnly || !c.Reason.valid() || c.Date != "" {
			return fmt.Errorf("%w: counter_only needs a reason and no date", ErrInvalidRecord)
		}
		f.CounterOnly = c.Reason
	case FlagDeceased, FlagMovedOut:
		if c.Reason != NotCounterOnly || !isDate(c.Date) {
			return fmt.Errorf("%w: %s needs a date YYYY-MM-DD and no reason", ErrInvalidRecord, c.Kind)
		}
		if c.Kind == FlagDeceased {
			f.DeceasedOn = c.Date
		} else {
			f.MovedOutOn = c.Date
		}
	default:
		return fmt.Errorf("%w: unknown flag", ErrInvalidRecord)
	}
	f.ByOperator = f.ByOperator.with(c.Kind)
	return nil
}

// clear removes flag k from f.
func (f *Flags) clear(k FlagKind) {
	switch k {
	case FlagCounterOnly:
		f.CounterOnly = NotCounterOnly
	case FlagDeceased:
		f.DeceasedOn = ""
	case FlagMovedOut:
		f.MovedOutOn = ""
	}
	f.ByOperator = f.ByOperator.without(k)
}

// keepOperatorFlags copies into f the flags an operator set on old: an
// import replaces the ledger's flags but not an operator's.
func (f *Flags) keepOperatorFlags(old Flags) {
	for k := FlagCounterOnly; k <= FlagMovedOut; k++ {
		if !old.ByOperator.Has(k) || !old.Has(k) {
			continue
		}
		switch k {
		case FlagCounterOnly:
			f.CounterOnly = old.CounterOnly
		case FlagDeceased:
			f.DeceasedOn = old.DeceasedOn
		case FlagMovedOut:
			f.MovedOutOn = old.MovedOutOn
		}
		f.ByOperator = f.ByOperator.with(k)
	}
}

// flagProblems checks the flags against the rest of the record.
func flagProblems(r *Record) []Problem {
	var ps []Problem
	f := &r.Flags
	if !f.CounterOnly.valid() {
		ps = append(ps, Problem{"flags.counterOnly", "must be one of " + strings.Join(counterReasonNames[1:], ", ")})
	}
	if f.ByOperator&^allFlags != 0 || f.ByOperator&^f.Set() != 0 {
		ps = append(ps, Problem{"flags.byOperator", "names a flag that is not set"})
	}
	last := ""
	if n := len(r.Doses); n > 0 {
		last = r.Doses[n-1].Date
	}
	for _, d := range []struct{ field, date, what string }{
		{"flags.deceasedOn", f.DeceasedOn, "death"},
		{"flags.movedOutOn", f.MovedOutOn, "moving out"},
	} {
		switch {
		case d.date == "":
		case !isDateBetween(d.date, earliestBirthDate, latestDate):
			ps = append(ps, Problem{d.field, "must be a date YYYY-MM-DD from 1900-01-01"})
		case isDate(r.BirthDate) && d.date < r.BirthDate:
			ps = append(ps, Problem{d.field, "is before the birth date"})
		case last != "" && d.date < last:
			// Doses are given to living, registered residents.
			ps = append(ps, Problem{d.field, "is before the date of the last dose; the date of " + d.what + " cannot precede a dose given here"})
		}
	}
	return ps
}
