package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

const tpmKeyPEM = "TSS2 PRIVATE KEY"

// oidLoadableKey marks a TSS2 key blob to be loaded under its parent.
var oidLoadableKey = asn1.ObjectIdentifier{2, 23, 133, 10, 1, 3}

// tssKey is the TSS2 PRIVATE KEY layout: the key's public and wrapped
// private areas under the owner hierarchy's ECC storage key.
type tssKey struct {
	Type      asn1.ObjectIdentifier
	EmptyAuth bool `asn1:"explicit,tag:0,optional"`
	Parent    int
	Public    []byte
	Private   []byte
}

// ownerHierarchy is TPM_RH_OWNER: the parent is the storage key made from
// the owner hierarchy with the standard ECC template.
const ownerHierarchy = 0x40000001

// keyTemplate is a P-256 ECDSA signing key that never leaves the TPM:
// fixedTPM and fixedParent forbid duplication, sensitiveDataOrigin means
// the TPM made it.
var keyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, SignEncrypt: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
	}),
}

// tpmKey signs with a key loaded in the TPM.
type tpmKey struct {
	mu     sync.Mutex
	tpm    transport.TPMCloser
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    *ecdsa.PublicKey
}

// CreateTPMKey makes the kiosk's key inside the TPM at tpmPath and writes
// its wrapped blob to path (refusing to overwrite one).
func CreateTPMKey(tpmPath, path string) (Key, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("identity: %s exists; refusing to overwrite the kiosk's key", path)
	}
	t, err := openTPM(tpmPath)
	if err != nil {
		return nil, err
	}
	srk, err := primary(t)
	if err != nil {
		t.Close()
		return nil, err
	}
	defer flush(t, srk.ObjectHandle)
	created, err := tpm2.Create{
		ParentHandle: tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name},
		InPublic:     tpm2.New2B(keyTemplate),
	}.Execute(t)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("identity: create the kiosk key in the TPM: %w", err)
	}
	blob, err := asn1.Marshal(tssKey{Type: oidLoadableKey, EmptyAuth: true, Parent: ownerHierarchy,
		Public: tpm2.Marshal(created.OutPublic), Private: tpm2.Marshal(created.OutPrivate)})
	if err != nil {
		t.Close()
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Close()
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: tpmKeyPEM, Bytes: blob}), 0o600); err != nil {
		t.Close()
		return nil, err
	}
	t.Close()
	return openTPMKey(tpmPath, blob)
}

func primary(t transport.TPM) (*tpm2.CreatePrimaryResponse, error) {
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("identity: create the TPM's storage key: %w", err)
	}
	return rsp, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// openTPMKey loads a key blob into the TPM for signing.
func openTPMKey(tpmPath string, der []byte) (Key, error) {
	var k tssKey
	if rest, err := asn1.Unmarshal(der, &k); err != nil || len(rest) != 0 || !k.Type.Equal(oidLoadableKey) || k.Parent != ownerHierarchy {
		return nil, errors.New("identity: the TPM key blob is not a loadable key under the owner's storage key")
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](k.Public)
	if err != nil {
		return nil, fmt.Errorf("identity: TPM key public area: %w", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](k.Private)
	if err != nil {
		return nil, fmt.Errorf("identity: TPM key private area: %w", err)
	}
	ecPub, err := publicKey(pub)
	if err != nil {
		return nil, err
	}
	t, err := openTPM(tpmPath)
	if err != nil {
		return nil, err
	}
	srk, err := primary(t)
	if err != nil {
		t.Close()
		return nil, err
	}
	defer flush(t, srk.ObjectHandle)
	loaded, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv, InPublic: *pub,
	}.Execute(t)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("identity: load the kiosk key into the TPM (another TPM made it?): %w", err)
	}
	return &tpmKey{tpm: t, handle: loaded.ObjectHandle, name: loaded.Name, pub: ecPub}, nil
}

func publicKey(p *tpm2.TPM2BPublic) (*ecdsa.PublicKey, error) {
	pub, err := p.Contents()
	if err != nil {
		return nil, fmt.Errorf("identity: TPM key public area: %w", err)
	}
	if pub.Type != tpm2.TPMAlgECC || !pub.ObjectAttributes.FixedTPM || !pub.ObjectAttributes.SensitiveDataOrigin {
		return nil, errors.New("identity: the TPM key is not a TPM-made, non-exportable ECC key")
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("identity: TPM key public point: %w", err)
	}
	uncompressed := make([]byte, 65)
	uncompressed[0] = 4
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) > 32 || len(y) > 32 {
		return nil, errors.New("identity: TPM key is not P-256")
	}
	copy(uncompressed[1+32-len(x):33], x)
	copy(uncompressed[33+32-len(y):], y)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), uncompressed)
}

// Public implements crypto.Signer.
func (k *tpmKey) Public() crypto.PublicKey { return k.pub }

// Sign implements crypto.Signer: ECDSA over a SHA-256 digest, inside the
// TPM, returned ASN.1 DER as crypto/tls expects.
func (k *tpmKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, fmt.Errorf("identity: the TPM key signs SHA-256 digests only, not %v", opts.HashFunc())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck},
	}.Execute(k.tpm)
	if err != nil {
		return nil, fmt.Errorf("identity: TPM sign: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("identity: TPM signature: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig.SignatureR.Buffer), new(big.Int).SetBytes(sig.SignatureS.Buffer)})
}

// Close unloads the key and releases the TPM.
func (k *tpmKey) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	flush(k.tpm, k.handle)
	return k.tpm.Close()
}
