package printer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/OpenPrinting/goipp"
)

// responder is a scripted IPP printer for the conditions ippeveprinter
// cannot produce: error-severity reasons (it reports every condition with
// "-report"), covers, toner, a stopped printer, refused jobs, jobs canceled
// at the printer, a job held in processing-stopped, and malformed answers.
type responder struct {
	mu        sync.Mutex
	state     int      // printer-state
	reasons   []string // printer-state-reasons
	accepting bool
	printJob  goipp.Status // status answered to Print-Job
	noJobID   bool
	jobStates []int // job-state answered to successive Get-Job-Attributes
	httpFail  bool

	ops       []goipp.Op
	printReq  *goipp.Message
	document  []byte
	cancelled bool
}

func newResponder() *responder {
	return &responder{state: 3, accepting: true, printJob: goipp.StatusOk, jobStates: []int{jobProcessing, jobCompleted}}
}

func (r *responder) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.httpFail {
		http.Error(w, "broken", http.StatusInternalServerError)
		return
	}
	var req goipp.Message
	if err := req.Decode(hr.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	op := goipp.Op(req.Code)
	r.ops = append(r.ops, op)
	resp := goipp.NewResponse(req.Version, goipp.StatusOk, req.RequestID)
	resp.Operation.Add(goipp.MakeAttribute("attributes-charset", goipp.TagCharset, goipp.String("utf-8")))
	resp.Operation.Add(goipp.MakeAttribute("attributes-natural-language", goipp.TagLanguage, goipp.String("en")))
	switch op {
	case goipp.OpGetPrinterAttributes:
		resp.Printer.Add(goipp.MakeAttribute("printer-state", goipp.TagEnum, goipp.Integer(r.state)))
		var rv goipp.Values
		if len(r.reasons) == 0 {
			rv.Add(goipp.TagKeyword, goipp.String("none"))
		}
		for _, s := range r.reasons {
			rv.Add(goipp.TagKeyword, goipp.String(s))
		}
		resp.Printer.Add(goipp.Attribute{Name: "printer-state-reasons", Values: rv})
		resp.Printer.Add(goipp.MakeAttribute("printer-is-accepting-jobs", goipp.TagBoolean, goipp.Boolean(r.accepting)))
		resp.Printer.Add(goipp.MakeAttribute("printer-state-message", goipp.TagText, goipp.String("scripted")))
	case goipp.OpPrintJob:
		r.printReq = &req
		r.document, _ = io.ReadAll(hr.Body)
		resp.Code = goipp.Code(r.printJob)
		if r.printJob == goipp.StatusOk && !r.noJobID {
			resp.Job.Add(goipp.MakeAttribute("job-id", goipp.TagInteger, goipp.Integer(42)))
			resp.Job.Add(goipp.MakeAttribute("job-state", goipp.TagEnum, goipp.Integer(jobPending)))
		}
	case goipp.OpGetJobAttributes:
		s := r.jobStates[0]
		if len(r.jobStates) > 1 {
			r.jobStates = r.jobStates[1:]
		}
		if r.cancelled {
			s = jobCanceled
		}
		resp.Job.Add(goipp.MakeAttribute("job-state", goipp.TagEnum, goipp.Integer(s)))
		resp.Job.Add(goipp.MakeAttribute("job-state-reasons", goipp.TagKeyword, goipp.String("none")))
	case goipp.OpCancelJob:
		r.cancelled = true
	default:
		resp.Code = goipp.Code(goipp.StatusErrorOperationNotSupported)
	}
	w.Header().Set("Content-Type", goipp.ContentType)
	resp.Encode(w)
}

func (r *responder) sawOp(op goipp.Op) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.ops {
		if o == op {
			return true
		}
	}
	return false
}

func startResponder(t *testing.T, setup func(*responder)) (*responder, *IPP) {
	t.Helper()
	r := newResponder()
	setup(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	p, err := NewIPP(strings.Replace(srv.URL, "http://", "ipp://", 1)+"/ipp/print", IPPOptions{PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r, p
}

var pdfDoc = []byte("%PDF-1.7\n% test document\n%%EOF\n")

func TestIPPConditions(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(*responder)
		want      error // nil: success
		printSent bool  // whether Print-Job may be sent
		cancel    bool  // whether Cancel-Job must be sent
	}{
		{"ready", func(*responder) {}, nil, true, false},
		{"paper out, error severity", func(r *responder) { r.state, r.reasons = 5, []string{"media-empty-error"} }, ErrPaperOut, false, false},
		{"media needed warning", func(r *responder) { r.reasons = []string{"media-needed-warning"} }, ErrPaperOut, false, false},
		{"jam", func(r *responder) { r.state, r.reasons = 5, []string{"media-jam-error"} }, ErrPaperJam, false, false},
		{"jam wins over paper out", func(r *responder) { r.reasons = []string{"media-empty", "media-jam"} }, ErrPaperJam, false, false},
		{"cover open", func(r *responder) { r.state, r.reasons = 5, []string{"cover-open-error"} }, ErrCoverOpen, false, false},
		{"toner empty", func(r *responder) { r.state, r.reasons = 5, []string{"toner-empty-error"} }, ErrSupplyEmpty, false, false},
		{"offline reason", func(r *responder) { r.state, r.reasons = 5, []string{"offline-report"} }, ErrPrinterOffline, false, false},
		{"stopped, other reason", func(r *responder) { r.state, r.reasons = 5, []string{"other-error"} }, ErrPrinterStopped, false, false},
		{"not accepting jobs", func(r *responder) { r.accepting = false }, ErrPrinterStopped, false, false},
		{"low toner does not stop printing", func(r *responder) { r.reasons = []string{"toner-low-warning"} }, nil, true, false},
		{"busy printer takes the job", func(r *responder) { r.state = 4 }, nil, true, false},
		{"HTTP failure", func(r *responder) { r.httpFail = true }, ErrPrinterOffline, false, false},
		{"format refused", func(r *responder) { r.printJob = goipp.StatusErrorDocumentFormatNotSupported }, ErrJobRejected, true, false},
		{"no job-id", func(r *responder) { r.noJobID = true }, ErrJobRejected, true, false},
		{"canceled at the printer", func(r *responder) { r.jobStates = []int{jobProcessing, jobCanceled} }, ErrJobCanceled, true, false},
		{"aborted, no reason", func(r *responder) { r.jobStates = []int{jobAborted} }, ErrJobAborted, true, false},
		{"stopped mid-job by a jam", func(r *responder) {
			r.jobStates = []int{jobProcessing, jobProcessingStopped}
			r.ops = nil
			go func() { // the jam happens after the job starts
				for !r.sawOp(goipp.OpPrintJob) {
					time.Sleep(time.Millisecond)
				}
				r.mu.Lock()
				r.state, r.reasons = 5, []string{"media-jam-error"}
				r.mu.Unlock()
			}()
		}, ErrPaperJam, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, p := startResponder(t, tc.setup)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := p.Print(ctx, Job{Name: "req-42", PDF: pdfDoc, Copies: 3})
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Print: %v, want %v", err, tc.want)
			}
			if got := r.sawOp(goipp.OpPrintJob); got && !tc.printSent {
				t.Error("Print-Job was sent to a printer that could not print")
			}
			if got := r.sawOp(goipp.OpCancelJob); got != tc.cancel {
				t.Errorf("Cancel-Job sent: %v, want %v", got, tc.cancel)
			}
		})
	}
}

// TestIPPRequest checks what Print sends: the operation attributes, the
// copies, the job name and the document bytes after the IPP message.
func TestIPPRequest(t *testing.T) {
	r, p := startResponder(t, func(*responder) {})
	if err := p.Print(context.Background(), Job{Name: "req-42", PDF: pdfDoc, Copies: 3}); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !bytes.Equal(r.document, pdfDoc) {
		t.Errorf("document = %q, want the PDF", r.document)
	}
	get := func(attrs goipp.Attributes, name string) string {
		for _, a := range attrs {
			if a.Name == name && len(a.Values) > 0 {
				return a.Values[0].V.String()
			}
		}
		return ""
	}
	want := map[string]string{
		"job-name": "req-42", "document-format": "application/pdf", "requesting-user-name": "kiosk",
		"attributes-charset": "utf-8",
	}
	for name, v := range want {
		if got := get(r.printReq.Operation, name); got != v {
			t.Errorf("%s = %q, want %q", name, got, v)
		}
	}
	if !strings.HasPrefix(get(r.printReq.Operation, "printer-uri"), "ipp://127.0.0.1:") {
		t.Errorf("printer-uri = %q", get(r.printReq.Operation, "printer-uri"))
	}
	if got := get(r.printReq.Job, "copies"); got != "3" {
		t.Errorf("copies = %q, want 3", got)
	}
}

// TestIPPTimeoutResponder: a job that never finishes is canceled at the
// deadline.
func TestIPPTimeoutResponder(t *testing.T) {
	r, p := startResponder(t, func(r *responder) { r.jobStates = []int{jobProcessing} })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := p.Print(ctx, Job{Name: "req-42", PDF: pdfDoc, Copies: 1})
	if !errors.Is(err, ErrPrintTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Print: %v, want ErrPrintTimeout", err)
	}
	if !r.sawOp(goipp.OpCancelJob) {
		t.Error("the job was not canceled at the deadline")
	}
}

func TestNewIPP(t *testing.T) {
	tests := []struct {
		uri, endpoint, printerURI string
		ok                        bool
	}{
		{"ipp://printer.local/ipp/print", "http://printer.local:631/ipp/print", "ipp://printer.local/ipp/print", true},
		{"ipps://printer.local:8443/ipp/print", "https://printer.local:8443/ipp/print", "ipps://printer.local:8443/ipp/print", true},
		{"http://127.0.0.1:8631/ipp/print", "http://127.0.0.1:8631/ipp/print", "ipp://127.0.0.1:8631/ipp/print", true},
		{"lpd://printer/queue", "", "", false},
		{"ipp:///nohost", "", "", false},
	}
	for _, tc := range tests {
		p, err := NewIPP(tc.uri, IPPOptions{})
		if (err == nil) != tc.ok {
			t.Errorf("NewIPP(%q): err %v, want ok=%v", tc.uri, err, tc.ok)
			continue
		}
		if err == nil && (p.endpoint != tc.endpoint || p.uri != tc.printerURI) {
			t.Errorf("NewIPP(%q): endpoint %q uri %q, want %q %q", tc.uri, p.endpoint, p.uri, tc.endpoint, tc.printerURI)
		}
	}
}
