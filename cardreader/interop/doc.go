// Package interop has the virtual card read by a client written for real
// My Number cards, through the same private pcscd and vpcd driver the
// kiosk's PC/SC tests use. The client (testdata/mynaclient.py, on Debian's
// python3-pyscard) sends what jpki/myna sends to a real card and expects
// what myna expects: the JPKI token check, My Number read as 17 bytes, the
// four items header first, the 336-byte signature file, the certificate,
// the application's basic information, every PIN counter, and that
// selecting the application again forgets a verified PIN. myna itself is
// not used: the Go module proxy does not serve github.com/jpki/myna, so it
// cannot be built here (docs/CARD.md says more).
//
// The package has no code of its own beyond this comment; its test fails
// when the virtual card answers anything a real card would not.
package interop
