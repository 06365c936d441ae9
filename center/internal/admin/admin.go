// Package admin is the operators' procedures as a service inside the
// running center: enrolling, suspending and revoking kiosks, switching
// municipalities' participation, importing and deleting records, rotating
// the SMART Health Card key and revoking certificates. The operations API
// (center/internal/opsapi) exposes it to the issuance-center commands and
// the operations console; a command run against a stopped center's files
// (maintenance) uses the same Service on its own backend.
//
// Every action that changes what kiosks may do, or what the center holds,
// leaves an audit event naming the operator, the object and where the
// action came from (brief §2: operations are logged per user ID). A kiosk
// suspended or revoked here loses its connections at once.
//
// Init, which creates a center's files, is the one procedure that runs
// outside a center.
package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/auditlog"
	"github.com/kioskcert/kioskcert/center/internal/backend"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/keyfile"
)

// Operations is everything an operator can do, as the CLI and the console
// call it: on a running center through the operations API, or on a stopped
// center's files through a local Service.
type Operations interface {
	ListKiosks(ctx context.Context) ([]store.Kiosk, error)
	EnrollKiosk(ctx context.Context, a Actor, e KioskEnrollment) (Enrollment, error)
	SetKioskStatus(ctx context.Context, a Actor, id string, status store.KioskStatus, reason string) (store.Kiosk, error)
	ListMunicipalities(ctx context.Context) ([]store.Municipality, error)
	PutMunicipality(ctx context.Context, a Actor, m store.Municipality) error
	SetParticipation(ctx context.Context, a Actor, code string, participating bool) error
	ImportRecords(ctx context.Context, a Actor, municipality string, opts ImportOptions, csv io.Reader) (records.ImportResult, error)
	// StartImport, UploadImport, ImportJobs, ImportJobStatus and
	// CancelImport run an import as a job whose progress can be watched
	// and which can be cancelled (imports.go).
	StartImport(ctx context.Context, a Actor, in ImportStart) (ImportJob, error)
	UploadImport(ctx context.Context, a Actor, id string, csv io.Reader) (ImportJob, error)
	ImportJobs(ctx context.Context) ([]ImportJob, error)
	ImportJobStatus(ctx context.Context, id string) (ImportJob, error)
	CancelImport(ctx context.Context, a Actor, id string) (ImportJob, error)
	// SetRecordFlag and ClearRecordFlag change one person's flags
	// (counter only with its reason, deceased, moved out): the operator
	// types the My Number; it goes to the records only.
	SetRecordFlag(ctx context.Context, a Actor, municipality, myNumber string, c records.FlagChange) error
	ClearRecordFlag(ctx context.Context, a Actor, municipality, myNumber string, k records.FlagKind) error
	RecordCounts(ctx context.Context) ([]records.RegionCount, error)
	DeleteRecords(ctx context.Context, a Actor, municipality string) (int, error)
	RotateSHCKey(ctx context.Context, a Actor) (string, error)
	RevokeCertificate(ctx context.Context, a Actor, certificateID, kid, reason string) error
	// VerifyAudit checks the audit log's hash chain and signed checkpoints
	// and recomputes the settlement counters of firstDay..lastDay
	// (YYYY-MM-DD; empty for none).
	VerifyAudit(ctx context.Context, firstDay, lastDay string) (*auditlog.Report, error)
	// CreateEnrollmentCode records a kiosk to enroll itself by CSR and
	// returns its one-time code.
	CreateEnrollmentCode(ctx context.Context, a Actor, e KioskEnrollment, ttl time.Duration) (EnrollmentCode, error)
	// RequestCertificate makes a key for an offline authority to certify.
	RequestCertificate(ctx context.Context, a Actor, purpose store.KeyPurpose) (CertificateRequest, error)
	// InstallCertificate puts an offline authority's certificate in service.
	InstallCertificate(ctx context.Context, a Actor, certPEM []byte) (Installed, error)
}

// Actor is who asks for an action and from where.
type Actor struct {
	// Operator is the operator's ID (1-64 of [A-Za-z0-9._:-]).
	Operator string `json:"operator"`
	// Source is the address the request came from, or "local".
	Source string `json:"source"`
}

// Errors.
var (
	// ErrNoOperator means an action that changes something came without an
	// operator ID: every change must be traceable to a person.
	ErrNoOperator = errors.New("admin: an operator ID is required (1-64 characters of [A-Za-z0-9._:-])")
	// ErrNoKeyBundles means EnrollKiosk (a kiosk key made at the center)
	// was asked of a production center.
	ErrNoKeyBundles = errors.New("admin: this center does not make kiosk keys; issue a one-time code (kiosk enroll-code) and enroll on the kiosk (kiosk-agent enroll), docs/KEYS.md")
)

// KioskCloser closes a kiosk's connections (server.Server).
type KioskCloser interface {
	CloseKiosk(kioskID string) int
}

// KeyRefresher reloads the signing keys after a rotation (keyring.Signers).
type KeyRefresher interface {
	Refresh(ctx context.Context) (bool, error)
}

// Config wires a Service.
type Config struct {
	Store   store.Store
	Records backend.Records
	Keys    keyring.Keyring
	// Center is the center's configuration (for installing its TLS
	// certificate); may be nil.
	Center *config.Config
	// KeyBundles allows EnrollKiosk, which makes a kiosk's key at the
	// center: demo and test centers only. Production kiosks make their own
	// key and enroll with a one-time code (CreateEnrollmentCode).
	KeyBundles bool
	// Kiosks, when set, loses a suspended or revoked kiosk's connections.
	Kiosks KioskCloser
	// Signers, when set, picks up a rotated key at once.
	Signers KeyRefresher
	// Sealer seals operators' second factors (accounts, operators.go);
	// PasswordParams hash their passwords (zero: opauth.DefaultParams).
	Sealer         *opauth.Sealer
	PasswordParams opauth.Params
	Now            func() time.Time
	Log            *slog.Logger
}

// Service carries out operator actions.
type Service struct {
	cfg     Config
	imports importJobs
}

var _ Operations = (*Service)(nil)

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Records == nil || cfg.Keys.Store == nil || cfg.Keys.Source == nil {
		return nil, errors.New("admin: store, records and keyring are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Service{cfg: cfg}, nil
}

// WithLog sets where the service logs operator actions.
func (s *Service) WithLog(log *slog.Logger) *Service {
	s.cfg.Log = log
	return s
}

// Store returns the store the service acts on (for the read-only views
// that sit beside the actions).
func (s *Service) Store() store.Store { return s.cfg.Store }

// audit records an operator action.
func (s *Service) audit(ctx context.Context, a Actor, e store.Event) error {
	e.Time, e.Operator, e.Source = s.cfg.Now(), a.Operator, a.Source
	if _, err := s.cfg.Store.AppendEvent(ctx, e); err != nil {
		return fmt.Errorf("admin: audit %s: %w", e.Type, err)
	}
	s.cfg.Log.Info("operator action", "type", e.Type, "operator", a.Operator, "source", a.Source,
		"kiosk", e.KioskID, "municipality", e.Municipality, "certificate", e.CertificateID, "object", e.Object, "result", e.Result)
	return nil
}

func checkActor(a Actor) error {
	probe := store.Event{Time: time.Now(), Type: store.EventKioskStatus, Operator: a.Operator, Source: a.Source}
	if a.Operator == "" || probe.Validate() != nil {
		return ErrNoOperator
	}
	return nil
}

// ListKiosks returns the enrolled kiosks.
func (s *Service) ListKiosks(ctx context.Context) ([]store.Kiosk, error) {
	return s.cfg.Store.ListKiosks(ctx)
}

// KioskEnrollment describes a kiosk being enrolled.
type KioskEnrollment struct {
	ID         string `json:"id"`
	StoreName  string `json:"storeName"`
	StoreCode  string `json:"storeCode"`
	Chain      string `json:"chain"`
	Prefecture string `json:"prefecture"`
	Region     string `json:"region"`
}

// Enrollment is what an enrolled kiosk needs: its key and client
// certificate, and the CA it pins for the center. Carry it to the kiosk
// and delete every other copy.
type Enrollment struct {
	Kiosk    store.Kiosk `json:"kiosk"`
	KeyPEM   []byte      `json:"keyPem"`
	CertPEM  []byte      `json:"certPem"`
	CenterCA []byte      `json:"centerCaPem"`
}

// Files of an enrollment, as the kiosk agent's configuration names them.
const (
	KioskKeyFile  = "kiosk.key"
	KioskCertFile = "kiosk.pem"
	CenterCAFile  = "center-ca.pem"
)

// EnrollKiosk makes a key for a new kiosk at the center, issues its client
// certificate and records it: demo and test centers only (Config.KeyBundles).
func (s *Service) EnrollKiosk(ctx context.Context, a Actor, e KioskEnrollment) (Enrollment, error) {
	if err := checkActor(a); err != nil {
		return Enrollment{}, err
	}
	if !s.cfg.KeyBundles {
		return Enrollment{}, ErrNoKeyBundles
	}
	now := s.cfg.Now()
	k := store.Kiosk{
		ID: e.ID, StoreName: e.StoreName, StoreCode: e.StoreCode, Chain: e.Chain,
		Prefecture: e.Prefecture, Region: e.Region, EnrolledAt: now,
		// Placeholders so the fields a caller supplies are checked before a
		// certificate is issued for them.
		CertSerial: "0", CertSHA256: fmt.Sprintf("%064x", 0),
	}
	if err := k.Validate(); err != nil {
		return Enrollment{}, err
	}
	if _, err := s.cfg.Store.Kiosk(ctx, e.ID); err == nil {
		return Enrollment{}, fmt.Errorf("%w: kiosk %s is already enrolled", store.ErrExists, e.ID)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Enrollment{}, err
	}
	ca, err := s.cfg.Keys.KioskIssuingCA(ctx)
	if err != nil {
		return Enrollment{}, err
	}
	cert, err := ca.IssueKiosk(e.ID, &key.PublicKey, now)
	if err != nil {
		return Enrollment{}, err
	}
	k.CertSerial, k.CertSHA256 = cert.SerialNumber.Text(16), kioskpki.Fingerprint(cert)
	if err := s.cfg.Store.EnrollKiosk(ctx, k); err != nil {
		return Enrollment{}, err
	}
	keyPEM, err := keyfile.Marshal(key)
	if err != nil {
		return Enrollment{}, err
	}
	if err := s.audit(ctx, a, store.Event{Type: store.EventKioskEnrolled, KioskID: k.ID, StoreCode: k.StoreCode, Result: string(store.KioskActive)}); err != nil {
		return Enrollment{}, err
	}
	k, err = s.cfg.Store.Kiosk(ctx, e.ID)
	if err != nil {
		return Enrollment{}, err
	}
	centerCA, err := os.ReadFile(s.cfg.Keys.KioskCAFile)
	if err != nil {
		return Enrollment{}, fmt.Errorf("admin: kiosk CA certificate: %w", err)
	}
	return Enrollment{Kiosk: k, KeyPEM: keyPEM, CertPEM: append(kioskpki.EncodeCert(cert), kioskpki.EncodeCert(ca.Cert)...), CenterCA: centerCA}, nil
}

// SetKioskStatus suspends, reactivates or revokes a kiosk. A kiosk that is
// no longer active loses its open connections at once; its reconnection is
// refused at the handshake.
func (s *Service) SetKioskStatus(ctx context.Context, a Actor, id string, status store.KioskStatus, reason string) (store.Kiosk, error) {
	if err := checkActor(a); err != nil {
		return store.Kiosk{}, err
	}
	k, err := s.cfg.Store.Kiosk(ctx, id)
	if err != nil {
		return store.Kiosk{}, err
	}
	if err := s.cfg.Store.SetKioskStatus(ctx, id, status, reason, s.cfg.Now()); err != nil {
		return store.Kiosk{}, err
	}
	if status != store.KioskActive && s.cfg.Kiosks != nil {
		s.cfg.Kiosks.CloseKiosk(id)
	}
	if err := s.audit(ctx, a, store.Event{Type: store.EventKioskStatus, KioskID: id, StoreCode: k.StoreCode, Result: string(status)}); err != nil {
		return store.Kiosk{}, err
	}
	return s.cfg.Store.Kiosk(ctx, id)
}

// ListMunicipalities returns every municipality.
func (s *Service) ListMunicipalities(ctx context.Context) ([]store.Municipality, error) {
	return s.cfg.Store.ListMunicipalities(ctx)
}

// PutMunicipality adds a municipality or replaces its names and participation.
func (s *Service) PutMunicipality(ctx context.Context, a Actor, m store.Municipality) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if err := s.cfg.Store.UpsertMunicipality(ctx, m); err != nil {
		return err
	}
	return s.audit(ctx, a, store.Event{Type: store.EventMunicipalitySet, Municipality: m.Code, Result: participation(m.Participating)})
}

// SetParticipation switches a municipality's kiosk issuance on or off.
// Kiosks see the change in their next hello; requests are checked against
// it at once.
func (s *Service) SetParticipation(ctx context.Context, a Actor, code string, participating bool) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if err := s.cfg.Store.SetParticipation(ctx, code, participating); err != nil {
		return err
	}
	return s.audit(ctx, a, store.Event{Type: store.EventParticipation, Municipality: code, Result: participation(participating)})
}

func participation(on bool) string {
	if on {
		return "participating"
	}
	return "not_participating"
}

// ImportOptions say what a ledger file is.
type ImportOptions struct {
	// Mode is records.ModeFull (the whole ledger; the default) or
	// records.ModeChanges (added, changed and removed persons).
	Mode records.ImportMode `json:"mode,omitempty"`
	// Encoding is "auto" (the default), "utf-8" or "cp932".
	Encoding string `json:"encoding,omitempty"`
}

// ImportRecords imports a municipality's ledger export (all or nothing)
// and waits for it: an import job started and sent its file at once.
func (s *Service) ImportRecords(ctx context.Context, a Actor, municipality string, opts ImportOptions, csv io.Reader) (records.ImportResult, error) {
	j, err := s.StartImport(ctx, a, ImportStart{Municipality: municipality, ImportOptions: opts})
	if err != nil {
		return records.ImportResult{Municipality: municipality, Mode: opts.Mode}, err
	}
	id := j.ID
	j, err = s.UploadImport(ctx, a, id, csv)
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up: so does the import.
			s.CancelImport(context.WithoutCancel(ctx), a, id)
		}
		return records.ImportResult{Municipality: municipality, Mode: opts.Mode}, err
	}
	return *j.Result, nil
}

// RecordCounts returns the number of records per region.
func (s *Service) RecordCounts(ctx context.Context) ([]records.RegionCount, error) {
	return s.cfg.Records.Counts(ctx)
}

// DeleteRecords destroys a municipality's records and keys
// (crypto-shredding) and returns how many records it held.
func (s *Service) DeleteRecords(ctx context.Context, a Actor, municipality string) (int, error) {
	if err := checkActor(a); err != nil {
		return 0, err
	}
	n, err := s.cfg.Records.DeleteRegion(ctx, municipality, a.Operator)
	if err != nil {
		return 0, err
	}
	return n, s.audit(ctx, a, store.Event{Type: store.EventRecordsDeleted, Municipality: municipality, Result: "ok"})
}

// RotateSHCKey makes a new SMART Health Card key active; the previous one
// stays published as retired. This instance signs with the new key at
// once; others sharing the store at their next key refresh.
func (s *Service) RotateSHCKey(ctx context.Context, a Actor) (string, error) {
	if err := checkActor(a); err != nil {
		return "", err
	}
	kid, err := s.cfg.Keys.RotateSHC(ctx, s.cfg.Now())
	if err != nil {
		return "", err
	}
	if s.cfg.Signers != nil {
		if _, err := s.cfg.Signers.Refresh(ctx); err != nil {
			s.cfg.Log.Error("load the rotated key", "kid", kid, "err", err)
		}
	}
	return kid, s.audit(ctx, a, store.Event{Type: store.EventKeyRotated, Object: kid, Result: "ok"})
}

// RevokeCertificate revokes a certificate ID in the revocation list of the
// key that signed it.
func (s *Service) RevokeCertificate(ctx context.Context, a Actor, certificateID, kid, reason string) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if _, err := s.cfg.Store.SigningKey(ctx, kid); err != nil {
		return fmt.Errorf("admin: key %s: %w", kid, err)
	}
	err := s.cfg.Store.RevokeCertificate(ctx, store.Revocation{CertificateID: certificateID, KID: kid, RevokedAt: s.cfg.Now(), Reason: reason})
	if err != nil {
		return err
	}
	return s.audit(ctx, a, store.Event{Type: store.EventCertificateRevoke, CertificateID: certificateID, Object: kid, Result: reason})
}

// VerifyAudit implements Operations.
func (s *Service) VerifyAudit(ctx context.Context, firstDay, lastDay string) (*auditlog.Report, error) {
	if (firstDay == "") != (lastDay == "") {
		return nil, fmt.Errorf("%w: give both days of the settlement range, or neither", store.ErrInvalid)
	}
	if firstDay != "" {
		if _, err := store.ParseDay(firstDay); err != nil {
			return nil, err
		}
		if _, err := store.ParseDay(lastDay); err != nil {
			return nil, err
		}
	}
	return auditlog.Verify(ctx, s.cfg.Store, firstDay, lastDay)
}

// SetRecordFlag implements Operations. The audit event names the
// municipality and the flag's kind, never the person or the reason.
func (s *Service) SetRecordFlag(ctx context.Context, a Actor, municipality, myNumber string, c records.FlagChange) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if err := s.cfg.Records.SetFlag(ctx, municipality, myNumber, a.Operator, c); err != nil {
		return err
	}
	return s.audit(ctx, a, store.Event{Type: store.EventRecordFlagSet, Municipality: municipality, Result: c.Kind.String()})
}

// ClearRecordFlag implements Operations.
func (s *Service) ClearRecordFlag(ctx context.Context, a Actor, municipality, myNumber string, k records.FlagKind) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if err := s.cfg.Records.ClearFlag(ctx, municipality, myNumber, a.Operator, k); err != nil {
		return err
	}
	return s.audit(ctx, a, store.Event{Type: store.EventRecordFlagCleared, Municipality: municipality, Result: k.String()})
}
