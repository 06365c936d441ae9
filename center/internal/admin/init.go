package admin

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/backend"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/keyring"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/keyfile"
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
	// ConsoleListen is the console's address; empty leaves the console off.
	ConsoleListen string
	// Operator is the ID of the first operator: an administrator account
	// for scripts (no console login) whose API token Init writes to
	// keys/ops.token, so the issuance-center commands work at once.
	// Empty means "admin". Create console accounts with AddOperator
	// (`issuance-center operator add`).
	Operator string
}

// ConfigFile is the name of the configuration file Init writes.
const ConfigFile = "center.json"

// Init creates a center in opts.Dir: config, records master key, kiosk CA,
// the center's and the console's TLS certificates, the first SMART Health
// Card key, a test country signing CA with a VDS-NC barcode signer, the
// operator key, the first operator (an administrator for scripts) with its
// API token in keys/ops.token, and the databases. It refuses to touch a directory that already has a config.
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
	}{{&cfg.KioskListen, opts.KioskListen}, {&cfg.PublicListen, opts.PublicListen}, {&cfg.OpsListen, opts.OpsListen}, {&cfg.ConsoleListen, opts.ConsoleListen}} {
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
	// The console's certificate, from the same CA, for the same hosts.
	consoleKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	consoleCert, err := ca.IssueServer(hosts, &consoleKey.PublicKey, now)
	if err != nil {
		return nil, err
	}
	if err := writeCertAndKey(cfg.Path(cfg.ConsoleCertFile), cfg.Path(cfg.ConsoleKeyFile), consoleCert.Raw, consoleKey); err != nil {
		return nil, err
	}
	sealer, err := opauth.LoadOrCreateSealer(cfg.Path(cfg.OperatorKeyFile))
	if err != nil {
		return nil, err
	}
	// Databases and signing keys.
	b, err := backend.Open(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	kr := KeyringFor(&cfg, b)
	if _, err := kr.RotateSHC(ctx, now); err != nil {
		return nil, err
	}
	if err := kr.CreateVDS(ctx, now); err != nil {
		return nil, err
	}
	// The first operator and its API token (keys/ops.token).
	first := opts.Operator
	if first == "" {
		first = "admin"
	}
	svc, err := New(Config{Store: b.Store, Records: b.Records, Keys: kr, Sealer: sealer, Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	actor := Actor{Operator: first, Source: "local"}
	if _, err := svc.AddOperator(ctx, actor, NewOperator{ID: first, Role: store.RoleAdministrator, TokenOnly: true}); err != nil {
		return nil, fmt.Errorf("admin: first operator: %w", err)
	}
	tok, err := svc.IssueAPIToken(ctx, actor, first, "init", 0)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfg.Path(cfg.OpsTokenFile), []byte(tok.Token+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := cfg.Write(path); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// KeyringFor returns the center's keyring: keys in files under the keys
// directory, their public halves in the store.
func KeyringFor(cfg *config.Config, b *backend.Backend) keyring.Keyring {
	dir := cfg.Path(cfg.KeysDir)
	return keyring.Keyring{Source: keyring.FileSource{Dir: dir}, Store: b.Store, Dir: dir}
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

// LoadKioskCA loads the kiosk CA the center enrolls kiosks with.
func LoadKioskCA(cfg *config.Config) (*kioskpki.CA, error) {
	key, err := keyfile.Load(cfg.Path(cfg.KioskCAKeyFile))
	if err != nil {
		return nil, err
	}
	cert, err := kioskpki.LoadCert(cfg.Path(cfg.KioskCAFile))
	if err != nil {
		return nil, err
	}
	return &kioskpki.CA{Cert: cert, Signer: key}, nil
}
