package records

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"time"
)

// Labels that start the associated data of each kind of sealed value, so a
// value of one kind can never be opened as another.
const (
	adKeys        = "kioskcert/records/keys/v1"
	adRecord      = "kioskcert/records/record/v1"
	adMasterCheck = "kioskcert/records/master-check/v1"
	formatV1      = 1

	// Labels of the keyed hashes other than the record key, so none can
	// equal a record key (a My Number is 12 digits, no label) or another.
	labelResident = "kioskcert/records/resident/v1\x00"
	labelLogRef   = "kioskcert/records/log-ref/v1\x00"
)

// regionKeys are one region's unwrapped keys and identity.
type regionKeys struct {
	code    string
	version uint32   // increases each time the region is created again
	id      [16]byte // random per creation: a handle to a deleted region never matches a new one
	created time.Time
	data    cipher.AEAD
	lookup  []byte
}

// keyEntry layout: format(1) ‖ version(4) ‖ id(16) ‖ created µs(8) ‖ sealed keys.
const (
	keyEntryIdentity = 1 + 4 + 16 // the prefix a handle compares on every use
	keyEntryHeader   = keyEntryIdentity + 8
)

func keysAD(code string, version uint32, id [16]byte) []byte {
	ad := make([]byte, 0, len(adKeys)+len(code)+2+4+16)
	ad = append(ad, adKeys...)
	ad = append(ad, 0)
	ad = append(ad, code...)
	ad = append(ad, 0)
	ad = binary.BigEndian.AppendUint32(ad, version)
	return append(ad, id[:]...)
}

// newRegionKeys generates fresh random keys for a region and returns them
// with their wrapped key entry.
func newRegionKeys(master *MasterKey, code string, version uint32, now time.Time) (*regionKeys, []byte, error) {
	secret := make([]byte, 64) // data key ‖ lookup key
	defer clear(secret)
	var id [16]byte
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, fmt.Errorf("records: generating region keys: %w", err)
	}
	if _, err := rand.Read(id[:]); err != nil {
		return nil, nil, fmt.Errorf("records: generating region ID: %w", err)
	}
	created := now.UTC().Truncate(time.Microsecond)
	entry := make([]byte, keyEntryHeader)
	entry[0] = formatV1
	binary.BigEndian.PutUint32(entry[1:5], version)
	copy(entry[5:21], id[:])
	binary.BigEndian.PutUint64(entry[21:29], uint64(created.UnixMicro()))
	sealed, err := seal(master.aead, secret, keysAD(code, version, id))
	if err != nil {
		return nil, nil, err
	}
	entry = append(entry, sealed...)
	k, err := makeRegionKeys(code, version, id, created, secret)
	return k, entry, err
}

// unwrapKeyEntry opens a stored key entry with the master key.
func unwrapKeyEntry(master *MasterKey, code string, entry []byte) (*regionKeys, error) {
	version, id, created, sealed, err := parseKeyEntry(entry)
	if err != nil {
		return nil, fmt.Errorf("records: key entry of municipality %s: %w", code, err)
	}
	secret, err := open(master.aead, sealed, keysAD(code, version, id))
	if err != nil {
		return nil, fmt.Errorf("%w: master key %s does not unwrap the keys of municipality %s; check the master key file (was it rotated?)", ErrWrongMasterKey, master.ID(), code)
	}
	defer clear(secret)
	return makeRegionKeys(code, version, id, created, secret)
}

// rewrapKeyEntry re-seals a key entry's keys under a new master key,
// keeping version, ID and creation time.
func rewrapKeyEntry(oldKey, newKey *MasterKey, code string, entry []byte) ([]byte, error) {
	version, id, _, sealed, err := parseKeyEntry(entry)
	if err != nil {
		return nil, fmt.Errorf("records: key entry of municipality %s: %w", code, err)
	}
	ad := keysAD(code, version, id)
	secret, err := open(oldKey.aead, sealed, ad)
	if err != nil {
		return nil, fmt.Errorf("%w: master key %s does not unwrap the keys of municipality %s", ErrWrongMasterKey, oldKey.ID(), code)
	}
	defer clear(secret)
	resealed, err := seal(newKey.aead, secret, ad)
	if err != nil {
		return nil, err
	}
	return append(bytes.Clone(entry[:keyEntryHeader]), resealed...), nil
}

func parseKeyEntry(entry []byte) (version uint32, id [16]byte, created time.Time, sealed []byte, err error) {
	if len(entry) < keyEntryHeader || entry[0] != formatV1 {
		return 0, id, created, nil, fmt.Errorf("unknown key entry format")
	}
	version = binary.BigEndian.Uint32(entry[1:5])
	copy(id[:], entry[5:21])
	created = time.UnixMicro(int64(binary.BigEndian.Uint64(entry[21:29]))).UTC()
	return version, id, created, entry[keyEntryHeader:], nil
}

func makeRegionKeys(code string, version uint32, id [16]byte, created time.Time, secret []byte) (*regionKeys, error) {
	block, err := aes.NewCipher(secret[:32])
	if err != nil {
		return nil, fmt.Errorf("records: region data key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("records: region data key: %w", err)
	}
	return &regionKeys{
		code: code, version: version, id: id, created: created,
		data: aead, lookup: bytes.Clone(secret[32:64]),
	}, nil
}

// identity is the key entry prefix this handle was opened from.
func (k *regionKeys) identity() []byte {
	b := make([]byte, keyEntryIdentity)
	b[0] = formatV1
	binary.BigEndian.PutUint32(b[1:5], k.version)
	copy(b[5:21], k.id[:])
	return b
}

// recordKey is the key of a person's record: HMAC-SHA256 under the
// region's lookup key. My Number itself is never stored.
func (k *regionKeys) recordKey(myNumber string) []byte {
	mac := hmac.New(sha256.New, k.lookup)
	mac.Write([]byte(myNumber))
	return mac.Sum(nil)
}

// newMAC returns an HMAC under the lookup key for a caller that hashes
// many values on one goroutine (an import), saving the set-up per value.
func (k *regionKeys) newMAC() hash.Hash { return hmac.New(sha256.New, k.lookup) }

// residentKey is the key under which an import checks that a resident
// number (宛名番号) belongs to one person only: keyed like the record key,
// so the staging area holds no resident number in clear, and truncated to
// 128 bits (a chance collision among millions is below 10^-24).
func residentKey(mac hash.Hash, dst []byte, residentNumber string) []byte {
	mac.Reset()
	mac.Write([]byte(labelResident))
	mac.Write([]byte(residentNumber))
	return mac.Sum(dst)[:len(dst)+16]
}

// logRef is the operations log's pseudonymous reference to a record: 64
// bits of a keyed hash, enough to tell persons apart in a region, useless
// without the region's lookup key.
func (k *regionKeys) logRef(myNumber string) string {
	mac := hmac.New(sha256.New, k.lookup)
	mac.Write([]byte(labelLogRef))
	mac.Write([]byte(myNumber))
	return hex.EncodeToString(mac.Sum(nil)[:8])
}

func (k *regionKeys) recordAD(dst, recordKey []byte) []byte {
	dst = append(dst, adRecord...)
	dst = append(dst, 0)
	dst = append(dst, k.code...)
	dst = append(dst, 0)
	dst = append(dst, recordKey...)
	dst = binary.BigEndian.AppendUint32(dst, k.version)
	return append(dst, k.id[:]...)
}

// valueHeader is format(1) ‖ key version(4) before the nonce.
const valueHeader = 5

// sealRecord encrypts a record's encoding: format(1) ‖ version(4) ‖ nonce ‖
// ciphertext. AD = label ‖ code ‖ record key ‖ key version ‖ region ID.
func (k *regionKeys) sealRecord(recordKey, plaintext []byte) ([]byte, error) {
	out, _, err := k.appendSealed(nil, recordKey, plaintext, nil)
	return out, err
}

var zeroNonce [12]byte

// appendSealed is sealRecord appending to dst; ad is scratch space for the
// associated data, returned for reuse (an import seals millions).
func (k *regionKeys) appendSealed(dst, recordKey, plaintext, ad []byte) ([]byte, []byte, error) {
	ad = k.recordAD(ad[:0], recordKey)
	dst = append(dst, formatV1, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], k.version)
	dst = append(dst, zeroNonce[:k.data.NonceSize()]...)
	nonce := dst[len(dst)-k.data.NonceSize():]
	if _, err := rand.Read(nonce); err != nil {
		return nil, ad, fmt.Errorf("records: nonce: %w", err)
	}
	return k.data.Seal(dst, nonce, plaintext, ad), ad, nil
}

// openRecord decrypts and decodes a stored value found under recordKey.
func (k *regionKeys) openRecord(recordKey, value []byte) (Record, error) {
	if len(value) < valueHeader || value[0] != formatV1 {
		return Record{}, fmt.Errorf("%w: municipality %s: unknown value format", ErrCorrupt, k.code)
	}
	if v := binary.BigEndian.Uint32(value[1:5]); v != k.version {
		return Record{}, fmt.Errorf("%w: municipality %s: value sealed under key version %d, region is at %d", ErrCorrupt, k.code, v, k.version)
	}
	plain, err := open(k.data, value[valueHeader:], k.recordAD(nil, recordKey))
	if err != nil {
		return Record{}, fmt.Errorf("%w: municipality %s: the value does not open under this region's key at this position (tampered or moved)", ErrCorrupt, k.code)
	}
	defer clear(plain)
	rec, err := decodeRecord(plain, k.code)
	if err != nil {
		return Record{}, fmt.Errorf("%w: municipality %s: the record does not decode (%v)", ErrCorrupt, k.code, err)
	}
	return rec, nil
}

// openFlags decrypts a stored value and decodes its flags only: what an
// import needs of each record it replaces.
func (k *regionKeys) openFlags(recordKey, value []byte) (Flags, error) {
	if len(value) < valueHeader || value[0] != formatV1 || binary.BigEndian.Uint32(value[1:5]) != k.version {
		return Flags{}, fmt.Errorf("%w: municipality %s: unknown value format or key version", ErrCorrupt, k.code)
	}
	plain, err := open(k.data, value[valueHeader:], k.recordAD(nil, recordKey))
	if err != nil {
		return Flags{}, fmt.Errorf("%w: municipality %s: the value does not open under this region's key at this position (tampered or moved)", ErrCorrupt, k.code)
	}
	defer clear(plain)
	f, err := decodeFlags(plain)
	if err != nil {
		return Flags{}, fmt.Errorf("%w: municipality %s: the record does not decode (%v)", ErrCorrupt, k.code, err)
	}
	return f, nil
}
