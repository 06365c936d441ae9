// Package loadtest drives an issuance center the way a fleet of kiosks
// does, to measure it and to check, under load and injected faults, that
// every answer is bound to the request that asked for it and that no
// request is issued twice (the failure behind other people's certificates
// printed at convenience stores; docs/BENCHMARKS.md).
//
// Run connects each Kiosk with its own enrolled client certificate and
// loops: Issue → check the answer's request ID, card digest, copies,
// certificate kinds and holder against the card it sent → Outcome
// "printed" → Ack. With DisconnectRate set, some requests lose their
// connection on purpose, either right after the Issue is sent or right
// after its certificate arrives; the kiosk reconnects and repeats the same
// request ID, and in the second case checks that the center replays the
// certificate it already issued (same certificate IDs, same QR payload).
//
// The Report has throughput, latency percentiles and errors by code.
// CheckAudit then compares the center's audit log with what the kiosks
// received: exactly one "issued" event per certificate handed out, under
// the request that received it, and one "printed" event per Ack.
//
// A center to drive comes from SelfHost (a throwaway center in a temporary
// directory, with demo data and enrolled kiosks) or from an existing one
// (LoadKiosks reads enrolled kiosks' credentials, carddata.LoadAuthority the
// test card authority the center trusts, and DemoCards makes cards of the demo
// residents, whose records the center must hold).
package loadtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Kiosk is one enrolled kiosk: its ID (the Common Name of its client
// certificate) and its TLS configuration with that certificate and the
// pinned center CA.
type Kiosk struct {
	ID  string
	TLS *tls.Config
}

// Card is one card a kiosk presents, and what the kiosk checks the answer
// against: the holder's name and birth date as the card has them.
type Card struct {
	Raw          carddata.Raw
	Municipality string
	Kind         certificate.Kind
	HolderName   string
	BirthDate    string // YYYY-MM-DD
}

// Config shapes a run.
type Config struct {
	// Addr is the center's kiosk listener (host:port).
	Addr   string
	Kiosks []Kiosk
	// Cards[i] are the cards kiosk i presents in turn (at least one each).
	Cards [][]Card
	// Requests per kiosk; 0 runs until Duration has passed.
	Requests int
	// Duration bounds the run when Requests is 0.
	Duration time.Duration
	// DisconnectRate is the probability that a request loses its connection
	// on purpose (half before its answer, half after).
	DisconnectRate float64
	// Timeout bounds each dial, write and read. Default 30 s.
	Timeout time.Duration
	// Retries is how often a request answered with a retryable error
	// (rate_limited, unavailable, internal_error) is repeated, with a short
	// back-off. Default 3.
	Retries int
	// Reconnects is how often a request whose connection failed (its
	// center instance died; a load balancer moves the kiosk to another)
	// is repeated on a new connection under the same request ID, as the
	// kiosk agent does: the center answers with the replay of what it
	// issued, or issues it once. An outcome whose Ack was lost is sent
	// again the same way. Default 0: a connection failure fails the
	// request.
	Reconnects int
	// Seed makes the fault injection repeatable.
	Seed uint64
	Log  *slog.Logger
}

// Fault names an injected disconnect.
type Fault string

// Faults.
const (
	NoFault        Fault = ""
	BeforeResponse Fault = "before_response" // connection closed right after the Issue was sent
	AfterResponse  Fault = "after_response"  // connection closed after the certificate, before the outcome
)

// Result is one request.
type Result struct {
	KioskID   string
	RequestID string
	Kind      certificate.Kind
	Fault     Fault
	// CertificateIDs are those of the answer the kiosk accepted.
	CertificateIDs []string
	// Replayed is true when the accepted answer was a replay.
	Replayed bool
	// Acked is true when the center acknowledged the outcome; Cancelled
	// when that outcome was cancelled rather than printed.
	Acked, Cancelled bool
	// Issue is the time from sending Issue to an accepted answer
	// (reconnects included); Cycle adds the outcome and its Ack.
	Issue, Cycle time.Duration
	// Err is "" on success, else an error code (a protocol code or one of
	// this package's: binding, replay_mismatch, connection).
	Err    string
	Detail string
	// Retries counts answers with retryable errors before the last.
	Retries []string
}

// Error codes of this package, beside the protocol's.
const (
	ErrCodeBinding        = "binding"         // an answer not bound to its request
	ErrCodeReplayMismatch = "replay_mismatch" // a repeated request got another certificate
	ErrCodeConnection     = "connection"      // dial, write or read failed
)

// Run drives the center until every kiosk has sent Requests requests (or
// Duration passed, or ctx ended) and reports. It returns an error only
// for a configuration it cannot run; failures under load are in the Report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Addr == "" || len(cfg.Kiosks) == 0 || len(cfg.Cards) != len(cfg.Kiosks) {
		return nil, errors.New("loadtest: need the center's address, kiosks, and cards for each kiosk")
	}
	for i, cs := range cfg.Cards {
		if len(cs) == 0 {
			return nil, fmt.Errorf("loadtest: kiosk %s has no cards", cfg.Kiosks[i].ID)
		}
	}
	if cfg.Requests <= 0 && cfg.Duration <= 0 {
		return nil, errors.New("loadtest: set Requests per kiosk or a Duration")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 3
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Requests <= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	start := time.Now()
	results := make([][]Result, len(cfg.Kiosks))
	var wg sync.WaitGroup
	for i, k := range cfg.Kiosks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &runner{cfg: &cfg, kiosk: k, cards: cfg.Cards[i], rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)))}
			results[i] = r.run(ctx)
		}()
	}
	wg.Wait()
	return newReport(len(cfg.Kiosks), time.Since(start), results), nil
}

// runner is one kiosk's loop; it owns its connection.
type runner struct {
	cfg   *Config
	kiosk Kiosk
	cards []Card
	rng   *rand.Rand
	c     *conn
}

func (r *runner) run(ctx context.Context) []Result {
	defer func() {
		if r.c != nil {
			r.c.close()
		}
	}()
	var out []Result
	for n := 0; r.cfg.Requests <= 0 || n < r.cfg.Requests; n++ {
		if ctx.Err() != nil {
			break
		}
		card := r.cards[n%len(r.cards)]
		fault := NoFault
		if r.cfg.DisconnectRate > 0 && r.rng.Float64() < r.cfg.DisconnectRate {
			fault = []Fault{BeforeResponse, AfterResponse}[r.rng.IntN(2)]
		}
		res := r.one(card, fault)
		if res.Err != "" {
			r.cfg.Log.Warn("request failed", "kiosk", r.kiosk.ID, "request", res.RequestID, "code", res.Err, "detail", res.Detail)
			// Start the next request on a fresh connection.
			r.drop()
		}
		out = append(out, res)
	}
	return out
}

func (r *runner) drop() {
	if r.c != nil {
		r.c.close()
		r.c = nil
	}
}

func (r *runner) connect() error {
	if r.c != nil {
		return nil
	}
	c, err := dial(r.cfg.Addr, r.kiosk, r.cfg.Timeout)
	if err != nil {
		return err
	}
	r.c = c
	return nil
}

// exchange sends req on the current connection (connecting if needed) and
// reads its answer; with fault BeforeResponse the connection is closed
// right after the send and the request repeated on a new one.
func (r *runner) exchange(req protocol.Issue, fault Fault) (*protocol.CertificateResponse, *protocol.Error, error) {
	if err := r.connect(); err != nil {
		return nil, nil, err
	}
	if err := r.c.send(req); err != nil {
		return nil, nil, err
	}
	if fault == BeforeResponse {
		r.drop()
		if err := r.connect(); err != nil {
			return nil, nil, err
		}
		if err := r.c.send(req); err != nil {
			return nil, nil, err
		}
	}
	return r.c.answer(req.RequestID)
}

func (r *runner) one(card Card, fault Fault) Result {
	req := protocol.Issue{RequestID: protocol.NewRequestID(), Municipality: card.Municipality, Kind: card.Kind, Copies: 1, Card: card.Raw}
	res := Result{KioskID: r.kiosk.ID, RequestID: req.RequestID, Kind: card.Kind, Fault: fault}
	fail := func(code string, err error) Result {
		res.Err = code
		if err != nil {
			res.Detail = err.Error()
		}
		return res
	}
	start := time.Now()
	var resp *protocol.CertificateResponse
	reconnects := 0
	for attempt := 0; ; attempt++ {
		var perr *protocol.Error
		var err error
		resp, perr, err = r.exchange(req, fault)
		fault = NoFault // a repeat after a retryable error is not faulted again
		switch {
		case errors.Is(err, errBinding):
			return fail(ErrCodeBinding, err)
		case err != nil && reconnects < r.cfg.Reconnects:
			reconnects++
			res.Retries = append(res.Retries, ErrCodeConnection)
			r.reconnectPause(reconnects)
			attempt-- // not a retryable answer: Retries counts those
			continue
		case err != nil:
			return fail(ErrCodeConnection, err)
		case perr != nil && perr.Retryable && attempt < r.cfg.Retries:
			res.Retries = append(res.Retries, string(perr.Code))
			time.Sleep(max(time.Duration(20*(attempt+1))*time.Millisecond, time.Duration(perr.RetryAfterMs)*time.Millisecond))
			continue
		case perr != nil:
			return fail(string(perr.Code), perr)
		}
		break
	}
	if err := checkBinding(req, card, resp); err != nil {
		return fail(ErrCodeBinding, err)
	}
	if res.Fault == AfterResponse {
		// The kiosk lost the connection after the certificate arrived: the
		// repeat must replay exactly what was issued.
		first := resp
		r.drop()
		again, perr, err := r.exchange(req, NoFault)
		switch {
		case errors.Is(err, errBinding):
			return fail(ErrCodeBinding, err)
		case err != nil:
			return fail(ErrCodeConnection, err)
		case perr != nil:
			return fail(string(perr.Code), perr)
		}
		if err := checkBinding(req, card, again); err != nil {
			return fail(ErrCodeBinding, err)
		}
		if err := sameCertificates(first, again); err != nil {
			return fail(ErrCodeReplayMismatch, err)
		}
		resp = again
	}
	res.Issue = time.Since(start)
	res.Replayed = resp.Replayed
	for _, c := range resp.Certificates {
		res.CertificateIDs = append(res.CertificateIDs, c.ID)
	}

	// Printed: report the outcome and wait for the Ack.
	var perr *protocol.Error
	var err error
	for settleRetries := 0; ; {
		perr, err = r.settle(req)
		switch {
		case err != nil && !errors.Is(err, errBinding) && reconnects < r.cfg.Reconnects:
			reconnects++
			res.Retries = append(res.Retries, ErrCodeConnection)
			r.reconnectPause(reconnects)
			continue
		case err == nil && perr != nil && perr.Retryable && settleRetries < r.cfg.Retries:
			settleRetries++
			res.Retries = append(res.Retries, string(perr.Code))
			time.Sleep(max(time.Duration(20*settleRetries)*time.Millisecond, time.Duration(perr.RetryAfterMs)*time.Millisecond))
			continue
		}
		break
	}
	switch {
	case errors.Is(err, errBinding):
		return fail(ErrCodeBinding, err)
	case err != nil:
		return fail(ErrCodeConnection, err)
	case perr != nil:
		return fail(string(perr.Code), perr)
	}
	res.Acked = true
	res.Cycle = time.Since(start)
	return res
}

// settle sends the printed outcome (connecting if needed) and reads its Ack.
func (r *runner) settle(req protocol.Issue) (*protocol.Error, error) {
	if err := r.connect(); err != nil {
		return nil, err
	}
	if err := r.c.send(protocol.Outcome{RequestID: req.RequestID, Outcome: protocol.OutcomePrinted, Copies: req.Copies}); err != nil {
		return nil, err
	}
	return r.c.ack(req.RequestID)
}

// reconnectPause drops the failed connection and waits before the n-th
// reconnection (a growing pause: the load balancer needs a moment to see
// the instance is gone).
func (r *runner) reconnectPause(n int) {
	r.drop()
	time.Sleep(min(time.Duration(n)*200*time.Millisecond, 2*time.Second))
}

// checkBinding is what a kiosk checks before printing: the answer names
// the request and the card files it sent, has the certificates of the
// kind asked for, for the copies asked for, about the card's holder.
func checkBinding(req protocol.Issue, card Card, resp *protocol.CertificateResponse) error {
	kinds := []certificate.Kind{certificate.Domestic}
	if req.Kind == certificate.Overseas {
		kinds = []certificate.Kind{certificate.Overseas, certificate.Domestic}
	}
	switch {
	case resp.RequestID != req.RequestID:
		return fmt.Errorf("%w: answer names request %s", errBinding, resp.RequestID)
	case resp.CardDigest != protocol.CardDigest(req.Card):
		return fmt.Errorf("%w: answer is for other card data", errBinding)
	case resp.Copies != req.Copies:
		return fmt.Errorf("%w: %d copies, asked for %d", errBinding, resp.Copies, req.Copies)
	case len(resp.Certificates) != len(kinds):
		return fmt.Errorf("%w: %d certificates for the %s kind", errBinding, len(resp.Certificates), req.Kind)
	}
	for i, c := range resp.Certificates {
		switch {
		case c.Kind != kinds[i]:
			return fmt.Errorf("%w: certificate %d is %s", errBinding, i, c.Kind)
		case c.Issuer.MunicipalityCode != req.Municipality:
			return fmt.Errorf("%w: certificate %d issued by another municipality", errBinding, i)
		case c.Holder.Name != card.HolderName || c.Holder.BirthDate != card.BirthDate:
			// Names are compared exactly: the center copies the registered
			// name, and the cards here carry the same form.
			return fmt.Errorf("%w: certificate %d is about someone else", errBinding, i)
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("%w: certificate %d: %w", errBinding, i, err)
		}
	}
	return nil
}

// sameCertificates checks a replay against the first answer.
func sameCertificates(first, again *protocol.CertificateResponse) error {
	if !again.Replayed {
		return errors.New("loadtest: the repeat was issued afresh, not replayed")
	}
	if len(first.Certificates) != len(again.Certificates) {
		return errors.New("loadtest: the replay has another number of certificates")
	}
	for i := range first.Certificates {
		a, b := first.Certificates[i], again.Certificates[i]
		if a.ID != b.ID || a.SHC != b.SHC || !bytes.Equal([]byte(a.VDSNC), []byte(b.VDSNC)) {
			return fmt.Errorf("loadtest: the replay's certificate %d differs (IDs %s and %s)", i, a.ID, b.ID)
		}
	}
	return nil
}
