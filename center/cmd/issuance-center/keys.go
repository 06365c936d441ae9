package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/authority"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

func init() {
	commands["kiosk enroll-code"] = cmdKioskEnrollCode
	commands["keys request"] = cmdKeysRequest
	commands["keys install"] = cmdKeysInstall
	commands["authority csca init"] = cmdAuthorityInit(authority.CSCA)
	commands["authority kiosk-ca init"] = cmdAuthorityInit(authority.KioskCA)
	commands["authority csca sign-signer"] = cmdAuthoritySignSigner
	commands["authority kiosk-ca sign"] = cmdAuthorityKioskSign
}

func cmdKioskEnrollCode(ctx context.Context, e *env, name string, args []string) error {
	var k admin.KioskEnrollment
	var ttl time.Duration
	var out string
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&k.ID, "id", "", "kiosk ID")
		fs.StringVar(&k.StoreName, "store-name", "", "store name")
		fs.StringVar(&k.StoreCode, "store-code", "", "store code")
		fs.StringVar(&k.Chain, "chain", "", "store chain")
		fs.StringVar(&k.Prefecture, "prefecture", "", "prefecture code (01-47)")
		fs.StringVar(&k.Region, "region", "", "region")
		fs.DurationVar(&ttl, "ttl", 0, "how long the code works (default 72h, at most 336h)")
		fs.StringVar(&out, "out", "", "write the code to this file (mode 0600) instead of standard output")
	}, func(ops admin.Operations, a admin.Actor) error {
		c, err := ops.CreateEnrollmentCode(ctx, a, k, ttl)
		if err != nil {
			return err
		}
		if out != "" {
			if err := os.WriteFile(out, []byte(c.Code+"\n"), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "enrollment code for kiosk %s written to %s; valid until %s, once\n", c.KioskID, out, c.Expires.Format(time.RFC3339))
			return nil
		}
		fmt.Fprintf(e.stdout, "enrollment code for kiosk %s: %s\nvalid until %s, once; on the kiosk: kiosk-agent enroll -config kiosk.json -id %s -code-file FILE\n",
			c.KioskID, c.Code, c.Expires.Format(time.RFC3339), c.KioskID)
		return nil
	})
}

func cmdKeysRequest(ctx context.Context, e *env, name string, args []string) error {
	var purpose, out string
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&purpose, "purpose", "", "vdsnc (document signer, for the CSCA) or kioskca (kiosk issuing CA, for the kiosk CA)")
		fs.StringVar(&out, "out", "", "file for the certificate signing request (required)")
	}, func(ops admin.Operations, a admin.Actor) error {
		if out == "" {
			return errors.New("keys request: -out is required")
		}
		r, err := ops.RequestCertificate(ctx, a, store.KeyPurpose(purpose))
		if err != nil {
			return err
		}
		if err := os.WriteFile(out, r.CSRPEM, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "new %s key %s made in the key source; certificate request in %s: have the offline authority sign it, then run keys install\n", r.Purpose, r.Label, out)
		return nil
	})
}

func cmdKeysInstall(ctx context.Context, e *env, name string, args []string) error {
	var file string
	return withOps(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "cert", "", "PEM certificate from the offline authority")
	}, func(ops admin.Operations, a admin.Actor) error {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		in, err := ops.InstallCertificate(ctx, a, b)
		if err != nil {
			return err
		}
		switch in.Purpose {
		case "tls":
			fmt.Fprintf(e.stdout, "TLS server certificate installed (valid until %s); the center uses it from its next start\n", in.NotAfter.Format(time.DateOnly))
		default:
			fmt.Fprintf(e.stdout, "%s certificate %s installed and active (valid until %s); the previous one is retired\n", in.Purpose, in.KID, in.NotAfter.Format(time.DateOnly))
		}
		return nil
	})
}

// The authority commands run on the offline machine: they touch only the
// authority's directory and the files named.

func cmdAuthorityInit(kind authority.Kind) command {
	return func(ctx context.Context, e *env, name string, args []string) error {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		dir := fs.String("dir", "", "directory for the authority (keep it offline)")
		cn := fs.String("name", "", "the authority's common name")
		country := fs.String("country", "JP", "ISO 3166-1 alpha-2 country code")
		if err := parse(e, fs, args); err != nil {
			return err
		}
		if *dir == "" {
			return errors.New(name + ": -dir is required")
		}
		if *cn == "" {
			*cn = map[authority.Kind]string{authority.CSCA: "kioskcert CSCA Japan", authority.KioskCA: "kioskcert Kiosk CA"}[kind]
		}
		a, err := authority.Create(*dir, kind, *cn, *country, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s created in %s; give the center %s (public) and keep %s offline\n",
			kind, *dir, filepath.Join(a.Dir, authority.CertFile), filepath.Join(a.Dir, authority.KeyFile))
		return nil
	}
}

func authoritySign(e *env, name string, args []string, kind authority.Kind, profileFlag bool, sign func(a *authority.Authority, csr []byte, profile string) ([]byte, error)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	dir := fs.String("dir", "", "the authority's directory")
	csrFile := fs.String("csr", "", "certificate signing request (PEM)")
	out := fs.String("out", "", "file for the certificate (PEM)")
	profile := ""
	if profileFlag {
		fs.StringVar(&profile, "profile", "", "issuing-ca (the center's online kiosk issuing CA), kiosk (one kiosk, CN = kiosk ID) or server (the center's TLS)")
	}
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if *dir == "" || *csrFile == "" || *out == "" {
		return errors.New(name + ": -dir, -csr and -out are required")
	}
	a, err := authority.Open(*dir, kind)
	if err != nil {
		return err
	}
	csr, err := os.ReadFile(*csrFile)
	if err != nil {
		return err
	}
	cert, err := sign(a, csr, profile)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, cert, 0o644); err != nil {
		return err
	}
	certs, _ := authority.ParseCerts(cert)
	fmt.Fprintf(e.stdout, "certified %q (serial %X, until %s) into %s; carry it to the center: issuance-center keys install -cert FILE\n",
		certs[0].Subject.CommonName, certs[0].SerialNumber.Bytes(), certs[0].NotAfter.Format(time.DateOnly), *out)
	return nil
}

func cmdAuthoritySignSigner(ctx context.Context, e *env, name string, args []string) error {
	return authoritySign(e, name, args, authority.CSCA, false, func(a *authority.Authority, csr []byte, _ string) ([]byte, error) {
		return a.SignDocumentSigner(csr, time.Now())
	})
}

func cmdAuthorityKioskSign(ctx context.Context, e *env, name string, args []string) error {
	return authoritySign(e, name, args, authority.KioskCA, true, func(a *authority.Authority, csr []byte, profile string) ([]byte, error) {
		return a.SignKioskChannel(csr, authority.Profile(profile), time.Now())
	})
}
