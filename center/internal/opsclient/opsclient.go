// Package opsclient calls a running center's operations API
// (center/internal/opsapi): it implements admin.Operations over HTTP, so
// the issuance-center commands work on a running center exactly as on a
// stopped center's files, and scripts can do the same.
package opsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/auditlog"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/opsapi"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// ErrUnreachable means no center answered at the address.
var ErrUnreachable = errors.New("opsclient: the center's operations API did not answer")

// Client calls one center's operations API.
type Client struct {
	// BaseURL is the API's address, e.g. http://127.0.0.1:8081.
	BaseURL string
	// Token is the bearer token.
	Token string
	// Operator, when set, is sent as X-Operator: the center refuses the
	// call if the token belongs to someone else (the token decides who
	// acts; this only catches a mix-up).
	Operator string
	// HTTP defaults to a client with a 10-minute overall timeout (a large
	// ledger import streams for minutes).
	HTTP *http.Client
}

var _ admin.Operations = (*Client)(nil)

// APIError is an error answer of the API.
type APIError struct {
	Status  int
	Code    string
	Message string
	// Problems lists a rejected import's problems by row and column.
	Problems []string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("center refused (%s): %s", e.Code, e.Message)
	for i, p := range e.Problems {
		if i == 20 {
			msg += fmt.Sprintf("\n  … and %d more", len(e.Problems)-20)
			break
		}
		msg += "\n  " + p
	}
	return msg
}

// Is maps API errors to the store's sentinel errors, so callers test them
// as they would a local Service's.
func (e *APIError) Is(target error) bool {
	switch e.Code {
	case "not_found":
		return target == store.ErrNotFound
	case "exists":
		return target == store.ErrExists
	case "invalid":
		return target == store.ErrInvalid
	case "transition":
		return target == store.ErrTransition
	case "no_operator":
		return target == admin.ErrNoOperator
	case "forbidden":
		return target == opauth.ErrNoPermission
	case "own_account":
		return target == admin.ErrOwnAccount
	case "import_running":
		return target == admin.ErrImportRunning || target == records.ErrImportRunning
	case "import_state":
		return target == admin.ErrImportState
	case "import_cancelled":
		return target == admin.ErrImportCancelled
	case "import_elsewhere":
		return target == admin.ErrImportElsewhere
	}
	return false
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("opsclient: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if c.Operator != "" {
		req.Header.Set(opsapi.OperatorHeader, c.Operator)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" && ctx.Err() == nil {
			return fmt.Errorf("%w at %s (is it running? for a stopped center, run the command with -offline): %w", ErrUnreachable, c.BaseURL, err)
		}
		return fmt.Errorf("opsclient: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("opsclient: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var ae struct {
			opsapi.Error
			Problems []struct {
				Row     int
				Column  string
				Problem string
			} `json:"problems"`
		}
		if json.Unmarshal(b, &ae) != nil || ae.Code == "" {
			return &APIError{Status: resp.StatusCode, Code: "http_" + fmt.Sprint(resp.StatusCode), Message: strings.TrimSpace(string(b))}
		}
		e := &APIError{Status: resp.StatusCode, Code: ae.Code, Message: ae.Message}
		for _, p := range ae.Problems {
			switch {
			case p.Row == 0:
				e.Problems = append(e.Problems, "file: "+p.Problem)
			case p.Column == "":
				e.Problems = append(e.Problems, fmt.Sprintf("row %d: %s", p.Row, p.Problem))
			default:
				e.Problems = append(e.Problems, fmt.Sprintf("row %d, column %s: %s", p.Row, p.Column, p.Problem))
			}
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("opsclient: decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	return c.do(ctx, method, path, body, "application/json", out)
}

// Actor applies to a remote call as the client's operator: the center
// records the caller's address itself.
func (c *Client) withActor(a admin.Actor) *Client {
	if a.Operator == "" || a.Operator == c.Operator {
		return c
	}
	cc := *c
	cc.Operator = a.Operator
	return &cc
}

// ListKiosks implements admin.Operations.
func (c *Client) ListKiosks(ctx context.Context) ([]store.Kiosk, error) {
	var out struct {
		Enrolled []store.Kiosk `json:"enrolled"`
	}
	err := c.doJSON(ctx, http.MethodGet, "/ops/kiosks", nil, &out)
	return out.Enrolled, err
}

// EnrollKiosk implements admin.Operations.
func (c *Client) EnrollKiosk(ctx context.Context, a admin.Actor, e admin.KioskEnrollment) (admin.Enrollment, error) {
	var out admin.Enrollment
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/kiosks", e, &out)
	return out, err
}

// SetKioskStatus implements admin.Operations.
func (c *Client) SetKioskStatus(ctx context.Context, a admin.Actor, id string, status store.KioskStatus, reason string) (store.Kiosk, error) {
	var out store.Kiosk
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/kiosks/"+url.PathEscape(id)+"/status", opsapi.KioskStatusChange{Status: status, Reason: reason}, &out)
	return out, err
}

// ListMunicipalities implements admin.Operations.
func (c *Client) ListMunicipalities(ctx context.Context) ([]store.Municipality, error) {
	var out []store.Municipality
	err := c.doJSON(ctx, http.MethodGet, "/ops/municipalities", nil, &out)
	return out, err
}

// PutMunicipality implements admin.Operations.
func (c *Client) PutMunicipality(ctx context.Context, a admin.Actor, m store.Municipality) error {
	return c.withActor(a).doJSON(ctx, http.MethodPut, "/ops/municipalities/"+url.PathEscape(m.Code), m, nil)
}

// SetParticipation implements admin.Operations.
func (c *Client) SetParticipation(ctx context.Context, a admin.Actor, code string, participating bool) error {
	return c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/municipalities/"+url.PathEscape(code)+"/participation", opsapi.Participation{Participating: participating}, nil)
}

// ImportRecords implements admin.Operations: an import job started and
// sent the file at once (POST /ops/imports, PUT its file); the file streams
// to the center. A caller that gives up (ctx) cancels the job.
func (c *Client) ImportRecords(ctx context.Context, a admin.Actor, municipality string, opts admin.ImportOptions, csv io.Reader) (records.ImportResult, error) {
	fail := records.ImportResult{Municipality: municipality, Mode: opts.Mode}
	j, err := c.StartImport(ctx, a, admin.ImportStart{Municipality: municipality, ImportOptions: opts})
	if err != nil {
		return fail, err
	}
	id := j.ID
	j, err = c.UploadImport(ctx, a, id, csv)
	if err != nil {
		if ctx.Err() != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			c.CancelImport(cctx, a, id)
			cancel()
		}
		return fail, err
	}
	if j.Result == nil {
		return fail, fmt.Errorf("opsclient: import job %s ended %s without a result", j.ID, j.State)
	}
	return *j.Result, nil
}

// SetRecordFlag implements admin.Operations.
func (c *Client) SetRecordFlag(ctx context.Context, a admin.Actor, municipality, myNumber string, ch records.FlagChange) error {
	return c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/records/"+url.PathEscape(municipality)+"/flags",
		opsapi.RecordFlag{MyNumber: myNumber, Kind: ch.Kind.String(), Reason: ch.Reason.String(), Date: ch.Date}, nil)
}

// ClearRecordFlag implements admin.Operations.
func (c *Client) ClearRecordFlag(ctx context.Context, a admin.Actor, municipality, myNumber string, k records.FlagKind) error {
	return c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/records/"+url.PathEscape(municipality)+"/flags",
		opsapi.RecordFlag{MyNumber: myNumber, Kind: k.String(), Clear: true}, nil)
}

// RecordCounts implements admin.Operations.
func (c *Client) RecordCounts(ctx context.Context) ([]records.RegionCount, error) {
	var out []records.RegionCount
	err := c.doJSON(ctx, http.MethodGet, "/ops/records", nil, &out)
	return out, err
}

// DeleteRecords implements admin.Operations.
func (c *Client) DeleteRecords(ctx context.Context, a admin.Actor, municipality string) (int, error) {
	var out opsapi.Deleted
	err := c.withActor(a).doJSON(ctx, http.MethodDelete, "/ops/records/"+url.PathEscape(municipality), nil, &out)
	return out.Records, err
}

// RotateSHCKey implements admin.Operations.
func (c *Client) RotateSHCKey(ctx context.Context, a admin.Actor) (string, error) {
	var out opsapi.Rotated
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/keys/shc/rotate", nil, &out)
	return out.KID, err
}

// RevokeCertificate implements admin.Operations.
func (c *Client) RevokeCertificate(ctx context.Context, a admin.Actor, certificateID, kid, reason string) error {
	return c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/revocations", opsapi.RevocationRequest{CertificateID: certificateID, KID: kid, Reason: reason}, nil)
}

// VerifyAudit implements admin.Operations.
func (c *Client) VerifyAudit(ctx context.Context, firstDay, lastDay string) (*auditlog.Report, error) {
	var out auditlog.Report
	q := url.Values{}
	if firstDay != "" {
		q.Set("from", firstDay)
		q.Set("to", lastDay)
	}
	err := c.doJSON(ctx, http.MethodGet, "/ops/audit/verify?"+q.Encode(), nil, &out)
	return &out, err
}

var _ admin.Accounts = (*Client)(nil)

// Whoami returns the operator the client's token acts as.
func (c *Client) Whoami(ctx context.Context) (admin.OperatorInfo, error) {
	var out admin.OperatorInfo
	err := c.doJSON(ctx, http.MethodGet, "/ops/whoami", nil, &out)
	return out, err
}

// AddOperator implements admin.Accounts.
func (c *Client) AddOperator(ctx context.Context, a admin.Actor, n admin.NewOperator) (admin.OperatorCreated, error) {
	var out admin.OperatorCreated
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/operators", n, &out)
	return out, err
}

// ListOperators implements admin.Accounts.
func (c *Client) ListOperators(ctx context.Context) ([]admin.OperatorInfo, error) {
	var out []admin.OperatorInfo
	err := c.doJSON(ctx, http.MethodGet, "/ops/operators", nil, &out)
	return out, err
}

// ChangeOperator implements admin.Accounts.
func (c *Client) ChangeOperator(ctx context.Context, a admin.Actor, id string, ch admin.OperatorChange) (admin.OperatorInfo, error) {
	var out admin.OperatorInfo
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/operators/"+url.PathEscape(id), ch, &out)
	return out, err
}

// ResetCredentials implements admin.Accounts.
func (c *Client) ResetCredentials(ctx context.Context, a admin.Actor, id, password string) (admin.OperatorCreated, error) {
	var out admin.OperatorCreated
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/operators/"+url.PathEscape(id)+"/reset", opsapi.PasswordReset{Password: password}, &out)
	return out, err
}

// IssueAPIToken implements admin.Accounts.
func (c *Client) IssueAPIToken(ctx context.Context, a admin.Actor, operator, label string, ttl time.Duration) (admin.IssuedToken, error) {
	var out admin.IssuedToken
	req := opsapi.TokenRequest{Operator: operator, Label: label}
	if ttl > 0 {
		req.TTL = ttl.String()
	}
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/tokens", req, &out)
	return out, err
}

// ListAPITokens implements admin.Accounts.
func (c *Client) ListAPITokens(ctx context.Context, operator string) ([]store.APIToken, error) {
	var out []store.APIToken
	err := c.doJSON(ctx, http.MethodGet, "/ops/tokens?operator="+url.QueryEscape(operator), nil, &out)
	return out, err
}

// RevokeAPIToken implements admin.Accounts.
func (c *Client) RevokeAPIToken(ctx context.Context, a admin.Actor, id string) error {
	return c.withActor(a).doJSON(ctx, http.MethodDelete, "/ops/tokens/"+url.PathEscape(id), nil, nil)
}

// Audit returns audit events matching q (kiosk, request, municipality,
// certificate, operator, result, type, time range, limit, order; paging by
// position is not offered over the API: narrow the time range instead).
func (c *Client) Audit(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	v := url.Values{}
	for k, s := range map[string]string{"kiosk": q.KioskID, "request": q.RequestID, "municipality": q.Municipality,
		"certificate": q.CertificateID, "operator": q.Operator, "result": q.Result, "type": string(q.Type)} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.From.IsZero() {
		v.Set("since", q.From.Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("until", q.To.Format(time.RFC3339))
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	if q.Descending {
		v.Set("order", "desc")
	}
	var out []store.Event
	err := c.doJSON(ctx, http.MethodGet, "/ops/audit?"+v.Encode(), nil, &out)
	return out, err
}
