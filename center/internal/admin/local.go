package admin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kioskcert/kioskcert/center/internal/backend"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
)

// ErrCenterRunning means a command meant for a stopped center's files found
// them held by a running center.
var ErrCenterRunning = errors.New("admin: the center is running (it holds the database lock); run the command without -offline to go through its operations API")

// OpenLocal opens a stopped center's backend for maintenance and returns a
// Service on it, with close to release the files. A running center's
// files are refused with ErrCenterRunning.
func OpenLocal(ctx context.Context, cfg *config.Config) (s *Service, close func() error, err error) {
	b, err := backend.Open(ctx, cfg)
	if errors.Is(err, boltfile.ErrLocked) {
		return nil, nil, fmt.Errorf("%w: %w", ErrCenterRunning, err)
	}
	if err != nil {
		return nil, nil, err
	}
	kr, err := OpenKeyring(cfg, b)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	closeAll := func() error {
		kr.Close()
		return b.Close()
	}
	sealer, err := opauth.LoadOrCreateSealer(cfg.Path(cfg.OperatorKeyFile))
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	s, err = New(Config{Store: b.Store, Records: b.Records, Keys: kr, Center: cfg, KeyBundles: cfg.Demo, Sealer: sealer})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return s, closeAll, nil
}

// WriteEnrollment writes an enrollment's files into dir, as the kiosk
// agent's configuration expects them: the key (mode 0600), the client
// certificate and the center's CA.
func WriteEnrollment(dir string, e Enrollment) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KioskKeyFile, e.KeyPEM, 0o600},
		{KioskCertFile, e.CertPEM, 0o644},
		{CenterCAFile, e.CenterCA, 0o644},
	} {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, f.data, f.mode); err != nil {
			return fmt.Errorf("admin: write %s: %w", path, err)
		}
		if err := os.Chmod(path, f.mode); err != nil {
			return err
		}
	}
	return nil
}
