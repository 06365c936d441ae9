// Package admin holds the operators' procedures behind the issuance-center
// subcommands: initialising a center (PKI, keys, databases), enrolling and
// suspending kiosks, switching municipalities' participation, importing and
// deleting records, rotating the SMART Health Card key and revoking
// certificates. Each procedure writes an audit event where it changes what
// kiosks may do.
//
// They open the databases themselves, so they run while the center is
// stopped (bbolt allows one writer per file; a running center makes them
// fail fast with a lock error naming the file).
package admin

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/records/ledgercsv"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/keyfile"
	"github.com/kioskcert/kioskcert/pkg/vaccine"
)

// InitOptions shape a new center.
type InitOptions struct {
	Dir           string   // where the config file and everything else go
	IssuerURL     string   // SHC issuer URL
	Hosts         []string // names and addresses in the center's TLS certificate
	CardTrustFile string   // PEM trust anchors of the card issuing authority
	KioskListen   string
	PublicListen  string
	OpsListen     string
}

// ConfigFile is the name of the configuration file Init writes.
const ConfigFile = "center.json"

// Init creates a center in opts.Dir: config, records master key, kiosk CA,
// the center's TLS certificate, the first SMART Health Card key, a test
// country signing CA with a VDS-NC barcode signer, an operator token, and
// empty databases. It refuses to touch a directory that already has a config.
func Init(ctx context.Context, opts InitOptions, now time.Time) (*config.Config, error) {
	path := filepath.Join(opts.Dir, ConfigFile)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("admin: %s exists; refusing to overwrite a center", path)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	cfg := config.Default()
	if opts.IssuerURL != "" {
		cfg.IssuerURL = opts.IssuerURL
	}
	for _, p := range []struct {
		dst *string
		v   string
	}{{&cfg.KioskListen, opts.KioskListen}, {&cfg.PublicListen, opts.PublicListen}, {&cfg.OpsListen, opts.OpsListen}} {
		if p.v != "" {
			*p.dst = p.v
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	cfg.SetDir(abs)

	// Card issuing-authority trust anchors.
	trust, err := os.ReadFile(opts.CardTrustFile)
	if err != nil {
		return nil, fmt.Errorf("admin: card trust file: %w", err)
	}
	if _, err := carddata.ParseIssuerKeys(trust); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfg.Path(cfg.CardIssuerKeysFile), trust, 0o644); err != nil {
		return nil, err
	}
	// Records master key.
	if err := os.MkdirAll(cfg.Path(cfg.KeysDir), 0o700); err != nil {
		return nil, err
	}
	if _, err := records.GenerateMasterKeyFile(cfg.Path(cfg.MasterKeyFile)); err != nil {
		return nil, err
	}
	// Kiosk CA and the center's server certificate.
	ca, err := kioskpki.NewCA("kioskcert Kiosk CA", now)
	if err != nil {
		return nil, err
	}
	if err := writeCertAndKey(cfg.Path(cfg.KioskCAFile), cfg.Path(cfg.KioskCAKeyFile), ca.Cert.Raw, ca.Signer); err != nil {
		return nil, err
	}
	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	serverCert, err := ca.IssueServer(hosts, &serverKey.PublicKey, now)
	if err != nil {
		return nil, err
	}
	if err := writeCertAndKey(cfg.Path(cfg.ServerCertFile), cfg.Path(cfg.ServerKeyFile), serverCert.Raw, serverKey); err != nil {
		return nil, err
	}
	// Operator token.
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfg.Path(cfg.OpsTokenFile), []byte(hex.EncodeToString(tok)+"\n"), 0o600); err != nil {
		return nil, err
	}
	// Store and signing keys.
	st, err := boltstore.Open(cfg.Path(cfg.StoreFile), boltfile.Options{Timeout: cfg.LockTimeout.Duration})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	kr := keyring.Keyring{Dir: cfg.Path(cfg.KeysDir), Store: st}
	if _, err := kr.RotateSHC(ctx, now); err != nil {
		return nil, err
	}
	if err := kr.CreateVDS(ctx, now); err != nil {
		return nil, err
	}
	if err := cfg.Write(path); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func writeCertAndKey(certPath, keyPath string, der []byte, key crypto.Signer) error {
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return err
	}
	if err := keyfile.Write(keyPath, key); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// Session is an operator's open store and records, for one command.
type Session struct {
	Cfg       *config.Config
	Store     *boltstore.Store
	recordsDB interface{ Close() error }
	vault     *records.Vault
}

// OpenSession opens the store (and, on first use, the records).
func OpenSession(cfg *config.Config) (*Session, error) {
	st, err := boltstore.Open(cfg.Path(cfg.StoreFile), boltfile.Options{Timeout: cfg.LockTimeout.Duration})
	if err != nil {
		return nil, err
	}
	return &Session{Cfg: cfg, Store: st}, nil
}

// Records opens the records vault.
func (s *Session) Records() (*records.Vault, error) {
	if s.vault != nil {
		return s.vault, nil
	}
	master, err := records.LoadMasterKey(s.Cfg.Path(s.Cfg.MasterKeyFile))
	if err != nil {
		return nil, err
	}
	db, err := boltfile.Open(s.Cfg.Path(s.Cfg.RecordsFile), boltfile.Options{Timeout: s.Cfg.LockTimeout.Duration})
	if err != nil {
		return nil, err
	}
	v, err := records.Open(db, master, records.Options{})
	if err != nil {
		db.Close()
		return nil, err
	}
	s.recordsDB, s.vault = db, v
	return v, nil
}

// Close releases everything.
func (s *Session) Close() {
	if s.recordsDB != nil {
		s.recordsDB.Close()
	}
	s.Store.Close()
}

// Keyring returns the center's keyring.
func (s *Session) Keyring() keyring.Keyring {
	return keyring.Keyring{Dir: s.Cfg.Path(s.Cfg.KeysDir), Store: s.Store}
}

// KioskEnrollment describes a kiosk being enrolled.
type KioskEnrollment struct {
	ID, StoreName, StoreCode, Chain, Prefecture, Region string
	// OutDir receives kiosk.key, kiosk.pem and center-ca.pem for the kiosk.
	OutDir string
}

// Files written for an enrolled kiosk.
const (
	KioskKeyFile  = "kiosk.key"
	KioskCertFile = "kiosk.pem"
	CenterCAFile  = "center-ca.pem"
)

// EnrollKiosk issues a client certificate for a new kiosk and records it.
// The kiosk's key is generated here and written with the certificate and
// the CA the kiosk must pin; carry OutDir to the kiosk and delete it here.
func (s *Session) EnrollKiosk(ctx context.Context, e KioskEnrollment, now time.Time) (store.Kiosk, error) {
	caKey, err := keyfile.Load(s.Cfg.Path(s.Cfg.KioskCAKeyFile))
	if err != nil {
		return store.Kiosk{}, err
	}
	caCert, err := kioskpki.LoadCert(s.Cfg.Path(s.Cfg.KioskCAFile))
	if err != nil {
		return store.Kiosk{}, err
	}
	if _, err := s.Store.Kiosk(ctx, e.ID); err == nil {
		return store.Kiosk{}, fmt.Errorf("admin: kiosk %s is already enrolled", e.ID)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return store.Kiosk{}, err
	}
	ca := &kioskpki.CA{Cert: caCert, Signer: caKey}
	cert, err := ca.IssueKiosk(e.ID, &key.PublicKey, now)
	if err != nil {
		return store.Kiosk{}, err
	}
	k := store.Kiosk{
		ID: e.ID, StoreName: e.StoreName, StoreCode: e.StoreCode, Chain: e.Chain,
		Prefecture: e.Prefecture, Region: e.Region,
		CertSerial: fmt.Sprintf("%x", cert.SerialNumber), CertSHA256: kioskpki.Fingerprint(cert),
		EnrolledAt: now,
	}
	if err := s.Store.EnrollKiosk(ctx, k); err != nil {
		return store.Kiosk{}, err
	}
	if e.OutDir != "" {
		if err := os.MkdirAll(e.OutDir, 0o700); err != nil {
			return store.Kiosk{}, err
		}
		if err := writeCertAndKey(filepath.Join(e.OutDir, KioskCertFile), filepath.Join(e.OutDir, KioskKeyFile), cert.Raw, key); err != nil {
			return store.Kiosk{}, err
		}
		if err := os.WriteFile(filepath.Join(e.OutDir, CenterCAFile), kioskpki.EncodeCert(caCert), 0o644); err != nil {
			return store.Kiosk{}, err
		}
	}
	return s.Store.Kiosk(ctx, e.ID)
}

// SetKioskStatus suspends, reactivates or revokes a kiosk and audits it.
func (s *Session) SetKioskStatus(ctx context.Context, id string, status store.KioskStatus, reason string, now time.Time) error {
	k, err := s.Store.Kiosk(ctx, id)
	if err != nil {
		return err
	}
	if err := s.Store.SetKioskStatus(ctx, id, status, reason, now); err != nil {
		return err
	}
	_, err = s.Store.AppendEvent(ctx, store.Event{Time: now, Type: store.EventKioskStatus, KioskID: id, StoreCode: k.StoreCode, Result: string(status)})
	return err
}

// LoadDemoMunicipalities upserts the demo municipalities.
func (s *Session) LoadDemoMunicipalities(ctx context.Context) (int, error) {
	d, err := demo.Load()
	if err != nil {
		return 0, err
	}
	for _, m := range d.Municipalities {
		if err := s.Store.UpsertMunicipality(ctx, store.Municipality{
			Code: m.Code, NameJa: m.NameJa, NameEn: m.NameEn, AuthorityJa: m.AuthorityJa, AuthorityEn: m.AuthorityEn,
			Participating: m.Participating,
		}); err != nil {
			return 0, err
		}
	}
	return len(d.Municipalities), nil
}

// LoadDemoRecords imports every demo municipality's records, through the
// same CSV path a municipality's ledger export takes.
func (s *Session) LoadDemoRecords(ctx context.Context, operator string) (int, error) {
	d, err := demo.Load()
	if err != nil {
		return 0, err
	}
	v, err := s.Records()
	if err != nil {
		return 0, err
	}
	total := 0
	for _, m := range d.Municipalities {
		entries, err := ledgercsv.FromDemo(d, m.Code)
		if err != nil {
			return 0, err
		}
		if len(entries) == 0 {
			continue
		}
		res, err := v.Import(ctx, m.Code, operator, entries)
		if err != nil {
			return 0, err
		}
		total += res.Persons
	}
	return total, nil
}

// ImportCSV imports a municipality's ledger export.
func (s *Session) ImportCSV(ctx context.Context, municipality, operator, path string) (records.ImportResult, error) {
	v, err := s.Records()
	if err != nil {
		return records.ImportResult{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return records.ImportResult{}, err
	}
	defer f.Close()
	return ledgercsv.Import(ctx, v, f, municipality, operator, ledgercsv.Options{
		KnownProduct: func(c string) bool { _, err := vaccine.Lookup(c); return err == nil },
	})
}

// Revoke revokes a certificate ID in the CRL of the key that signed it.
func (s *Session) Revoke(ctx context.Context, certID, kid, reason string, now time.Time) error {
	if _, err := s.Store.SigningKey(ctx, kid); err != nil {
		return fmt.Errorf("admin: key %s: %w", kid, err)
	}
	err := s.Store.RevokeCertificate(ctx, store.Revocation{CertificateID: certID, KID: kid, RevokedAt: now, Reason: reason})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("admin: certificate %s is already revoked", certID)
	}
	return err
}
