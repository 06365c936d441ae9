package keyring

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// ErrNoAuditKey means no active audit checkpoint key is recorded.
var ErrNoAuditKey = errors.New("keyring: no audit checkpoint key")

// AuditKeyLifetime is how long an audit key signs checkpoints before a new
// one takes over; old keys stay recorded so old checkpoints verify.
const AuditKeyLifetime = 5 * 365 * 24 * time.Hour

// CreateAuditKey makes the key that signs the audit log's checkpoints, in
// the key source, apart from the certificate keys, records its public
// half and returns its key ID. A previous audit key is retired.
func (k Keyring) CreateAuditKey(ctx context.Context, now time.Time) (string, error) {
	label, err := newLabel(store.PurposeAudit)
	if err != nil {
		return "", err
	}
	signer, err := k.Source.Generate(ctx, store.PurposeAudit, label)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	kid := "audit-" + hex.EncodeToString(sum[:8])
	previous, err := k.Store.ListSigningKeys(ctx, store.PurposeAudit)
	if err != nil {
		return "", err
	}
	if err := k.Store.PutSigningKey(ctx, store.SigningKey{
		KID: kid, Purpose: store.PurposeAudit, Format: store.FormatPEM, KeyLabel: label,
		PublicKey: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		Created:   now, NotAfter: now.Add(AuditKeyLifetime), Status: store.KeyActive,
	}); err != nil {
		return "", err
	}
	for _, p := range previous {
		if p.Status == store.KeyActive {
			if err := k.Store.SetSigningKeyStatus(ctx, p.KID, store.KeyRetired, now); err != nil {
				return "", err
			}
		}
	}
	return kid, nil
}

// AuditSigner opens the active audit key.
func (k Keyring) AuditSigner(ctx context.Context) (crypto.Signer, string, error) {
	sk, ok, err := k.active(ctx, store.PurposeAudit)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", ErrNoAuditKey
	}
	signer, err := k.Source.Signer(ctx, store.PurposeAudit, sk.Label())
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, "", err
	}
	if block, _ := pem.Decode(sk.PublicKey); block == nil || string(block.Bytes) != string(der) {
		return nil, "", fmt.Errorf("keyring: the key source's audit key %s is not the recorded %s", sk.Label(), sk.KID)
	}
	return signer, sk.KID, nil
}
