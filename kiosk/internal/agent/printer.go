package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/kioskcert/kioskcert/kiosk/internal/config"
	"github.com/kioskcert/kioskcert/kiosk/internal/flow"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer"
	"github.com/kioskcert/kioskcert/pkg/protocol"
)

// Printer adapts a printer.Printer to the flow.
type Printer struct{ P printer.Printer }

// Print implements flow.Printer.
func (p Printer) Print(ctx context.Context, name string, pdf []byte, copies int) error {
	return p.P.Print(ctx, printer.Job{Name: name, PDF: pdf, Copies: copies})
}

// PrintCode maps printer errors to the reason codes residents and the
// center see: paper out and jams are told apart from other failures.
func PrintCode(err error) protocol.Code {
	switch {
	case errors.Is(err, printer.ErrPaperOut):
		return protocol.CodePrinterPaperOut
	case errors.Is(err, printer.ErrPaperJam):
		return protocol.CodePrinterJam
	default:
		return protocol.CodePrinterFailed
	}
}

// openPrinter opens the configured printer.
func openPrinter(cfg *config.Config) (flow.Printer, flow.PrinterErrorCode, error) {
	pc := cfg.Printer
	switch pc.Kind {
	case "ipp":
		var roots *x509.CertPool
		if pc.CAFile != "" {
			b, err := os.ReadFile(cfg.Path(pc.CAFile))
			if err != nil {
				return nil, nil, fmt.Errorf("agent: printer.caFile: %w", err)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(b) {
				return nil, nil, fmt.Errorf("agent: printer.caFile %s holds no PEM certificate: put the printer's CA (or self-signed) certificate there", cfg.Path(pc.CAFile))
			}
		}
		p, err := printer.NewIPP(pc.URL, printer.IPPOptions{RootCAs: roots})
		if err != nil {
			return nil, nil, err
		}
		return Printer{p}, PrintCode, nil
	case "spool":
		p, err := printer.NewSpool(pc.SpoolDir)
		if err != nil {
			return nil, nil, err
		}
		return Printer{p}, PrintCode, nil
	}
	return nil, nil, fmt.Errorf("agent: printer kind %q", pc.Kind)
}
