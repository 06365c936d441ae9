package demo

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestChooseKeys(t *testing.T) {
	_, installed := SoftHSMInstalled()
	if !installed {
		t.Fatal("SoftHSM2 is not installed (Debian package softhsm2; run make deps)")
	}
	for _, tt := range []struct {
		keys    string
		pkcs11  bool
		want    string
		wantErr bool
	}{
		{KeysAuto, true, KeysSoftHSM, false},
		{"", true, KeysSoftHSM, false},
		{KeysAuto, false, KeysFile, false},
		{KeysFile, true, KeysFile, false},
		{KeysSoftHSM, true, KeysSoftHSM, false},
		{KeysSoftHSM, false, "", true},
		{"hsm", true, "", true},
	} {
		got, why, err := ChooseKeys(tt.keys, tt.pkcs11)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ChooseKeys(%q, %v) = %q (%s), %v; want %q, error %v", tt.keys, tt.pkcs11, got, why, err, tt.want, tt.wantErr)
		}
		if err == nil && why == "" {
			t.Errorf("ChooseKeys(%q, %v) does not say why", tt.keys, tt.pkcs11)
		}
	}
}

// TestDemoWithSoftHSM runs `make demo`'s path with the PKCS#11 center and
// a SoftHSM2 token: both certificates are issued, printed and verify, the
// demo says where the keys are, and no signing key is a file in the
// center's key directory.
func TestDemoWithSoftHSM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := BuildCenterPKCS11(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !CenterHasPKCS11(bin) {
		t.Fatal("the PKCS#11 build says it has no PKCS#11 support")
	}
	out := filepath.Join(t.TempDir(), "demo")
	var said bytes.Buffer
	res, err := Run(ctx, Options{Out: out, Center: bin, Reader: "virtual", Keys: KeysAuto, Stdout: &said})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(said.String(), "signing keys: SoftHSM2 token ") {
		t.Fatalf("the demo said %q, want signing keys: SoftHSM2 token …", said.String())
	}
	if !strings.Contains(res.Keys, "SoftHSM2") || len(res.Reports) != 2 {
		t.Fatalf("result: keys %q, %d reports", res.Keys, len(res.Reports))
	}
	for pdf, rep := range res.Reports {
		if !rep.OK() {
			t.Errorf("%s did not verify", pdf)
		}
	}
	// The SMART Health Card, VDS-NC, kiosk issuing CA and audit keys are
	// in the token: the center's key directory holds public halves and
	// certificates only.
	err = filepath.WalkDir(filepath.Join(out, "center", "keys"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a private key", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
