package issuance

import (
	"bytes"
	"compress/flate"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// A replay is the answer to a request, kept in the store's request register
// so that a retry — after a dropped connection, on another center
// instance, or after a restart — gets the same certificate instead of a
// second one. The center keeps no certificate data, so the replay is sealed
// (AES-256-GCM) under a key derived from the card files that asked for it.
// The center never stores those files: only a kiosk that still holds them
// (the resident's session) can have the replay opened, and the register
// drops it at settlement or after the replay time-to-live.

// replayVersion 2 compresses the answer before sealing it (a domestic
// answer's 4 KiB of JSON become about 2 KiB: one store page instead of
// two); version 1 sealed plain JSON.
const replayVersion = 2

// replayCompressors reuses DEFLATE writers (BestSpeed: the replay is
// written on every issuance and read only on a retry).
var replayCompressors = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

var errReplayOpen = errors.New("issuance: replay does not open with this request's card data")

// replayKey derives the sealing key from the card files and the request ID.
func replayKey(requestID string, card carddata.Raw) ([]byte, error) {
	var secret []byte
	for _, b := range [][]byte{card.MyNumber, card.FourItems, card.Signature, card.Certificate} {
		secret = binary.BigEndian.AppendUint32(secret, uint32(len(b)))
		secret = append(secret, b...)
	}
	key, err := hkdf.Key(sha256.New, secret, []byte(requestID), "kioskcert replay v1", 32)
	clear(secret)
	return key, err
}

func replayAEAD(requestID string, card carddata.Raw) (cipher.AEAD, error) {
	key, err := replayKey(requestID, card)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealReplay seals resp for the register.
func sealReplay(resp *protocol.CertificateResponse, card carddata.Raw) ([]byte, error) {
	js, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("issuance: encode replay: %w", err)
	}
	defer clear(js)
	var z bytes.Buffer
	zw := replayCompressors.Get().(*flate.Writer)
	zw.Reset(&z)
	_, err = zw.Write(js)
	if err == nil {
		err = zw.Close()
	}
	replayCompressors.Put(zw)
	if err != nil {
		return nil, fmt.Errorf("issuance: compress replay: %w", err)
	}
	plain := z.Bytes()
	defer clear(plain)
	aead, err := replayAEAD(resp.RequestID, card)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plain)+aead.Overhead())
	out[0] = replayVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:], plain, []byte(resp.RequestID)), nil
}

// openReplay opens a sealed replay with the retry's card files.
func openReplay(sealed []byte, requestID string, card carddata.Raw) (*protocol.CertificateResponse, error) {
	aead, err := replayAEAD(requestID, card)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+aead.NonceSize() || (sealed[0] != replayVersion && sealed[0] != 1) {
		return nil, errReplayOpen
	}
	nonce, box := sealed[1:1+aead.NonceSize()], sealed[1+aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, box, []byte(requestID))
	if err != nil {
		return nil, errReplayOpen
	}
	defer clear(plain)
	if sealed[0] == replayVersion {
		r := flate.NewReader(bytes.NewReader(plain))
		js, err := io.ReadAll(io.LimitReader(r, 4<<20))
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("issuance: decompress replay: %w", err)
		}
		clear(plain)
		defer clear(js)
		plain = js
	}
	var resp protocol.CertificateResponse
	if err := json.Unmarshal(plain, &resp); err != nil {
		return nil, fmt.Errorf("issuance: decode replay: %w", err)
	}
	return &resp, nil
}
