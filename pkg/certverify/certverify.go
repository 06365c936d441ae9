// Package certverify verifies printed or scanned vaccination certificates
// offline: it finds every QR code on a page, tells SMART Health Cards from
// ICAO VDS-NC proofs of vaccination, verifies each against the trust
// material it is given, and reports what each code says, so a person can
// compare it with the printed text.
//
//	opts := certverify.Options{JWKS: keys, CSCAs: cscas}
//	report, err := certverify.Verify(ctx, fileBytes, opts) // PDF, PNG, JPEG or QR text
//	if err != nil || !report.OK() { … }
//	for _, c := range report.Codes { fmt.Println(c.Kind, c.Valid, c.Holder.Name) }
//
// Inputs are recognised by content: a PDF is rendered page by page with
// poppler's pdftoppm (300 dpi, grey) through pipes, PNG and JPEG images are
// decoded directly, and anything else is read as QR text, one code per line
// (or one VDS-NC JSON document).
//
// QR codes are found with gozxing's multiple-QR reader in try-harder mode. A
// text starting "shc:/" is a SMART Health Card and is checked with pkg/shc
// against a JWKS; a JSON object whose data.hdr.t is "icao.vacc" is a VDS-NC
// and is checked with pkg/vdsnc against trusted CSCA certificates. A code
// with neither form is reported as unknown and invalid.
//
// # Personal data
//
// A certificate carries a name, a birth date, a passport number and a
// vaccination history. This package keeps them in memory only: the PDF goes
// to pdftoppm on its standard input and the page images come back on its
// standard output, so nothing is written to disk by this package, and
// nothing is logged. Reporting what a code says is the purpose of the tool;
// callers decide where the report goes.
package certverify

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/pkg/shc"
	"github.com/kioskcert/kioskcert/pkg/vdsnc"
)

// Options is the trust material and environment of a verification.
type Options struct {
	// JWKS verifies SMART Health Cards; without it every SHC is invalid.
	JWKS *shc.JWKS
	// SHCIssuer, if set, is the only SHC issuer (iss) accepted.
	SHCIssuer string
	// CRLs are SHC revocation lists, matched by kid.
	CRLs []*shc.CRL
	// CSCAs verify VDS-NC signer certificates; without them every VDS-NC is
	// invalid.
	CSCAs []*x509.Certificate
	// Now is the verification time; zero means time.Now().
	Now time.Time
	// Pdftoppm is the path of poppler's pdftoppm; empty means "pdftoppm"
	// found in PATH.
	Pdftoppm string
}

// Kind is what a QR code turned out to be.
type Kind string

// Kinds of QR code.
const (
	KindSHC     Kind = "shc"
	KindVDSNC   Kind = "vdsnc"
	KindUnknown Kind = "unknown"
)

// Result is the verification of one QR code. Holder and Doses are filled
// only when Valid: unverified content is not shown as if it were.
type Result struct {
	Kind  Kind   `json:"kind"`
	Page  int    `json:"page,omitempty"` // 1-based PDF page; 0 for other inputs
	Valid bool   `json:"valid"`
	Error string `json:"error,omitempty"`
	// Err is the error behind Error, for errors.Is (shc.ErrRevoked, …).
	Err error `json:"-"`
	// Issuer is the SHC iss, or the VDS-NC issuing state and signer.
	Issuer string `json:"issuer,omitempty"`
	// CertificateID is the VDS-NC uvci (SHC does not carry it).
	CertificateID string `json:"certificateId,omitempty"`
	// RID is the SHC revocation identifier, if any.
	RID    string `json:"rid,omitempty"`
	Holder Holder `json:"holder,omitzero"`
	Doses  []Dose `json:"doses,omitempty"`
}

// Holder is the person a code is about.
type Holder struct {
	Name           string `json:"name"`
	BirthDate      string `json:"birthDate,omitempty"`
	Sex            string `json:"sex,omitempty"`
	PassportNumber string `json:"passportNumber,omitempty"`
}

// Dose is one vaccination as a code states it.
type Dose struct {
	Number  int    `json:"number,omitempty"` // VDS-NC seq; SHC has none
	Date    string `json:"date"`
	Vaccine string `json:"vaccine"` // SHC: "CVX 208"; VDS-NC: product name and ICD-11 code
	Lot     string `json:"lot,omitempty"`
	Country string `json:"country,omitempty"`
	By      string `json:"by,omitempty"` // SHC performer / VDS-NC administering authority
}

// Report is the verification of every code found in one input.
type Report struct {
	Codes []Result `json:"codes"`
}

// OK reports whether at least one code was found and every code is valid.
func (r *Report) OK() bool {
	if r == nil || len(r.Codes) == 0 {
		return false
	}
	for _, c := range r.Codes {
		if !c.Valid {
			return false
		}
	}
	return true
}

// Errors of the input side. Verification failures are not errors of Verify;
// they are reported per code in the Report.
var (
	ErrNoCode   = errors.New("certverify: no QR code found")
	ErrInput    = errors.New("certverify: unreadable input")
	ErrRenderer = errors.New("certverify: cannot render PDF (is poppler-utils installed?)")
	ErrTrust    = errors.New("certverify: unusable trust material")
)

// Verify finds and verifies every QR code in a PDF, PNG, JPEG or QR-text
// input. It returns ErrNoCode (with an empty report) when there is none.
func Verify(ctx context.Context, input []byte, opts Options) (*Report, error) {
	found, err := Scan(ctx, input, opts)
	if err != nil {
		return &Report{}, err
	}
	r := &Report{}
	for _, f := range found {
		res := VerifyText(f.Text, opts)
		res.Page = f.Page
		r.Codes = append(r.Codes, res)
	}
	return r, nil
}

// VerifyText verifies one QR payload.
func VerifyText(text string, opts Options) Result {
	switch {
	case strings.HasPrefix(text, shc.QRPrefix):
		return verifySHC(text, opts)
	case vdsnc.IsVDSNC([]byte(text)):
		return verifyVDSNC(text, opts)
	}
	err := errors.New("certverify: neither a SMART Health Card nor an ICAO VDS-NC proof of vaccination")
	return Result{Kind: KindUnknown, Err: err, Error: err.Error()}
}

func verifySHC(text string, opts Options) Result {
	res := Result{Kind: KindSHC}
	if opts.JWKS == nil {
		return failed(res, fmt.Errorf("%w: no JWKS given for SMART Health Cards (-jwks)", ErrTrust))
	}
	card, err := shc.Verify(text, shc.VerifyOptions{Keys: opts.JWKS, Issuer: opts.SHCIssuer, Now: opts.Now, CRLs: opts.CRLs})
	if err != nil {
		return failed(res, err)
	}
	res.Valid = true
	res.Issuer = card.Issuer
	res.RID = card.RID
	res.Holder = Holder{Name: card.Holder.Name(), BirthDate: card.Holder.BirthDate}
	for _, d := range card.Doses {
		res.Doses = append(res.Doses, Dose{Date: d.Date, Vaccine: "CVX " + d.CVX, Lot: d.Lot, By: d.Performer})
	}
	return res
}

func verifyVDSNC(text string, opts Options) Result {
	res := Result{Kind: KindVDSNC}
	if len(opts.CSCAs) == 0 {
		return failed(res, fmt.Errorf("%w: no CSCA certificate given for VDS-NC (-csca)", ErrTrust))
	}
	v, err := vdsnc.Verify([]byte(text), vdsnc.VerifyOptions{CSCAs: opts.CSCAs, Now: opts.Now})
	if err != nil {
		return failed(res, err)
	}
	m := v.Data.Msg
	res.Valid = true
	res.Issuer = v.Data.Hdr.Is + " (" + v.Signer.Subject.CommonName + ")"
	res.CertificateID = m.UVCI
	res.Holder = Holder{Name: m.Pid.N, BirthDate: m.Pid.Dob, Sex: m.Pid.Sex, PassportNumber: m.Pid.I}
	for _, ve := range m.Ve {
		for _, e := range ve.Vd {
			res.Doses = append(res.Doses, Dose{Number: e.Seq, Date: e.Dvc, Vaccine: ve.Nam + " (" + ve.Des + ")",
				Lot: e.Lot, Country: e.Ctr, By: e.Adm})
		}
	}
	// VDS-NC groups doses by product; show them in the order given.
	sortDoses(res.Doses)
	return res
}

func failed(res Result, err error) Result {
	res.Err = err
	res.Error = err.Error()
	return res
}

// sortDoses orders doses by number, then date (insertion sort: ≤ 10 doses).
func sortDoses(d []Dose) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && (d[j].Number < d[j-1].Number || d[j].Number == d[j-1].Number && d[j].Date < d[j-1].Date); j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}

// MaxTrustFileSize bounds JWKS, CRL and CSCA files and downloads.
const MaxTrustFileSize = 1 << 20

// LoadJWKS reads an issuer's key set from a file or an https URL. For a URL
// of the form <iss>/.well-known/jwks.json it also returns <iss>, which the
// caller should pass as Options.SHCIssuer so the keys vouch only for their
// own issuer's cards. client may be nil (a 10-second default).
func LoadJWKS(ctx context.Context, src string, client *http.Client) (*shc.JWKS, string, error) {
	if !strings.Contains(src, "://") {
		b, err := readLimited(src)
		if err != nil {
			return nil, "", err
		}
		k, err := shc.ParseJWKS(b)
		return k, "", err
	}
	u, err := url.Parse(src)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, "", fmt.Errorf("%w: JWKS URL must be https", ErrTrust)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrTrust, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%w: fetching JWKS: %w", ErrTrust, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("%w: fetching JWKS: HTTP %d", ErrTrust, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxTrustFileSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("%w: fetching JWKS: %w", ErrTrust, err)
	}
	if len(b) > MaxTrustFileSize {
		return nil, "", fmt.Errorf("%w: JWKS larger than %d bytes", ErrTrust, MaxTrustFileSize)
	}
	k, err := shc.ParseJWKS(b)
	if err != nil {
		return nil, "", err
	}
	iss, _ := strings.CutSuffix(src, "/.well-known/jwks.json")
	if iss == src {
		iss = ""
	}
	return k, iss, nil
}

// LoadCRL reads an SHC revocation list from a file.
func LoadCRL(path string) (*shc.CRL, error) {
	b, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return shc.ParseCRL(b)
}

// ParseCSCAs reads trusted CSCA certificates: PEM (one or more CERTIFICATE
// blocks) or a single DER certificate.
func ParseCSCAs(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: CSCA certificate: %w", ErrTrust, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%w: CSCA file is neither PEM nor DER certificate", ErrTrust)
		}
		certs = append(certs, c)
	}
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("%w: CSCA certificate %q is not a CA", ErrTrust, c.Subject.CommonName)
		}
	}
	return certs, nil
}

// LoadCSCAs reads trusted CSCA certificates from a file (see ParseCSCAs).
func LoadCSCAs(path string) ([]*x509.Certificate, error) {
	b, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return ParseCSCAs(b)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTrust, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTrustFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTrust, err)
	}
	if len(b) > MaxTrustFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrTrust, path, MaxTrustFileSize)
	}
	return b, nil
}

// MarshalJSON writes a report; Err is left out (Error carries its text).
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	if r.Codes == nil {
		return json.Marshal(plain{Codes: []Result{}})
	}
	return json.Marshal((*plain)(r))
}

// WriteText writes the report for a person: one block per code, the holder
// and doses of valid codes, the reason for invalid ones.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	if len(r.Codes) == 0 {
		b.WriteString("no QR code found\n")
	}
	names := map[Kind]string{KindSHC: "SMART Health Card", KindVDSNC: "ICAO VDS-NC", KindUnknown: "unknown QR code"}
	for i, c := range r.Codes {
		fmt.Fprintf(&b, "QR %d", i+1)
		if c.Page > 0 {
			fmt.Fprintf(&b, " (page %d)", c.Page)
		}
		fmt.Fprintf(&b, ": %s: ", names[c.Kind])
		if !c.Valid {
			fmt.Fprintf(&b, "INVALID: %s\n", c.Error)
			continue
		}
		b.WriteString("VALID\n")
		fmt.Fprintf(&b, "  issuer:         %s\n", c.Issuer)
		if c.CertificateID != "" {
			fmt.Fprintf(&b, "  certificate ID: %s\n", c.CertificateID)
		}
		fmt.Fprintf(&b, "  name:           %s\n", c.Holder.Name)
		fmt.Fprintf(&b, "  date of birth:  %s\n", c.Holder.BirthDate)
		if c.Holder.Sex != "" {
			fmt.Fprintf(&b, "  sex:            %s\n", c.Holder.Sex)
		}
		if c.Holder.PassportNumber != "" {
			fmt.Fprintf(&b, "  passport:       %s\n", c.Holder.PassportNumber)
		}
		for j, d := range c.Doses {
			n := d.Number
			if n == 0 {
				n = j + 1 // SHC lists doses in order but does not number them
			}
			fmt.Fprintf(&b, "  dose %d: %s  %s  lot %s", n, d.Date, d.Vaccine, d.Lot)
			if d.Country != "" {
				fmt.Fprintf(&b, "  %s", d.Country)
			}
			if d.By != "" {
				fmt.Fprintf(&b, "  (%s)", d.By)
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
