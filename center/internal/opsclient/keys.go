package opsclient

import (
	"context"
	"net/http"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/opsapi"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// CreateEnrollmentCode implements admin.Operations.
func (c *Client) CreateEnrollmentCode(ctx context.Context, a admin.Actor, e admin.KioskEnrollment, ttl time.Duration) (admin.EnrollmentCode, error) {
	var out admin.EnrollmentCode
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/kiosks/codes", opsapi.EnrollmentCodeRequest{KioskEnrollment: e, TTLSeconds: int64(ttl / time.Second)}, &out)
	return out, err
}

// RequestCertificate implements admin.Operations.
func (c *Client) RequestCertificate(ctx context.Context, a admin.Actor, purpose store.KeyPurpose) (admin.CertificateRequest, error) {
	var out admin.CertificateRequest
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/keys/requests", opsapi.CertificateRequestBody{Purpose: purpose}, &out)
	return out, err
}

// InstallCertificate implements admin.Operations.
func (c *Client) InstallCertificate(ctx context.Context, a admin.Actor, certPEM []byte) (admin.Installed, error) {
	var out admin.Installed
	err := c.withActor(a).doJSON(ctx, http.MethodPost, "/ops/keys/certificates", opsapi.CertificateInstallBody{CertificatePEM: string(certPEM)}, &out)
	return out, err
}
