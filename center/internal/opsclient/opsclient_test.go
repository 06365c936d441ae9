package opsclient_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/demodata"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/opsapi"
	"github.com/kioskcert/kioskcert/center/internal/opsclient"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

type noLive struct{}

func (noLive) Live() []server.KioskLive { return nil }
func (noLive) InFlight() int            { return 0 }

// newAPI serves the operations API of a fresh center (its files, a real
// admin service) on loopback, and returns the token init made for its
// first operator, op-remote.
func newAPI(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	a := carddata.Authority{Signer: k}
	copy(a.KeyID[:], "OPSCLIENT-TEST-0")
	ik, _ := a.IssuerKey()
	trust, _ := carddata.MarshalIssuerKey(ik)
	trustFile := filepath.Join(t.TempDir(), "trust.pem")
	os.WriteFile(trustFile, trust, 0o644)
	cfg, err := admin.Init(context.Background(), admin.InitOptions{Dir: filepath.Join(t.TempDir(), "center"), CardTrustFile: trustFile, Operator: "op-remote"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	svc, closeLocal, err := admin.OpenLocal(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeLocal() })
	tok, err := os.ReadFile(cfg.Path(cfg.OpsTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	auth := &opauth.Authenticator{Store: svc.Store()}
	srv := httptest.NewServer(opsapi.Handler(opsapi.Config{Auth: auth, Store: svc.Store(), Admin: svc, Accounts: svc, Live: noLive{},
		Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	return srv, strings.TrimSpace(string(tok))
}

// TestRoundTrip drives every operator action through the HTTP API and
// checks the center's state and audit, and that API errors map back to the
// store's sentinel errors.
func TestRoundTrip(t *testing.T) {
	srv, token := newAPI(t)
	c := &opsclient.Client{BaseURL: srv.URL, Token: token, Operator: "op-remote"}
	ctx := context.Background()
	op := admin.Actor{Operator: "op-remote"}
	if n, err := demodata.Load(ctx, c, op); err != nil || n == 0 {
		t.Fatalf("demo data through the API: %d, %v", n, err)
	}
	ms, err := c.ListMunicipalities(ctx)
	if err != nil || len(ms) != 3 {
		t.Fatalf("municipalities %v, %v", ms, err)
	}
	if err := c.SetParticipation(ctx, op, "112453", true); err != nil {
		t.Fatal(err)
	}
	en, err := c.EnrollKiosk(ctx, op, admin.KioskEnrollment{ID: "K-R1", StoreName: "店", StoreCode: "S1", Chain: "TEST", Prefecture: "13"})
	if err != nil || len(en.KeyPEM) == 0 || !strings.Contains(string(en.CertPEM), "CERTIFICATE") {
		t.Fatalf("enroll: %v", err)
	}
	if _, err := c.EnrollKiosk(ctx, op, admin.KioskEnrollment{ID: "K-R1", StoreName: "店", StoreCode: "S1", Chain: "TEST", Prefecture: "13"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("enroll twice: %v", err)
	}
	if k, err := c.SetKioskStatus(ctx, op, "K-R1", store.KioskSuspended, "check"); err != nil || k.Status != store.KioskSuspended {
		t.Fatalf("suspend: %+v, %v", k, err)
	}
	if _, err := c.SetKioskStatus(ctx, op, "K-NONE", store.KioskSuspended, "check"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("suspend an unknown kiosk: %v", err)
	}
	if _, err := c.SetKioskStatus(ctx, op, "K-R1", store.KioskSuspended, ""); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("suspend without a reason: %v", err)
	}
	counts, err := c.RecordCounts(ctx)
	if err != nil || len(counts) != 2 {
		t.Fatalf("record counts %v, %v", counts, err)
	}
	kid, err := c.RotateSHCKey(ctx, op)
	if err != nil || kid == "" {
		t.Fatalf("rotate: %v", err)
	}
	if err := c.RevokeCertificate(ctx, op, "4M41JFDVR4JS", kid, "misprint"); err != nil {
		t.Fatal(err)
	}
	// A rejected file names rows and columns, and nothing is imported.
	_, err = c.ImportRecords(ctx, op, "012041", admin.ImportOptions{}, strings.NewReader("municipality_code,my_number\n012041,123\n"))
	var ae *opsclient.APIError
	if !errors.As(err, &ae) || ae.Code != "invalid_file" || len(ae.Problems) == 0 || strings.Contains(err.Error(), "123\n") {
		t.Fatalf("bad file: %v", err)
	}
	if n, err := c.DeleteRecords(ctx, op, "011002"); err != nil || n == 0 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	// The token names the operator: a client that does not say acts as
	// the token's operator; one that names another is refused.
	anon := &opsclient.Client{BaseURL: srv.URL, Token: token}
	if err := anon.SetParticipation(ctx, admin.Actor{}, "012041", false); err != nil {
		t.Fatalf("action without X-Operator: %v", err)
	}
	other := &opsclient.Client{BaseURL: srv.URL, Token: token, Operator: "op-someone-else"}
	if err := other.SetParticipation(ctx, admin.Actor{}, "012041", true); !errors.As(err, &ae) || ae.Code != "operator_mismatch" {
		t.Fatalf("action naming another operator: %v", err)
	}
	// A viewer's token reads but changes nothing.
	if _, err := c.AddOperator(ctx, op, admin.NewOperator{ID: "op-viewer", Role: store.RoleViewer, TokenOnly: true}); err != nil {
		t.Fatal(err)
	}
	vt, err := c.IssueAPIToken(ctx, op, "op-viewer", "script", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	viewer := &opsclient.Client{BaseURL: srv.URL, Token: vt.Token}
	if who, err := viewer.Whoami(ctx); err != nil || who.ID != "op-viewer" {
		t.Fatalf("whoami = %+v, %v", who, err)
	}
	if _, err := viewer.ListKiosks(ctx); err != nil {
		t.Fatalf("viewer reads: %v", err)
	}
	if _, err := viewer.RotateSHCKey(ctx, admin.Actor{}); !errors.Is(err, opauth.ErrNoPermission) {
		t.Fatalf("viewer rotates a key: %v", err)
	}
	if _, err := viewer.IssueAPIToken(ctx, admin.Actor{}, "op-remote", "steal", 0); !errors.Is(err, opauth.ErrNoPermission) {
		t.Fatalf("viewer issues a token for another operator: %v", err)
	}
	// A revoked token stops at once.
	if err := c.RevokeAPIToken(ctx, op, vt.Record.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := viewer.ListKiosks(ctx); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("revoked token: %v", err)
	}
	// Every change above is audited with the token's operator.
	evs, err := c.Audit(ctx, store.EventQuery{Type: store.EventParticipation})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Operator != "op-remote" || e.Source != "127.0.0.1" {
			t.Errorf("participation change audited as %q from %q", e.Operator, e.Source)
		}
	}
	// Wrong token.
	bad := &opsclient.Client{BaseURL: srv.URL, Token: strings.Repeat("x", 32), Operator: "op"}
	if _, err := bad.ListKiosks(ctx); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("wrong token: %v", err)
	}
	// Nobody listening.
	gone := &opsclient.Client{BaseURL: "http://127.0.0.1:1", Token: token, Operator: "op"}
	if _, err := gone.ListKiosks(ctx); !errors.Is(err, opsclient.ErrUnreachable) {
		t.Fatalf("unreachable center: %v", err)
	}
}
