package admin

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/authority"
	"github.com/kioskcert/kioskcert/center/internal/backend"
	"github.com/kioskcert/kioskcert/center/internal/config"
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
	EnrollListen  string
	// KeySource is where the signing keys are made (default: files).
	KeySource config.KeySource
	// CSCACertFile and KioskCACertFile are the offline authorities'
	// certificates. With both, Init makes a production center: it holds
	// no authority key, and leaves certificate requests for the
	// authorities in keys/requests (docs/KEYS.md). With neither, Init
	// makes a demo center whose authorities are files under
	// DIR/authorities, and certifies everything at once.
	CSCACertFile    string
	KioskCACertFile string
	// ConsoleListen is the console's address; empty leaves the console off.
	ConsoleListen string
	// Operator is the ID of the first operator: an administrator account
	// for scripts (no console login) whose API token Init writes to
	// keys/ops.token, so the issuance-center commands work at once.
	// Empty means "admin". Create console accounts with AddOperator
	// (`issuance-center operator add`).
	Operator string
	// Store is the config's store: "" (the bbolt default), "bolt:PATH" or
	// a postgres:// URL. InstanceID is the config's instanceId.
	Store      string
	InstanceID string
	// Records is the config's records: "" (follow the store), "bolt",
	// "bolt:PATH", "postgres" (the store's database) or a postgres:// URL.
	Records string
}

// Production reports whether the options make a production center.
func (o InitOptions) Production() bool { return o.CSCACertFile != "" || o.KioskCACertFile != "" }

// ConfigFile is the name of the configuration file Init writes.
const ConfigFile = "center.json"

// AuthoritiesDir is where a demo center's local authorities live.
const AuthoritiesDir = "authorities"

// Init creates a center in opts.Dir: config, records master key, the
// center's TLS key, the first SMART Health Card key, a VDS-NC document
// signer key and the kiosk issuing CA key (in the key source), the
// console's TLS key, the operator key, the first operator (an
// administrator for scripts) with its API token in keys/ops.token, and the
// databases. In demo mode it also creates the two
// authorities under DIR/authorities and certifies the center's keys at
// once; in production mode it writes the certificate requests the offline
// authorities must sign. It refuses to touch a directory that already has
// a config.
func Init(ctx context.Context, opts InitOptions, now time.Time) (*config.Config, error) {
	path := filepath.Join(opts.Dir, ConfigFile)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("admin: %s exists; refusing to overwrite a center", path)
	}
	if opts.Production() && (opts.CSCACertFile == "" || opts.KioskCACertFile == "") {
		return nil, errors.New("admin: a production center needs both offline authorities' certificates (-csca-cert and -kiosk-ca-cert)")
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
	}{{&cfg.KioskListen, opts.KioskListen}, {&cfg.PublicListen, opts.PublicListen}, {&cfg.OpsListen, opts.OpsListen}, {&cfg.EnrollListen, opts.EnrollListen}, {&cfg.ConsoleListen, opts.ConsoleListen}} {
		if p.v != "" {
			*p.dst = p.v
		}
	}
	cfg.KeySource = opts.KeySource
	cfg.Demo = !opts.Production()
	cfg.Store, cfg.InstanceID, cfg.Records = opts.Store, opts.InstanceID, opts.Records
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
	// The authorities: offline ones' certificates, or demo ones made here.
	var csca, kioskCA *authority.Authority
	if opts.Production() {
		for _, f := range []struct{ from, to string }{{opts.CSCACertFile, filepath.Join(cfg.Path(cfg.KeysDir), "vdsnc", "csca.pem")}, {opts.KioskCACertFile, cfg.Path(cfg.KioskCAFile)}} {
			if err := copyCert(f.from, f.to); err != nil {
				return nil, err
			}
		}
	} else {
		if csca, err = authority.Create(filepath.Join(abs, AuthoritiesDir, string(authority.CSCA)), authority.CSCA, "kioskcert Demo CSCA Japan", "JP", now); err != nil {
			return nil, err
		}
		if kioskCA, err = authority.Create(filepath.Join(abs, AuthoritiesDir, string(authority.KioskCA)), authority.KioskCA, "kioskcert Demo Kiosk CA", "JP", now); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			cert *authority.Authority
			to   string
		}{{csca, filepath.Join(cfg.Path(cfg.KeysDir), "vdsnc", "csca.pem")}, {kioskCA, cfg.Path(cfg.KioskCAFile)}} {
			if err := os.MkdirAll(filepath.Dir(f.to), 0o700); err != nil {
				return nil, err
			}
			if err := os.WriteFile(f.to, authority.EncodeCert(f.cert.Cert.Raw), 0o644); err != nil {
				return nil, err
			}
		}
	}
	// The center's TLS key and its certificate (or request).
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path(cfg.ServerKeyFile)), 0o700); err != nil {
		return nil, err
	}
	if err := keyfile.Write(cfg.Path(cfg.ServerKeyFile), serverKey); err != nil {
		return nil, err
	}
	serverCSR, err := authority.ServerRequest(serverKey, hosts)
	if err != nil {
		return nil, err
	}
	if kioskCA != nil {
		cert, err := kioskCA.SignKioskChannel(serverCSR, authority.ProfileServer, now)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(cfg.Path(cfg.ServerCertFile), cert, 0o644); err != nil {
			return nil, err
		}
	} else {
		reqDir := filepath.Join(cfg.Path(cfg.KeysDir), "requests")
		if err := os.MkdirAll(reqDir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(reqDir, tlsRequestFile), serverCSR, 0o644); err != nil {
			return nil, err
		}
	}
	// The console's TLS key and certificate (or request), for the same hosts.
	consoleKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := keyfile.Write(cfg.Path(cfg.ConsoleKeyFile), consoleKey); err != nil {
		return nil, err
	}
	consoleCSR, err := authority.ServerRequest(consoleKey, hosts)
	if err != nil {
		return nil, err
	}
	if kioskCA != nil {
		cert, err := kioskCA.SignKioskChannel(consoleCSR, authority.ProfileServer, now)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(cfg.Path(cfg.ConsoleCertFile), cert, 0o644); err != nil {
			return nil, err
		}
	} else {
		// Not for the offline authorities: browsers must trust the
		// console, so the organisation's CA signs this one.
		if err := os.WriteFile(filepath.Join(filepath.Dir(cfg.Path(cfg.ConsoleKeyFile)), consoleRequestFile), consoleCSR, 0o644); err != nil {
			return nil, err
		}
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
	kr, err := OpenKeyring(&cfg, b)
	if err != nil {
		return nil, err
	}
	defer kr.Close()
	if _, err := kr.RotateSHC(ctx, now); err != nil {
		return nil, err
	}
	_, signerCSR, err := kr.Request(ctx, store.PurposeVDSNC)
	if err != nil {
		return nil, err
	}
	if _, err := kr.CreateAuditKey(ctx, now); err != nil {
		return nil, err
	}
	_, issuingCSR, err := kr.Request(ctx, store.PurposeKioskCA)
	if err != nil {
		return nil, err
	}
	if csca != nil {
		signerCert, err := csca.SignDocumentSigner(signerCSR, now)
		if err != nil {
			return nil, err
		}
		if _, err := kr.Install(ctx, signerCert, now); err != nil {
			return nil, err
		}
		issuingCert, err := kioskCA.SignKioskChannel(issuingCSR, authority.ProfileIssuingCA, now)
		if err != nil {
			return nil, err
		}
		if _, err := kr.Install(ctx, issuingCert, now); err != nil {
			return nil, err
		}
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

// consoleRequestFile is the console certificate's request a production
// center leaves beside the console's key (pki/): have it signed by the
// organisation's CA (browsers must trust it) and install the certificate
// as consoleCertFile; until then the console stays off.
const consoleRequestFile = "console.csr"

func copyCert(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("admin: authority certificate: %w", err)
	}
	certs, err := authority.ParseCerts(b)
	if err != nil || !certs[0].IsCA {
		return fmt.Errorf("admin: %s does not hold a CA certificate", from)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return err
	}
	return os.WriteFile(to, authority.EncodeCert(certs[0].Raw), 0o644)
}

func publicEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
