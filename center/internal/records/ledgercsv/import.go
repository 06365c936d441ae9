package ledgercsv

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/kioskcert/kioskcert/center/internal/records"
)

// jobSink stages each person into a records import job as the parser
// hands them over. It goes on staging after a bad row (nothing will be
// published then), so that Check can also report the persons and resident
// numbers repeated: one run reports every problem.
type jobSink struct {
	ctx context.Context
	job *records.ImportJob
}

func (s *jobSink) set(e records.Entry, row int) error {
	return s.job.Add(s.ctx, e, uint64(row))
}

func (s *jobSink) remove(myNumber string, row int) error {
	return s.job.Remove(s.ctx, myNumber, uint64(row))
}

// rowErrors turns the records' problems with entries (numbered by their
// first row) into row errors.
func rowErrors(ps []records.EntryProblem) []RowError {
	out := make([]RowError, 0, len(ps))
	for _, p := range ps {
		row := int(p.Ref)
		switch p.Kind {
		case records.ProblemSamePerson:
			out = append(out, RowError{row, ColMyNumber, samePerson(int(p.FirstRef))})
		case records.ProblemSameResidentNumber:
			out = append(out, RowError{row, ColResidentNumber, sameResident(int(p.FirstRef))})
		default:
			out = append(out, RowError{row, fieldColumn[p.Problem.Field], p.Problem.Why})
		}
	}
	return out
}

// Importer is an import of one ledger file running in the background (see
// Start). Its progress can be polled from any goroutine, e.g. by the
// operations API.
type Importer struct {
	job  *records.ImportJob
	done chan struct{}
	res  records.ImportResult
	err  error
}

// Start begins importing a ledger file for municipality into v and returns
// at once; the import runs on its own goroutine until Wait returns.
// Problems that prevent the start (a bad mode or operator, an import of
// the same municipality already running) are returned here. Cancelling
// ctx aborts the import, leaving the records as they were. operator is the
// individual ID of the person importing, recorded in the operations log.
func Start(ctx context.Context, v *records.Vault, r io.Reader, municipality, operator string, opts Options) (*Importer, error) {
	opts.defaults()
	if opts.Mode == "" {
		return nil, fmt.Errorf("ledgercsv: name the import mode: %q (the whole ledger) or %q (added, changed and removed persons)", records.ModeFull, records.ModeChanges)
	}
	job, err := v.BeginImport(ctx, municipality, records.ImportOptions{Operator: operator, Mode: opts.Mode, OnProgress: opts.OnProgress})
	if err != nil {
		return nil, err
	}
	im := &Importer{job: job, done: make(chan struct{})}
	go func() {
		defer close(im.done)
		// Imports run beside issuance: their thread yields to the others
		// when the CPU is contended (see backgroundThread).
		if !opts.KeepPriority {
			backgroundThread()
		}
		im.res, im.err = run(ctx, job, r, municipality, opts)
	}()
	return im, nil
}

// Progress returns the import's progress now.
func (im *Importer) Progress() records.Progress { return im.job.Progress() }

// Done is closed when the import has ended.
func (im *Importer) Done() <-chan struct{} { return im.done }

// Wait waits for the import to end and returns its result: an *Error
// listing the file's problems, or another failure; on any error nothing
// was imported.
func (im *Importer) Wait() (records.ImportResult, error) {
	<-im.done
	return im.res, im.err
}

// Import imports a ledger file for municipality into v and waits for it
// (Start, then Wait): all rows or none.
func Import(ctx context.Context, v *records.Vault, r io.Reader, municipality, operator string, opts Options) (records.ImportResult, error) {
	im, err := Start(ctx, v, r, municipality, operator, opts)
	if err != nil {
		return records.ImportResult{Municipality: municipality, Mode: opts.Mode}, err
	}
	return im.Wait()
}

func run(ctx context.Context, job *records.ImportJob, r io.Reader, municipality string, opts Options) (records.ImportResult, error) {
	fail := records.ImportResult{Municipality: municipality, Mode: opts.Mode}
	p := &parser{opts: opts, code: municipality, errs: &Error{}, sink: &jobSink{ctx: ctx, job: job}}
	counter := &countingReader{r: r}
	err := p.scan(ctx, counter, func(rows int) { job.SetInput(int64(rows), counter.n, opts.Size) })
	if err != nil {
		job.Abort(ctx)
		return fail, err
	}
	if p.failed() {
		// Report the repeats among the persons staged too, then drop it all.
		ps, omitted, err := job.Check(ctx)
		job.Abort(ctx)
		if err != nil && ctx.Err() != nil {
			return fail, ctx.Err()
		}
		p.errs.Problems = append(p.errs.Problems, rowErrors(ps)...)
		p.errs.Omitted += omitted
		if over := len(p.errs.Problems) - opts.MaxErrors; over > 0 {
			p.sortProblems()
			p.errs.Problems = p.errs.Problems[:opts.MaxErrors]
			p.errs.Omitted += over
		}
		p.sortProblems()
		return fail, p.errs
	}
	res, err := job.Commit(ctx)
	var rej *records.RejectedError
	if errors.As(err, &rej) {
		p.errs.Problems = rowErrors(rej.Problems)
		p.errs.Omitted = rej.Omitted
		p.sortProblems()
		return fail, p.errs
	}
	if err != nil {
		return fail, err
	}
	return res, nil
}
