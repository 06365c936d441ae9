package opsclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"

	"github.com/kioskcert/kioskcert/center/internal/admin"
)

// StartImport implements admin.Operations.
func (c *Client) StartImport(ctx context.Context, a admin.Actor, in admin.ImportStart) (admin.ImportJob, error) {
	var out admin.ImportJob
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/imports", in, &out)
	return out, err
}

// UploadImport implements admin.Operations: the file streams to the center,
// and the answer comes when the import has ended. The upload has no
// overall time limit of its own (a city's ledger takes minutes); ctx
// bounds it.
func (c *Client) UploadImport(ctx context.Context, a admin.Actor, id string, csv io.Reader) (admin.ImportJob, error) {
	var out admin.ImportJob
	cc := *c.withActor(a)
	if cc.HTTP == nil {
		cc.HTTP = &http.Client{}
	}
	err := cc.do(ctx, http.MethodPut, "/ops/imports/"+url.PathEscape(id)+"/file", csv, "text/csv", &out)
	var ae *APIError
	if err != nil && !errors.As(err, &ae) && ctx.Err() == nil {
		// The center stops reading a cancelled job's file and answers; a
		// sender still writing after it has waited for the rest can meet
		// the connection's reset instead of that answer. The job says.
		if j, serr := c.ImportJobStatus(ctx, id); serr == nil && j.State == admin.ImportCancelled {
			return j, &APIError{Status: http.StatusConflict, Code: "import_cancelled",
				Message: "the import was cancelled; the records are as they were"}
		}
	}
	return out, err
}

// ImportJobs implements admin.Operations.
func (c *Client) ImportJobs(ctx context.Context) ([]admin.ImportJob, error) {
	var out []admin.ImportJob
	err := c.doJSON(ctx, http.MethodGet, "/ops/imports", nil, &out)
	return out, err
}

// ImportJobStatus implements admin.Operations.
func (c *Client) ImportJobStatus(ctx context.Context, id string) (admin.ImportJob, error) {
	var out admin.ImportJob
	err := c.doJSON(ctx, http.MethodGet, "/ops/imports/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CancelImport implements admin.Operations.
func (c *Client) CancelImport(ctx context.Context, a admin.Actor, id string) (admin.ImportJob, error) {
	var out admin.ImportJob
	err := c.withActor(a).doJSON(ctx, http.MethodDelete, "/ops/imports/"+url.PathEscape(id), nil, &out)
	return out, err
}
