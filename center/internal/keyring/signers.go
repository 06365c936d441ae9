package keyring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// Signers is what the issuance path signs with: the active SMART Health
// Card key and, when overseas certificates are offered, the VDS-NC barcode
// signer. Refresh reloads them when the store names another active key, so
// a rotation made on any instance sharing the store takes effect within one
// refresh interval, without a restart; signing in flight finishes with the
// key it started with.
type Signers struct {
	kr        Keyring
	issuerURL string
	rid       []byte
	withVDS   bool
	log       *slog.Logger

	mu  sync.Mutex // serialises Refresh
	shc atomic.Pointer[shcKey]
	vds atomic.Pointer[vdsKey]
}

type shcKey struct {
	kid    string
	issuer *shc.Issuer
}

type vdsKey struct {
	kid    string
	signer *vdsnc.Signer
}

// NewSigners loads the active keys. withVDS loads the barcode signer too.
func (k Keyring) NewSigners(ctx context.Context, issuerURL string, withVDS bool, log *slog.Logger) (*Signers, error) {
	rid, err := k.RidSecret()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Signers{kr: k, issuerURL: issuerURL, rid: rid, withVDS: withVDS, log: log}
	if _, err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Refresh loads the active keys if they changed and reports whether one did.
func (s *Signers) Refresh(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	sk, ok, err := s.kr.active(ctx, "shc")
	switch {
	case err != nil:
		return false, err
	case !ok:
		return false, ErrNoActiveKey
	}
	if cur := s.shc.Load(); cur == nil || cur.kid != sk.KID {
		signer, kid, err := s.kr.ActiveSHC(ctx)
		if err != nil {
			return false, err
		}
		issuer, err := shc.NewIssuer(s.issuerURL, signer, s.rid)
		if err != nil {
			return false, err
		}
		s.shc.Store(&shcKey{kid: kid, issuer: issuer})
		changed = true
		s.log.Info("SMART Health Card signing key loaded", "kid", kid, "source", s.kr.Source.Describe())
	}
	if s.withVDS {
		vk, ok, err := s.kr.active(ctx, "vdsnc")
		switch {
		case err != nil:
			return changed, err
		case !ok:
			return changed, ErrNoVDSSigner
		}
		if cur := s.vds.Load(); cur == nil || cur.kid != vk.KID {
			signer, err := s.kr.VDSSigner(ctx)
			if err != nil {
				return changed, err
			}
			s.vds.Store(&vdsKey{kid: vk.KID, signer: signer})
			changed = true
			s.log.Info("VDS-NC barcode signer loaded", "kid", vk.KID, "source", s.kr.Source.Describe())
		}
	}
	return changed, nil
}

// Run refreshes every interval until ctx ends. A failed refresh keeps the
// keys in use and is logged; the next one tries again.
func (s *Signers) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Refresh(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error("refresh signing keys", "err", err)
			}
		}
	}
}

// SHCKeyID returns the key ID of the SMART Health Card key in use.
func (s *Signers) SHCKeyID() string { return s.shc.Load().kid }

// Issue signs a SMART Health Card with the active key (issuance.SHCIssuer).
func (s *Signers) Issue(c *certificate.Certificate, nbf time.Time) (string, error) {
	return s.shc.Load().issuer.Issue(c, nbf)
}

// VDS returns the barcode signer as issuance.VDSSigner, or nil when the
// overseas kind is not offered.
func (s *Signers) VDS() interface {
	Sign(d *vdsnc.Data) ([]byte, error)
} {
	if !s.withVDS {
		return nil
	}
	return vdsSigner{s}
}

type vdsSigner struct{ s *Signers }

func (v vdsSigner) Sign(d *vdsnc.Data) ([]byte, error) {
	k := v.s.vds.Load()
	if k == nil {
		return nil, fmt.Errorf("keyring: %w", ErrNoVDSSigner)
	}
	return k.signer.Sign(d)
}
