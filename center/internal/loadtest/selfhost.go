package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/app"
	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/demodata"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// SelfHostOptions shape a throwaway center.
type SelfHostOptions struct {
	// Dir is where the center is created; empty means a new temporary
	// directory that Close removes.
	Dir string
	// Kiosks is how many kiosks to enroll (LT-0000, LT-0001, …).
	Kiosks int
	// CardsPerKiosk is how many distinct cards each kiosk presents (default 2).
	CardsPerKiosk int
	// Kinds are the certificate kinds the cards ask for, in turn (default
	// domestic only).
	Kinds []certificate.Kind
	// Heartbeat overrides the center's heartbeat (default: the config's).
	Heartbeat time.Duration
	// Log receives the center's log; nil discards it.
	Log *slog.Logger
}

// SelfHosted is a center running in this process on loopback ports, with
// the demo municipalities and records, enrolled kiosks and cards for them
// signed by a card authority made for it.
type SelfHosted struct {
	Center *app.Center
	Dir    string
	Kiosks []Kiosk
	Cards  [][]Card

	cancel    context.CancelFunc
	done      chan error
	removeDir bool
}

// SelfHost creates, fills and starts a center.
func SelfHost(ctx context.Context, opts SelfHostOptions) (s *SelfHosted, err error) {
	if opts.Kiosks <= 0 {
		return nil, errors.New("loadtest: self-hosting needs at least one kiosk")
	}
	if opts.CardsPerKiosk <= 0 {
		opts.CardsPerKiosk = 2
	}
	if len(opts.Kinds) == 0 {
		opts.Kinds = []certificate.Kind{certificate.Domestic}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s = &SelfHosted{Dir: opts.Dir}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "kioskcert-loadtest-"); err != nil {
			return nil, fmt.Errorf("loadtest: %w", err)
		}
		s.removeDir = true
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	// A card issuing authority of its own, and one AP key for every card:
	// RSA-2048 generation is the slow part of the setup.
	authKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	auth := carddata.Authority{Signer: authKey}
	copy(auth.KeyID[:], "LOADTEST-JLIS-CA")
	ap, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ik, err := auth.IssuerKey()
	if err != nil {
		return nil, err
	}
	trust, err := carddata.MarshalIssuerKey(ik)
	if err != nil {
		return nil, err
	}
	centerDir := filepath.Join(s.Dir, "center")
	if err := os.MkdirAll(centerDir, 0o700); err != nil {
		return nil, err
	}
	trustFile := filepath.Join(s.Dir, carddata.AuthorityTrustFile)
	if err := os.WriteFile(trustFile, trust, 0o644); err != nil {
		return nil, err
	}

	now := time.Now()
	cfg, err := admin.Init(ctx, admin.InitOptions{
		Dir: centerDir, CardTrustFile: trustFile, IssuerURL: "https://issuer.loadtest.invalid/kioskcert",
		KioskListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", EnrollListen: "127.0.0.1:0",
	}, now)
	if err != nil {
		return nil, err
	}
	if opts.Heartbeat > 0 {
		cfg.Heartbeat.Duration = opts.Heartbeat
	}
	// A load generator's kiosks issue far faster than a kiosk with a
	// resident at it, each for many residents.
	cfg.Limits = config.Limits{KioskIssueRate: 100, KioskIssueBurst: 100, DistinctResidentsPerHour: 1 << 20}
	ops, closeLocal, err := admin.OpenLocal(ctx, cfg)
	if err != nil {
		return nil, err
	}
	kioskDir := filepath.Join(s.Dir, "kiosks")
	err = func() error {
		defer closeLocal()
		op := admin.Actor{Operator: "loadtest", Source: "local"}
		if _, err := demodata.Load(ctx, ops, op); err != nil {
			return err
		}
		for i := 0; i < opts.Kiosks; i++ {
			id := fmt.Sprintf("LT-%04d", i)
			e, err := ops.EnrollKiosk(ctx, op, admin.KioskEnrollment{
				ID: id, StoreName: "負荷試験店", StoreCode: fmt.Sprintf("LT%04d", i), Chain: "LOADTEST",
				Prefecture: "01", Region: "loadtest",
			})
			if err != nil {
				return err
			}
			if err := admin.WriteEnrollment(filepath.Join(kioskDir, id), e); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return nil, err
	}
	if s.Kiosks, err = LoadKiosks(kioskDir, "localhost"); err != nil {
		return nil, err
	}
	for i := range s.Kiosks {
		cards, err := DemoCards(auth, ap, i, opts.CardsPerKiosk, opts.Kinds)
		if err != nil {
			return nil, err
		}
		s.Cards = append(s.Cards, cards)
	}

	if s.Center, err = app.Open(ctx, cfg, opts.Log); err != nil {
		return nil, err
	}
	if err := s.Center.Listen(); err != nil {
		s.Center.Close()
		s.Center = nil
		return nil, err
	}
	serveCtx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	c := s.Center
	go func() {
		err := c.Serve(serveCtx)
		c.Close()
		s.done <- err
	}()
	return s, nil
}

// Addr is the kiosk listener's address.
func (s *SelfHosted) Addr() string { return s.Center.Addr("kiosk") }

// AuditEvents returns the audit events of the enrolled kiosks since a time.
func (s *SelfHosted) AuditEvents(ctx context.Context, since time.Time) ([]store.Event, error) {
	var out []store.Event
	for _, k := range s.Kiosks {
		evs, err := s.Center.Store.Events(ctx, store.EventQuery{KioskID: k.ID, From: since, Limit: store.MaxEventLimit})
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

// Close stops the center (in-flight issuances finish), closes its
// databases and, if SelfHost made the directory, removes it.
func (s *SelfHosted) Close() error {
	var err error
	if s.cancel != nil {
		s.cancel()
		err = <-s.done
		s.cancel = nil
	}
	if s.removeDir {
		if rerr := os.RemoveAll(s.Dir); rerr != nil && err == nil {
			err = rerr
		}
		s.removeDir = false
	}
	return err
}
