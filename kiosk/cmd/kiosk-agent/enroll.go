package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/kiosk/internal/identity"
)

// enroll makes the kiosk's key (in the TPM when the configuration names
// one), sends its CSR with the one-time code to the center's enrollment
// endpoint and stores the certificate and the center CA where the
// configuration names them. The key never leaves the kiosk.
//
//	kiosk-agent enroll -config kiosk.json -id K-0001 -code-file code.txt -url https://center:8444/v1/enroll -center-ca center-ca.pem
func enroll(args []string) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	path := fs.String("config", "kiosk.json", "kiosk configuration file")
	id := fs.String("id", "", "this kiosk's ID, as the operator enrolled it")
	codeFile := fs.String("code-file", "", "file holding the one-time enrollment code (or $KIOSKCERT_ENROLLMENT_CODE)")
	url := fs.String("url", "", "the center's enrollment endpoint, https://host:port/v1/enroll")
	centerCA := fs.String("center-ca", "", "the center CA certificate delivered with the agent (default: the configuration's centerCaFile)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	code := os.Getenv("KIOSKCERT_ENROLLMENT_CODE")
	if *codeFile != "" {
		b, err := os.ReadFile(*codeFile)
		if err != nil {
			return err
		}
		code = strings.TrimSpace(string(b))
	}
	if *id == "" || code == "" || *url == "" {
		return errors.New("enroll: -id, -url and the code (-code-file or $KIOSKCERT_ENROLLMENT_CODE) are required; the code is never a command-line argument")
	}
	caFile := *centerCA
	if caFile == "" {
		caFile = cfg.Path(cfg.CenterCAFile)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("enroll: center CA: %w", err)
	}
	var key identity.Key
	if cfg.TPM != "" {
		key, err = identity.CreateTPMKey(cfg.TPM, cfg.Path(cfg.KeyFile))
	} else {
		key, err = identity.CreateFileKey(cfg.Path(cfg.KeyFile))
	}
	if err != nil {
		return err
	}
	defer key.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := identity.Enroll(ctx, key, identity.EnrollOptions{URL: *url, CenterCA: ca, ServerName: cfg.CenterServerName, KioskID: *id, Code: code})
	if err != nil {
		return err
	}
	if err := identity.WriteFileAtomic(cfg.Path(cfg.CertFile), []byte(resp.Chain), 0o644); err != nil {
		return err
	}
	if err := identity.WriteFileAtomic(cfg.Path(cfg.CenterCAFile), []byte(resp.CenterCA), 0o644); err != nil {
		return err
	}
	where := "a key file readable only by this account"
	if cfg.TPM != "" {
		where = "the TPM (not exportable)"
	}
	fmt.Printf("kiosk %s enrolled: key in %s, certificate in %s\n", *id, where, cfg.Path(cfg.CertFile))
	return nil
}
