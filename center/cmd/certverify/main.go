// Command certverify checks the QR codes of a printed or scanned
// vaccination certificate offline:
//
//	certverify [-jwks file|url] [-csca file] [-crl file] [-json] FILE|-
//
// FILE is a PDF, a PNG or JPEG image, or a text file of QR text (one code per
// line, or one VDS-NC JSON document); "-" reads standard input. SMART Health
// Cards are checked against -jwks (a file, or the issuer's
// https://…/.well-known/jwks.json, which also pins the issuer), VDS-NC codes
// against the CSCA certificates in -csca (PEM or DER), and SHC revocation
// against -crl. The exit status is 0 when at least one code was found and
// every code is valid, 1 otherwise, and 2 for usage or trust-file errors.
//
// The output shows what the codes say, names and passport numbers included:
// that is the point of the tool. It writes nothing else anywhere.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/kioskcert/kioskcert/pkg/certverify"
	"github.com/kioskcert/kioskcert/pkg/shc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certverify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jwks := fs.String("jwks", "", "SMART Health Card issuer key set: a file or an https URL")
	csca := fs.String("csca", "", "trusted CSCA certificates for VDS-NC (PEM or DER file)")
	crl := fs.String("crl", "", "SMART Health Card revocation list (file)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: certverify [-jwks file|url] [-csca file] [-crl file] [-json] FILE|-")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	var opts certverify.Options
	var err error
	if *jwks != "" {
		if opts.JWKS, opts.SHCIssuer, err = certverify.LoadJWKS(ctx, *jwks, nil); err != nil {
			fmt.Fprintf(stderr, "certverify: -jwks: %v\n", err)
			return 2
		}
	}
	if *csca != "" {
		if opts.CSCAs, err = certverify.LoadCSCAs(*csca); err != nil {
			fmt.Fprintf(stderr, "certverify: -csca: %v\n", err)
			return 2
		}
	}
	if *crl != "" {
		c, err := certverify.LoadCRL(*crl)
		if err != nil {
			fmt.Fprintf(stderr, "certverify: -crl: %v\n", err)
			return 2
		}
		opts.CRLs = []*shc.CRL{c}
	}
	input, err := readInput(fs.Arg(0), stdin)
	if err != nil {
		fmt.Fprintf(stderr, "certverify: %v\n", err)
		return 2
	}
	report, err := certverify.Verify(ctx, input, opts)
	if err != nil && !errors.Is(err, certverify.ErrNoCode) {
		fmt.Fprintf(stderr, "certverify: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(report)
	} else {
		err = report.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "certverify: writing report: %v\n", err)
		return 1
	}
	if !report.OK() {
		return 1
	}
	return 0
}

func readInput(name string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, certverify.MaxInputSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > certverify.MaxInputSize {
		return nil, fmt.Errorf("input larger than %d bytes", certverify.MaxInputSize)
	}
	return b, nil
}
