// Package enrollment gives kiosks their identity without their private
// key ever leaving the kiosk: a kiosk makes its own key (in its TPM where
// it has one), and sends a certificate signing request either with a
// one-time enrollment code (a new kiosk, over the enrollment endpoint) or
// over its authenticated connection (renewal before its certificate
// expires). The center's online kiosk issuing CA, whose key is in the
// center's key source, certifies the key; the store records the
// certificate, which is what the kiosk channel's handshake checks.
//
// Enrollment codes are 16 characters of Crockford's base32 (80 random
// bits), shown in groups of four. Only SHA-256(kiosk ID ‖ 0 ‖ code) is
// stored; a code is bound to one kiosk ID, expires, is spent by its first
// use and is voided after store.MaxEnrollmentAttempts wrong tries.
package enrollment

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/authority"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/refusal"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Code lifetimes.
const (
	DefaultCodeTTL = 72 * time.Hour
	MaxCodeTTL     = 14 * 24 * time.Hour
)

// Audit event types written here.
const (
	EventCodeIssued  store.EventType = "kiosk_enrollment_code"
	EventEnrolled    store.EventType = "kiosk_enrolled_by_csr"
	EventEnrollFail  store.EventType = "kiosk_enrollment_refused"
	EventCertRenewed store.EventType = "kiosk_certificate_renewed"
	// EventRenewRefused records a renewal the center refused: its result
	// says why (kiosk_suspended, kiosk_revoked, bad_csr, …).
	EventRenewRefused store.EventType = "kiosk_certificate_renewal_refused"
)

// Errors.
var (
	// ErrRefused means an enrollment was refused: no such code, a wrong,
	// spent or expired code. The kiosk is told no more than that.
	ErrRefused = errors.New("enrollment: refused: the kiosk ID and code do not match an unused, unexpired enrollment code; ask the operator for a new code")
	// ErrBadCSR means the request is malformed or names another kiosk.
	ErrBadCSR = errors.New("enrollment: bad certificate signing request")
)

// crockford is Crockford's base32 alphabet: no I, L, O or U to misread.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewCode returns a fresh code, formatted XXXX-XXXX-XXXX-XXXX.
func NewCode() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	var sb strings.Builder
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(crockford[c&31])
	}
	return sb.String(), nil
}

// Normalize reads a code as a person may type it: case, spaces and
// dashes do not matter, and I, L and O are read as 1, 1 and 0.
func Normalize(code string) string {
	var sb strings.Builder
	for _, r := range strings.ToUpper(code) {
		switch r {
		case '-', ' ':
			continue
		case 'I', 'L':
			r = '1'
		case 'O':
			r = '0'
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// HashCode is what the store keeps for a code of a kiosk.
func HashCode(kioskID, code string) string {
	sum := sha256.Sum256([]byte(kioskID + "\x00" + Normalize(code)))
	return hex.EncodeToString(sum[:])
}

// Store is what the service needs of the center's store.
type Store interface {
	store.KioskStore
	store.EnrollmentStore
	store.AuditLog
}

// Config wires a Service.
type Config struct {
	Store Store
	// IssuingCA returns the online kiosk issuing CA (keyring.Keyring's
	// KioskIssuingCA); asked at each use, so a replacement installed on a
	// running center takes effect at once.
	IssuingCA func(ctx context.Context) (*kioskpki.CA, error)
	// CenterCA is the kiosk CA's certificate (PEM), the root kiosks pin.
	CenterCA []byte
	Now      func() time.Time
	Log      *slog.Logger
}

// Service enrolls and renews kiosks.
type Service struct{ cfg Config }

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.IssuingCA == nil || len(cfg.CenterCA) == 0 {
		return nil, errors.New("enrollment: store, issuing CA and center CA are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Service{cfg: cfg}, nil
}

// certify checks a kiosk's CSR and certifies it with the issuing CA,
// returning the certificate and the chain (PEM, leaf first).
func (s *Service) certify(ctx context.Context, kioskID string, csrDER []byte) (*x509.Certificate, []byte, error) {
	csr, err := authority.ParseRequest(csrDER)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if csr.Subject.CommonName != kioskID {
		return nil, nil, fmt.Errorf("%w: its common name is not the kiosk's ID", ErrBadCSR)
	}
	ca, err := s.cfg.IssuingCA(ctx)
	if err != nil {
		return nil, nil, err
	}
	cert, err := ca.IssueKiosk(kioskID, csr.PublicKey, s.cfg.Now())
	if err != nil {
		return nil, nil, err
	}
	chain := append(kioskpki.EncodeCert(cert), kioskpki.EncodeCert(ca.Cert)...)
	return cert, chain, nil
}

func certRef(c *x509.Certificate) store.KioskCertificate {
	return store.KioskCertificate{Serial: c.SerialNumber.Text(16), SHA256: kioskpki.Fingerprint(c)}
}

// Enroll certifies a new kiosk's key against its one-time code. Refusals
// for the code are ErrRefused (the cause is logged and audited, not told).
func (s *Service) Enroll(ctx context.Context, r protocol.EnrollRequest, source string) (protocol.EnrollResponse, error) {
	if err := r.Validate(); err != nil {
		return protocol.EnrollResponse{}, err
	}
	cert, chain, err := s.certify(ctx, r.KioskID, r.CSR)
	if err != nil {
		return protocol.EnrollResponse{}, err
	}
	now := s.cfg.Now()
	k, err := s.cfg.Store.RedeemEnrollmentCode(ctx, r.KioskID, HashCode(r.KioskID, r.Code), certRef(cert), now)
	if err != nil {
		result := "refused"
		switch {
		case errors.Is(err, store.ErrNotFound):
			result = "wrong_code"
		case errors.Is(err, store.ErrUsed):
			result = "code_used"
		case errors.Is(err, store.ErrExpired):
			result = "code_expired"
		case errors.Is(err, store.ErrExists):
			result = "already_enrolled"
		default:
			return protocol.EnrollResponse{}, err
		}
		s.audit(ctx, store.Event{Type: EventEnrollFail, KioskID: r.KioskID, Result: result, Source: sourceIdent(source)})
		s.cfg.Log.Warn("kiosk enrollment refused", "kiosk", r.KioskID, "result", result, "source", source)
		return protocol.EnrollResponse{}, fmt.Errorf("%w (%s)", ErrRefused, result)
	}
	s.audit(ctx, store.Event{Type: EventEnrolled, KioskID: k.ID, StoreCode: k.StoreCode, Result: "ok", Source: sourceIdent(source)})
	s.cfg.Log.Info("kiosk enrolled by certificate request", "kiosk", k.ID, "serial", k.CertSerial)
	return protocol.EnrollResponse{Chain: string(chain), CenterCA: string(s.cfg.CenterCA)}, nil
}

// Renew certifies an enrolled, active kiosk's key anew (the kiosk is
// authenticated by its current certificate on the connection asking).
// It returns the new chain (PEM, leaf first). Refusals are refusal errors
// the connection passes on as they are: kiosk_not_allowed for a kiosk that
// is not (or no longer) active, bad_message for a CSR that is malformed or
// names another kiosk; both are audited. Anything else is internal (the
// kiosk tries again later).
func (s *Service) Renew(ctx context.Context, kioskID string, csrDER []byte) ([]byte, error) {
	k, err := s.cfg.Store.Kiosk(ctx, kioskID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, s.refuseRenewal(ctx, store.Kiosk{ID: kioskID}, "kiosk_unknown",
			refusal.WithDetail(protocol.CodeKioskNotAllowed, "renew: this kiosk is not enrolled", err))
	case err != nil:
		return nil, err
	case k.Status != store.KioskActive:
		return nil, s.refuseRenewal(ctx, k, "kiosk_"+string(k.Status),
			refusal.WithDetail(protocol.CodeKioskNotAllowed, "renew: this kiosk is not active",
				fmt.Errorf("enrollment: kiosk %s is %s: %w", kioskID, k.Status, store.ErrTransition)))
	}
	cert, chain, err := s.certify(ctx, kioskID, csrDER)
	if errors.Is(err, ErrBadCSR) {
		return nil, s.refuseRenewal(ctx, k, "bad_csr",
			refusal.WithDetail(protocol.CodeBadMessage, "renew: csr is not a signed request naming this kiosk", err))
	}
	if err != nil {
		return nil, err
	}
	err = s.cfg.Store.RenewKioskCertificate(ctx, kioskID, certRef(cert), s.cfg.Now())
	switch {
	case errors.Is(err, store.ErrTransition), errors.Is(err, store.ErrNotFound):
		// Suspended or revoked between the look-up and now.
		return nil, s.refuseRenewal(ctx, k, "kiosk_not_active",
			refusal.WithDetail(protocol.CodeKioskNotAllowed, "renew: this kiosk is not active", err))
	case err != nil:
		return nil, err
	}
	s.audit(ctx, store.Event{Type: EventCertRenewed, KioskID: kioskID, StoreCode: k.StoreCode, Result: "ok"})
	s.cfg.Log.Info("kiosk certificate renewed", "kiosk", kioskID, "serial", cert.SerialNumber.Text(16), "notAfter", cert.NotAfter)
	return chain, nil
}

// refuseRenewal audits a refused renewal (result: a code of [a-z_], no
// personal data), logs it and returns err.
func (s *Service) refuseRenewal(ctx context.Context, k store.Kiosk, result string, err error) error {
	s.audit(ctx, store.Event{Type: EventRenewRefused, KioskID: k.ID, StoreCode: k.StoreCode, Result: result})
	s.cfg.Log.Warn("kiosk certificate renewal refused", "kiosk", k.ID, "result", result, "err", err)
	return err
}

func (s *Service) audit(ctx context.Context, e store.Event) {
	e.Time = s.cfg.Now()
	if _, err := s.cfg.Store.AppendEvent(ctx, e); err != nil {
		s.cfg.Log.Error("audit enrollment event", "type", e.Type, "err", err)
	}
}

// sourceIdent keeps an address to what an audit event's source allows.
func sourceIdent(addr string) string {
	var sb strings.Builder
	for i := 0; i < len(addr) && sb.Len() < 64; i++ {
		c := addr[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-' {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// Handler serves POST /v1/enroll for kiosks without a certificate.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/enroll", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 3*protocol.MaxCSR))
		if err != nil {
			http.Error(w, "enrollment: read request", http.StatusBadRequest)
			return
		}
		req, err := protocol.DecodeEnrollRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := s.Enroll(r.Context(), req, r.RemoteAddr)
		switch {
		case errors.Is(err, ErrRefused):
			http.Error(w, ErrRefused.Error(), http.StatusForbidden)
			return
		case errors.Is(err, ErrBadCSR):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			s.cfg.Log.Error("kiosk enrollment failed", "kiosk", req.KioskID, "err", err)
			http.Error(w, "enrollment: the center could not enroll the kiosk now; try again later", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
	return mux
}
