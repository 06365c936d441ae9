package ledgercsv

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"

	"github.com/kioskcert/kioskcert/center/internal/records"
)

// Writer writes a ledger file: a full ledger, or a changes file (which
// starts each row with the action column). It writes UTF-8; a CP932 file
// is the same text through golang.org/x/text/encoding/japanese.ShiftJIS.
type Writer struct {
	cw      *csv.Writer
	changes bool
	row     []string
}

// NewWriter writes the header of a file of the given mode to w.
func NewWriter(w io.Writer, mode records.ImportMode) (*Writer, error) {
	lw := &Writer{cw: csv.NewWriter(w), changes: mode == records.ModeChanges}
	if mode != records.ModeFull && mode != records.ModeChanges {
		return nil, fmt.Errorf("ledgercsv: unknown mode %q", mode)
	}
	header := Columns
	if lw.changes {
		header = append([]string{ColAction}, Columns...)
	}
	if err := lw.cw.Write(header); err != nil {
		return nil, fmt.Errorf("ledgercsv: writing header: %w", err)
	}
	return lw, nil
}

// Set writes one person's rows (one per dose); in a changes file with the
// action "set".
func (w *Writer) Set(e records.Entry) error {
	r := e.Record
	if r.Municipality == "" {
		return fmt.Errorf("ledgercsv: a record has no municipality code")
	}
	for _, d := range r.Doses {
		w.row = w.row[:0]
		if w.changes {
			w.row = append(w.row, ActionSet)
		}
		w.row = append(w.row,
			r.Municipality, e.MyNumber, r.ResidentNumber, r.TicketNumber,
			r.Name, r.NameKana, r.RomanFamily, r.RomanGiven, r.BirthDate, r.Sex,
			r.Nationality, r.PassportNumber, r.Flags.CounterOnly.String(), r.Flags.DeceasedOn, r.Flags.MovedOutOn,
			strconv.Itoa(d.Number), d.Date, d.Product, d.Manufacturer, d.Lot, d.VaccineType,
		)
		if err := w.cw.Write(w.row); err != nil {
			return fmt.Errorf("ledgercsv: writing: %w", err)
		}
	}
	return nil
}

// Remove writes the removal of a person (changes files only).
func (w *Writer) Remove(municipality, myNumber string) error {
	if !w.changes {
		return fmt.Errorf("ledgercsv: a full ledger has no removals")
	}
	w.row = append(w.row[:0], ActionRemove, municipality, myNumber)
	for len(w.row) < len(Columns)+1 {
		w.row = append(w.row, "")
	}
	if err := w.cw.Write(w.row); err != nil {
		return fmt.Errorf("ledgercsv: writing: %w", err)
	}
	return nil
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	w.cw.Flush()
	if err := w.cw.Error(); err != nil {
		return fmt.Errorf("ledgercsv: writing: %w", err)
	}
	return nil
}

// Write writes entries as a full ledger: the header, then one row per
// dose in entry order. Every record must name its municipality.
func Write(w io.Writer, entries []records.Entry) error {
	lw, err := NewWriter(w, records.ModeFull)
	if err != nil {
		return err
	}
	for i, e := range entries {
		if err := lw.Set(e); err != nil {
			return fmt.Errorf("%w (entry %d)", err, i+1)
		}
	}
	return lw.Flush()
}
