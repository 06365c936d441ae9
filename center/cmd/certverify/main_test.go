package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/pkg/certificate"
	"github.com/kioskcert/kioskcert/pkg/certificate/certtest"
	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// files writes trust material and a QR text file for a synthetic overseas
// certificate into a temporary directory.
type files struct {
	dir, jwks, csca, crl, codes, tampered string
}

func setup(t *testing.T) files {
	t.Helper()
	now := time.Now()
	c := certtest.Resident(t, "hanako", certificate.Overseas)
	c.IssueDate = now.Format(time.DateOnly)
	shcKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cscaKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bscKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is, err := shc.NewIssuer("https://vc.kioskcert.example/012041", shcKey, []byte("kioskcert-test-revocation-secret"))
	if err != nil {
		t.Fatal(err)
	}
	shcText, err := is.Issue(c, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cscaDER, err := vdsnc.CreateCSCA(rand.Reader, vdsnc.CSCATemplate{CommonName: "Japan Test CSCA", Country: "JP", NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)}, cscaKey)
	if err != nil {
		t.Fatal(err)
	}
	bscDER, err := vdsnc.CreateBarcodeSigner(rand.Reader, vdsnc.SignerTemplate{CommonName: "Japan Test VDS-NC Signer", Country: "JP", NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)}, bscKey.Public(), cscaDER, cscaKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := vdsnc.NewSigner(bscKey, bscDER)
	if err != nil {
		t.Fatal(err)
	}
	data, err := vdsnc.Build(c)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := signer.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := shc.NewJWKS(shcKey.Public())
	crl := shc.NewCRL(is.KeyID())
	if err := crl.Revoke(shc.RID([]byte("kioskcert-test-revocation-secret"), is.KeyID(), c.ID), time.Time{}); err != nil {
		t.Fatal(err)
	}
	f := files{dir: t.TempDir()}
	write := func(name string, b []byte) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jwks, _ := json.Marshal(keys)
	crlJSON, _ := json.Marshal(crl)
	f.jwks = write("jwks.json", jwks)
	f.csca = write("csca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cscaDER}))
	f.crl = write("crl.json", crlJSON)
	f.codes = write("codes.txt", []byte(shcText+"\n"+string(doc)+"\n"))
	f.tampered = write("tampered.txt", []byte(strings.Replace(string(doc), "SHIKEN HANAKO", "SHIKEN HANAKA", 1)))
	return f
}

func TestRun(t *testing.T) {
	f := setup(t)
	empty := filepath.Join(f.dir, "empty.txt")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string
	}{
		{"both valid", []string{"-jwks", f.jwks, "-csca", f.csca, f.codes}, "", 0, "QR 2: ICAO VDS-NC: VALID"},
		{"json", []string{"-json", "-jwks", f.jwks, "-csca", f.csca, f.codes}, "", 0, `"kind": "vdsnc"`},
		{"stdin", []string{"-jwks", f.jwks, "-csca", f.csca, "-"}, mustRead(t, f.codes), 0, "name:           SHIKEN HANAKO"},
		{"no CSCA", []string{"-jwks", f.jwks, f.codes}, "", 1, "no CSCA certificate given"},
		{"tampered", []string{"-csca", f.csca, f.tampered}, "", 1, "signature does not verify"},
		{"revoked", []string{"-jwks", f.jwks, "-csca", f.csca, "-crl", f.crl, f.codes}, "", 1, "revoked"},
		{"no code", []string{"-jwks", f.jwks, empty}, "", 1, "no QR code found"},
		{"missing file", []string{f.dir + "/nope.pdf"}, "", 2, ""},
		{"no argument", []string{"-jwks", f.jwks}, "", 2, ""},
		{"bad flag", []string{"-nope", f.codes}, "", 2, ""},
		{"bad jwks", []string{"-jwks", f.csca, f.codes}, "", 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout.String())
			}
		})
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
