package app_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/config"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// TestDiskFullRefusesToIssue: with the disk under the store full, the
// center refuses to issue — unavailable, retry later — rather than hand
// out a certificate it could not audit; once space is back it issues
// again without a restart. The center's files sit on a small tmpfs of
// their own (the tests run as root, as CI does).
func TestDiskFullRefusesToIssue(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs and must run as root (make test does)")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=24m,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	// A short issue timeout makes the claim lease (twice it) short: see
	// the retries below.
	tc := startCenterIn(t, filepath.Join(mnt, "center"), func(c *config.Config) { c.IssueTimeout.Duration = 5 * time.Second })
	k, err := tc.dial(t, tc.tlsFor(t, "K-GOOD"))
	if err != nil {
		t.Fatal(err)
	}
	if _, m := k.issue("012041", certificate.Domestic, tc.card(t, "hanako", "")); m.Type() != protocol.TypeCertificate {
		t.Fatalf("before the disk filled up: %#v", m)
	}

	// Fill the disk.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 64<<10)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	f.Close()

	card := tc.card(t, "taro", "")
	req, m := k.issue("012041", certificate.Domestic, card)
	e, ok := m.(*protocol.Error)
	if !ok || e.Code != protocol.CodeUnavailable || !e.Retryable {
		t.Fatalf("issue with the disk full: %#v, want unavailable", m)
	}
	evs, err := tc.center.Store.Events(context.Background(), store.EventQuery{RequestID: req.RequestID})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Type == store.EventIssued {
			t.Fatal("a certificate was recorded as issued while the disk was full")
		}
	}

	// Space is back: the same request is issued, no restart needed. Where
	// the disk filled decides how: if only the request's end could not be
	// recorded, its claim could not be released either, and stands until
	// its lease runs out (twice the issue timeout); until then the kiosk is
	// told to retry, as it does.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		k.send(req)
		m := k.read()
		if resp, ok := m.(protocol.CertificateResponse); ok && resp.RequestID == req.RequestID {
			break
		}
		if e, ok := m.(*protocol.Error); !ok || e.Code != protocol.CodeUnavailable || !e.Retryable || time.Now().After(deadline) {
			t.Fatalf("the center did not recover once space was back: %#v", m)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
