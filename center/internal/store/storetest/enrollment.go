package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

func newCode(seed string, created time.Time, ttl time.Duration) store.EnrollmentCode {
	k := NewKiosk(seed)
	k.CertSerial, k.CertSHA256, k.EnrolledAt = "", "", time.Time{}
	return store.EnrollmentCode{Kiosk: k, CodeHash: fingerprint("code-" + seed), Created: created, Expires: created.Add(ttl)}
}

func testEnrollmentCode(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newCode("e1", base, 24*time.Hour)
	mustNil(t, "PutEnrollmentCode", s.PutEnrollmentCode(ctx, c))
	cert := store.KioskCertificate{Serial: "abc1", SHA256: fingerprint("cert-e1")}

	// No code for another kiosk; a wrong code is not found either.
	_, err := s.RedeemEnrollmentCode(ctx, "kiosk-other", c.CodeHash, cert, base.Add(time.Hour))
	mustIs(t, "redeem for an unknown kiosk", err, store.ErrNotFound)
	_, err = s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, fingerprint("wrong"), cert, base.Add(time.Hour))
	mustIs(t, "redeem with a wrong code", err, store.ErrNotFound)
	if _, err := s.Kiosk(ctx, c.Kiosk.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused redemption enrolled the kiosk: %v", err)
	}

	at := base.Add(2 * time.Hour)
	k, err := s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, c.CodeHash, cert, at)
	mustNil(t, "RedeemEnrollmentCode", err)
	want := c.Kiosk
	want.CertSerial, want.CertSHA256, want.EnrolledAt = cert.Serial, cert.SHA256, store.Time(at)
	want.Status, want.StatusAt = store.KioskActive, store.Time(at)
	if !kioskEqual(k, want) {
		t.Errorf("redeemed kiosk = %+v, want %+v", k, want)
	}
	got, err := s.KioskByCertificate(ctx, cert.SHA256)
	mustNil(t, "KioskByCertificate after enrollment", err)
	if !kioskEqual(got, want) {
		t.Errorf("stored kiosk = %+v, want %+v", got, want)
	}

	// Single use: the same code again, even for the same certificate.
	_, err = s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, c.CodeHash, cert, at.Add(time.Minute))
	mustIs(t, "second redemption", err, store.ErrUsed)
	// An enrolled kiosk gets no new code.
	mustIs(t, "code for an enrolled kiosk", s.PutEnrollmentCode(ctx, newCode("e1", base, time.Hour)), store.ErrExists)
}

func testEnrollmentCodeExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newCode("e2", base, time.Hour)
	mustNil(t, "PutEnrollmentCode", s.PutEnrollmentCode(ctx, c))
	cert := store.KioskCertificate{Serial: "abc2", SHA256: fingerprint("cert-e2")}
	_, err := s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, c.CodeHash, cert, base.Add(time.Hour))
	mustIs(t, "redeem at expiry", err, store.ErrExpired)
	if _, err := s.Kiosk(ctx, c.Kiosk.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired code enrolled the kiosk: %v", err)
	}
	// A new code replaces the expired one; the old one no longer works.
	c2 := newCode("e2", base.Add(2*time.Hour), time.Hour)
	c2.CodeHash = fingerprint("second code")
	mustNil(t, "PutEnrollmentCode again", s.PutEnrollmentCode(ctx, c2))
	_, err = s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, c.CodeHash, cert, base.Add(2*time.Hour+time.Minute))
	mustIs(t, "redeem the replaced code", err, store.ErrNotFound)
	_, err = s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, c2.CodeHash, cert, base.Add(2*time.Hour+2*time.Minute))
	mustNil(t, "redeem the new code", err)
}

func testEnrollmentCodeAttempts(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newCode("e3", base, time.Hour)
	mustNil(t, "PutEnrollmentCode", s.PutEnrollmentCode(ctx, c))
	cert := store.KioskCertificate{Serial: "abc3", SHA256: fingerprint("cert-e3")}
	for i := 0; i < store.MaxEnrollmentAttempts; i++ {
		_, err := s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, fingerprint("guess"), cert, base.Add(time.Minute))
		mustIs(t, "wrong code", err, store.ErrNotFound)
	}
	// Guessing voided the code: the right one no longer works.
	_, err := s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, c.CodeHash, cert, base.Add(time.Minute))
	mustIs(t, "right code after too many wrong ones", err, store.ErrUsed)
}

func testEnrollmentCodeValidation(t *testing.T, s store.Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		edit func(c *store.EnrollmentCode)
	}{
		{"bad kiosk ID", func(c *store.EnrollmentCode) { c.Kiosk.ID = "kiosk one" }},
		{"no store name", func(c *store.EnrollmentCode) { c.Kiosk.StoreName = "" }},
		{"bad prefecture", func(c *store.EnrollmentCode) { c.Kiosk.Prefecture = "48" }},
		{"hash not hex", func(c *store.EnrollmentCode) { c.CodeHash = "ABCDEF" }},
		{"no creation time", func(c *store.EnrollmentCode) { c.Created = time.Time{} }},
		{"expires before created", func(c *store.EnrollmentCode) { c.Expires = c.Created }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCode("v", base, time.Hour)
			tt.edit(&c)
			mustIs(t, "PutEnrollmentCode", s.PutEnrollmentCode(ctx, c), store.ErrInvalid)
		})
	}
	c := newCode("v", base, time.Hour)
	mustNil(t, "PutEnrollmentCode", s.PutEnrollmentCode(ctx, c))
	_, err := s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, c.CodeHash, store.KioskCertificate{Serial: "x", SHA256: "y"}, base)
	mustIs(t, "redeem with a malformed certificate", err, store.ErrInvalid)
}

// Two kiosks racing with the same code: exactly one is enrolled.
func testEnrollmentCodeConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newCode("e4", base, time.Hour)
	mustNil(t, "PutEnrollmentCode", s.PutEnrollmentCode(ctx, c))
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cert := store.KioskCertificate{Serial: "c0de", SHA256: fingerprint("race-" + string(rune('a'+i)))}
			_, errs[i] = s.RedeemEnrollmentCode(ctx, c.Kiosk.ID, c.CodeHash, cert, base.Add(time.Minute))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrUsed):
			t.Errorf("losing redemption: %v, want ErrUsed", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d redemptions succeeded, want exactly 1", ok)
	}
}

func testKioskRenewCertificate(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustNil(t, "EnrollKiosk", s.EnrollKiosk(ctx, NewKiosk("r1")))
	mustNil(t, "EnrollKiosk", s.EnrollKiosk(ctx, NewKiosk("r2")))
	next := store.KioskCertificate{Serial: "beef", SHA256: fingerprint("renewed-r1")}
	mustNil(t, "RenewKioskCertificate", s.RenewKioskCertificate(ctx, "kiosk-r1", next, base.Add(time.Hour)))
	k, err := s.Kiosk(ctx, "kiosk-r1")
	mustNil(t, "Kiosk", err)
	if k.CertSerial != next.Serial || k.CertSHA256 != next.SHA256 {
		t.Fatalf("after renewal the kiosk names certificate %s/%s, want %s/%s", k.CertSerial, k.CertSHA256, next.Serial, next.SHA256)
	}
	for _, fp := range []string{next.SHA256, fingerprint("r1")} {
		got, err := s.KioskByCertificate(ctx, fp)
		mustNil(t, "KioskByCertificate after renewal", err)
		if got.ID != "kiosk-r1" {
			t.Fatalf("certificate %s belongs to %s", fp[:8], got.ID)
		}
	}
	mustIs(t, "renew with another kiosk's certificate",
		s.RenewKioskCertificate(ctx, "kiosk-r1", store.KioskCertificate{Serial: "1", SHA256: fingerprint("r2")}, base.Add(time.Hour)), store.ErrExists)
	mustIs(t, "renew an unknown kiosk",
		s.RenewKioskCertificate(ctx, "kiosk-none", store.KioskCertificate{Serial: "1", SHA256: fingerprint("n")}, base), store.ErrNotFound)
	mustIs(t, "renew with a malformed certificate",
		s.RenewKioskCertificate(ctx, "kiosk-r1", store.KioskCertificate{Serial: "1", SHA256: "nothex"}, base), store.ErrInvalid)
	mustNil(t, "suspend", s.SetKioskStatus(ctx, "kiosk-r2", store.KioskSuspended, "investigation", base.Add(time.Hour)))
	mustIs(t, "renew a suspended kiosk",
		s.RenewKioskCertificate(ctx, "kiosk-r2", store.KioskCertificate{Serial: "2", SHA256: fingerprint("r2-next")}, base.Add(2*time.Hour)), store.ErrTransition)
}
