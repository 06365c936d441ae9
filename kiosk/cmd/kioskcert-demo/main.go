// Command kioskcert-demo runs the whole system on one machine: it creates a
// demo issuance center (running the issuance-center binary found next to
// this one), a test card issuing authority and a kiosk, then issues one
// domestic and one overseas certificate for the demo resident hanako
// through the kiosk flow, prints them as PDFs and verifies their QR codes.
//
//	kioskcert-demo [-out out/demo] [-reader virtual|pcsc] [-vpcd 127.0.0.1:35963] [-keys auto|softhsm|file]
//
// The center's signing keys are in a SoftHSM2 token made for the demo when
// SoftHSM2 is installed and the center binary has PKCS#11 support
// (bin/pkcs11/issuance-center), in files otherwise; it says which.
//
// It exits 0 only if both certificates were issued, printed and verified.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kioskcert/kioskcert/cardreader/vpcd"
	"github.com/kioskcert/kioskcert/kiosk/internal/demo"
)

func main() {
	out := flag.String("out", "out/demo", "output directory (replaced)")
	reader := flag.String("reader", "virtual", "virtual (in-process card) or pcsc (through pcscd and vsmartcard-vpcd)")
	vpcdAddr := flag.String("vpcd", vpcd.DefaultAddr, "vpcd driver address, for -reader pcsc")
	center := flag.String("center", "", "issuance-center binary (default: next to this program, pkcs11/issuance-center first)")
	keys := flag.String("keys", demo.KeysAuto, "where the center's signing keys live: auto (SoftHSM2 if installed), softhsm or file")
	flag.Parse()
	if *center == "" {
		self, err := os.Executable()
		if err != nil {
			fail(err)
		}
		*center = demo.DefaultCenter(self, *keys)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := demo.Run(ctx, demo.Options{Out: *out, Center: *center, Reader: *reader, VPCD: *vpcdAddr, Keys: *keys, Stdout: os.Stdout})
	if res != nil {
		for pdf, rep := range res.Reports {
			fmt.Printf("== %s\n", pdf)
			rep.WriteText(os.Stdout)
		}
	}
	if err != nil {
		fail(err)
	}
	fmt.Printf(`
Demo finished: both certificates were issued, printed and verified.
Signing keys: %s
  %s      domestic certificate (日本国内用)
  %s      overseas certificate (海外用) with the domestic one on page 2
  %s         the issuer's keys as the center serves them
  %s     the demo resident's data, for checking
Verify them yourself:
  bin/certverify -jwks %s %s
  bin/certverify -jwks %s -csca %s %s
`, res.Keys, res.Domestic, res.Overseas, res.JWKS, res.Resident, res.JWKS, res.Domestic, res.JWKS, res.CSCA, res.Overseas)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kioskcert-demo:", err)
	os.Exit(1)
}
