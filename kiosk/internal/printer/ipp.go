package printer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/OpenPrinting/goipp"
)

// IPP job states (RFC 8011 §5.3.7).
const (
	jobPending           = 3
	jobPendingHeld       = 4
	jobProcessing        = 5
	jobProcessingStopped = 6
	jobCanceled          = 7
	jobAborted           = 8
	jobCompleted         = 9
)

// IPPOptions tunes an IPP printer. The zero value is usable.
type IPPOptions struct {
	// HTTPClient sends the requests; nil means a client with no overall
	// timeout (every request carries the caller's context deadline).
	HTTPClient *http.Client
	// PollInterval is how often Print asks for the job's state; default
	// 250 ms.
	PollInterval time.Duration
	// UserName is sent as requesting-user-name; default "kiosk". It must
	// not be personal data.
	UserName string
	// RootCAs, when set, are the only authorities trusted for an ipps://
	// printer's certificate (a printer's own self-signed certificate may be
	// one of them); nil trusts the system's roots. Ignored with HTTPClient.
	RootCAs *x509.CertPool
}

// IPP is a printer reached over IPP. It is safe for concurrent use.
type IPP struct {
	uri      string // printer-uri as sent in requests (ipp:// or ipps://)
	endpoint string // the HTTP(S) URL the requests are posted to
	client   *http.Client
	poll     time.Duration
	user     string
	reqID    atomic.Uint32
}

// NewIPP returns a printer at uri: ipp://host[:port]/path (port 631 by
// default), ipps:// (IPP over TLS), or the equivalent http:// or https://
// URL.
func NewIPP(uri string, opts IPPOptions) (*IPP, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("printer: printer URI %q: want ipp://host[:port]/path", uri)
	}
	endpoint, printerURI := *u, *u
	switch u.Scheme {
	case "ipp", "http":
		endpoint.Scheme, printerURI.Scheme = "http", "ipp"
	case "ipps", "https":
		endpoint.Scheme, printerURI.Scheme = "https", "ipps"
	default:
		return nil, fmt.Errorf("printer: printer URI %q: scheme must be ipp, ipps, http or https", uri)
	}
	if u.Port() == "" && (u.Scheme == "ipp" || u.Scheme == "ipps") {
		endpoint.Host = u.Host + ":631"
	}
	p := &IPP{
		uri:      printerURI.String(),
		endpoint: endpoint.String(),
		client:   opts.HTTPClient,
		poll:     opts.PollInterval,
		user:     opts.UserName,
	}
	if p.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Kiosk printers seldom speak TLS 1.3; 1.2 is the floor.
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: opts.RootCAs}
		p.client = &http.Client{Transport: t}
	}
	if p.poll <= 0 {
		p.poll = 250 * time.Millisecond
	}
	if p.user == "" {
		p.user = "kiosk"
	}
	return p, nil
}

// request builds an IPP request with the operation attributes every
// operation needs.
func (p *IPP) request(op goipp.Op) *goipp.Message {
	m := goipp.NewRequest(goipp.DefaultVersion, op, p.reqID.Add(1))
	m.Operation.Add(goipp.MakeAttribute("attributes-charset", goipp.TagCharset, goipp.String("utf-8")))
	m.Operation.Add(goipp.MakeAttribute("attributes-natural-language", goipp.TagLanguage, goipp.String("en")))
	m.Operation.Add(goipp.MakeAttribute("printer-uri", goipp.TagURI, goipp.String(p.uri)))
	m.Operation.Add(goipp.MakeAttribute("requesting-user-name", goipp.TagName, goipp.String(p.user)))
	return m
}

// do posts req (followed by document, if any) and decodes the response.
// Transport failures wrap ErrPrinterOffline; IPP error statuses are
// returned as ippStatusError.
func (p *IPP) do(ctx context.Context, req *goipp.Message, document []byte) (*goipp.Message, error) {
	payload, err := req.EncodeBytes()
	if err != nil {
		return nil, fmt.Errorf("printer: encoding IPP request: %w", err)
	}
	body := io.Reader(bytes.NewReader(payload))
	if document != nil {
		body = io.MultiReader(body, bytes.NewReader(document))
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, body)
	if err != nil {
		return nil, fmt.Errorf("printer: %w", err)
	}
	hreq.Header.Set("Content-Type", goipp.ContentType)
	hreq.Header.Set("Accept", goipp.ContentType)
	hreq.ContentLength = int64(len(payload) + len(document))
	resp, err := p.client.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%w)", ErrPrintTimeout, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %v", ErrPrinterOffline, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: HTTP status %s from the printer", ErrPrinterOffline, resp.Status)
	}
	var msg goipp.Message
	if err := msg.Decode(io.LimitReader(resp.Body, 1<<20)); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%w)", ErrPrintTimeout, ctx.Err())
		}
		return nil, fmt.Errorf("%w: malformed IPP response: %v", ErrPrinterOffline, err)
	}
	if st := goipp.Status(msg.Code); st >= 0x0100 { // not successful-ok*
		return &msg, ippStatusError{st}
	}
	return &msg, nil
}

// ippStatusError is an IPP error status from the printer.
type ippStatusError struct{ status goipp.Status }

func (e ippStatusError) Error() string { return "IPP status " + e.status.String() }

// Status asks the printer for its state with Get-Printer-Attributes. An
// unreachable printer gives StateOffline and an error wrapping
// ErrPrinterOffline.
func (p *IPP) Status(ctx context.Context) (Status, error) {
	req := p.request(goipp.OpGetPrinterAttributes)
	var want goipp.Values
	for _, a := range []string{"printer-state", "printer-state-reasons", "printer-state-message", "printer-is-accepting-jobs"} {
		want.Add(goipp.TagKeyword, goipp.String(a))
	}
	req.Operation.Add(goipp.Attribute{Name: "requested-attributes", Values: want})
	resp, err := p.do(ctx, req, nil)
	if err != nil {
		if errors.Is(err, ErrPrintTimeout) {
			return Status{State: StateOffline}, fmt.Errorf("%w: no answer to Get-Printer-Attributes before the deadline (%w)", ErrPrinterOffline, ctx.Err())
		}
		if !errors.Is(err, ErrPrinterOffline) {
			err = fmt.Errorf("%w: Get-Printer-Attributes: %w", ErrPrinterOffline, err)
		}
		return Status{State: StateOffline}, err
	}
	return statusFrom(resp.Printer), nil
}

// statusFrom reads a Status from printer attributes.
func statusFrom(attrs goipp.Attributes) Status {
	state, accepting := 3, true
	var st Status
	for _, a := range attrs {
		switch a.Name {
		case "printer-state":
			state = intValue(a)
		case "printer-is-accepting-jobs":
			if len(a.Values) > 0 {
				if b, ok := a.Values[0].V.(goipp.Boolean); ok {
					accepting = bool(b)
				}
			}
		case "printer-state-reasons":
			for _, v := range a.Values {
				if s := v.V.String(); s != "none" {
					st.Reasons = append(st.Reasons, s)
				}
			}
		case "printer-state-message":
			if len(a.Values) > 0 {
				st.Message = a.Values[0].V.String()
			}
		}
	}
	st.State = classify(state, accepting, st.Reasons)
	return st
}

func intValue(a goipp.Attribute) int {
	if len(a.Values) > 0 {
		if i, ok := a.Values[0].V.(goipp.Integer); ok {
			return int(i)
		}
	}
	return 0
}

// Print checks the printer, submits the job and follows it to the end.
func (p *IPP) Print(ctx context.Context, job Job) error {
	if err := ValidateJob(job); err != nil {
		return err
	}
	// Refuse up front when the printer cannot print: a job queued behind a
	// paper-out would come out later, unattended.
	st, err := p.Status(ctx)
	if err != nil {
		return err
	}
	if err := st.Err(); err != nil {
		return fmt.Errorf("%w (printer reports %s)", err, strings.Join(st.Reasons, ", "))
	}

	req := p.request(goipp.OpPrintJob)
	req.Operation.Add(goipp.MakeAttribute("job-name", goipp.TagName, goipp.String(job.Name)))
	req.Operation.Add(goipp.MakeAttribute("document-format", goipp.TagMimeType, goipp.String("application/pdf")))
	if job.Copies > 1 {
		req.Job.Add(goipp.MakeAttribute("copies", goipp.TagInteger, goipp.Integer(job.Copies)))
	}
	resp, err := p.do(ctx, req, job.PDF)
	if err != nil {
		var se ippStatusError
		if errors.As(err, &se) {
			return fmt.Errorf("%w: Print-Job: %v", ErrJobRejected, se)
		}
		return err
	}
	jobID := 0
	for _, a := range resp.Job {
		if a.Name == "job-id" {
			jobID = intValue(a)
		}
	}
	if jobID == 0 {
		return fmt.Errorf("%w: Print-Job response has no job-id", ErrJobRejected)
	}
	return p.follow(ctx, jobID)
}

// follow polls the job until it ends. On the caller's deadline, or when
// the printer stops the job for a jam or empty tray, the job is canceled
// so it cannot print later, unattended.
func (p *IPP) follow(ctx context.Context, jobID int) error {
	tick := time.NewTicker(p.poll)
	defer tick.Stop()
	for {
		state, reasons, err := p.jobState(ctx, jobID)
		switch {
		case err != nil && ctx.Err() != nil:
			p.cancel(jobID)
			return fmt.Errorf("%w (job %d; %w)", ErrPrintTimeout, jobID, ctx.Err())
		case err != nil:
			// Lost track of the job: cancel it in case the printer comes
			// back and would print it unattended.
			p.cancel(jobID)
			return fmt.Errorf("%w (job %d)", err, jobID)
		case state == jobCompleted:
			return nil
		case state == jobCanceled:
			return fmt.Errorf("%w (job %d)", ErrJobCanceled, jobID)
		case state == jobAborted:
			return p.explain(ctx, jobID, ErrJobAborted, reasons)
		case state == jobProcessingStopped || state == jobPendingHeld:
			if pst, perr := p.Status(ctx); perr == nil && pst.Err() != nil && pst.State != StateOffline {
				p.cancel(jobID)
				return fmt.Errorf("%w (job %d stopped and canceled; printer reports %s)", pst.Err(), jobID, strings.Join(pst.Reasons, ", "))
			}
		}
		select {
		case <-ctx.Done():
			p.cancel(jobID)
			return fmt.Errorf("%w (job %d; %w)", ErrPrintTimeout, jobID, ctx.Err())
		case <-tick.C:
		}
	}
}

// explain turns an aborted job into the printer condition that caused it,
// if the printer reports one.
func (p *IPP) explain(ctx context.Context, jobID int, fallback error, jobReasons []string) error {
	if st, err := p.Status(ctx); err == nil && st.Err() != nil && st.State != StateStopped {
		return fmt.Errorf("%w (job %d aborted; printer reports %s)", st.Err(), jobID, strings.Join(st.Reasons, ", "))
	}
	if s := classify(3, true, jobReasons); s != StateReady {
		return fmt.Errorf("%w (job %d aborted: %s)", Status{State: s}.Err(), jobID, strings.Join(jobReasons, ", "))
	}
	return fmt.Errorf("%w (job %d: %s)", fallback, jobID, strings.Join(jobReasons, ", "))
}

// jobState asks for the job's state with Get-Job-Attributes.
func (p *IPP) jobState(ctx context.Context, jobID int) (int, []string, error) {
	req := p.request(goipp.OpGetJobAttributes)
	req.Operation.Add(goipp.MakeAttribute("job-id", goipp.TagInteger, goipp.Integer(jobID)))
	var want goipp.Values
	for _, a := range []string{"job-state", "job-state-reasons"} {
		want.Add(goipp.TagKeyword, goipp.String(a))
	}
	req.Operation.Add(goipp.Attribute{Name: "requested-attributes", Values: want})
	resp, err := p.do(ctx, req, nil)
	if err != nil {
		var se ippStatusError
		if errors.As(err, &se) && se.status == goipp.StatusErrorNotFound {
			// The printer forgot the job: it can no longer print it.
			return 0, nil, fmt.Errorf("%w: the printer no longer knows the job", ErrJobAborted)
		}
		return 0, nil, err
	}
	state := 0
	var reasons []string
	for _, a := range resp.Job {
		switch a.Name {
		case "job-state":
			state = intValue(a)
		case "job-state-reasons":
			for _, v := range a.Values {
				reasons = append(reasons, v.V.String())
			}
		}
	}
	if state < jobPending || state > jobCompleted {
		return 0, nil, fmt.Errorf("%w: job-state %d out of range", ErrJobAborted, state)
	}
	return state, reasons, nil
}

// cancelTimeout bounds the best-effort Cancel-Job after the caller's own
// deadline has passed.
const cancelTimeout = 3 * time.Second

// cancel asks the printer to cancel the job, on its own short deadline
// (the caller's context is usually already done). Failure is not reported:
// the caller already returns an error, and an unreachable printer cannot
// print the job either.
func (p *IPP) cancel(jobID int) {
	ctx, stop := context.WithTimeout(context.Background(), cancelTimeout)
	defer stop()
	req := p.request(goipp.OpCancelJob)
	req.Operation.Add(goipp.MakeAttribute("job-id", goipp.TagInteger, goipp.Integer(jobID)))
	_, _ = p.do(ctx, req, nil)
}
