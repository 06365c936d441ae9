// Package e2e holds the kiosk's end-to-end, concurrency and latency tests.
// It has no code of its own outside its tests: everything runs through the
// real parts a kiosk deployment uses.
//
// TestMain builds the issuance-center binary (CGO_ENABLED=0, as deployed),
// starts a private pcscd with the vsmartcard vpcd driver
// (cardreader/pcsctest), creates a test card issuing authority, and sets up
// and starts a demo center (kiosk/internal/demo) with the demo
// municipalities and records, 50 more synthetic residents imported as a
// municipal ledger CSV through `issuance-center records import`, and one
// enrolled kiosk per scenario plus 50 for the load test. The center runs as
// a separate process on fixed loopback ports, so a test can stop or kill it
// and start it again where the kiosks expect it.
//
// The scenario tests (scenarios_test.go) each wire a kiosk agent with
// agent.New: the PC/SC reader "Virtual PCD 00 00" of that pcscd, a virtual
// card inserted through the vpcd driver, mutual TLS to the center process,
// and a real IPP printer (CUPS's ippeveprinter, kiosk/internal/printer/ipptest,
// one per test so that its spool and paper level are the test's own,
// reached over ipps with a certificate from a test CA the kiosk trusts)
// whose spool keeps what was printed. A scripted resident
// (kiosk/internal/headless) plays each session: good domestic and overseas
// issuance with every printed QR code verified by pkg/certverify against the
// center's published JWKS and CSCA, wrong and blocked PINs, a card pulled
// mid-read, tampered cards, a municipality that does not take part, the
// center going down and a connection dropping mid-request, the printer
// running out of paper, a certificate for someone else, and certificate
// renewal over the connection with the kiosk's clock moved forward (a
// key-file kiosk, and a TPM kiosk on a swtpm enrolled with a one-time code;
// renew_test.go). After each scenario the test scans the agent's log and every file the kiosk, the
// center and the test wrote (the printer's spool, which is the paper,
// excepted) for the residents' My Numbers, names, addresses, birth dates
// and passport numbers.
//
// TestConcurrentKiosks (load_test.go) runs 50 kiosks with in-process card
// slots against the one center at once, each behind a TCP proxy that drops
// connections at random points, and checks that every kiosk printed exactly
// its own resident's certificate once, that payments were captured once per
// session, and that the center's audit holds one "issued" event per request
// and one "printed" per session.
//
// The benchmarks (bench_test.go) measure the time from the PIN being
// accepted to the print job being submitted, through pcscd and the loopback
// center, and the agent's heap when connected and idle.
//
// centerclient_test.go drives a bare center client (no flow) through a
// connection cut after the center issued. bugs_test.go holds tests that
// show bugs found in other packages; they fail until those are fixed.
//
// The tests need root (pcscd in a private mount namespace) and the Debian
// packages `make deps` installs (pcscd, vsmartcard-vpcd, cups-ipp-utils,
// avahi-daemon, dbus, poppler-utils); a missing one fails the tests, it
// never skips them. Run them with
//
//	go test -race -count=1 ./kiosk/internal/e2e/
//	go test -run '^$' -bench . -benchtime 20x ./kiosk/internal/e2e/
//
// Everything lives in one temporary directory, removed at the end; set
// KIOSKCERT_E2E_KEEP=1 to keep it (center log, audit database) for a look.
package e2e
