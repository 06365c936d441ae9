// Command issuance-center runs the certificate issuance center and its
// operator commands.
//
//	issuance-center init -dir DIR -card-trust FILE [-issuer-url URL] [-hosts h1,h2] [-kiosk-listen A] [-public-listen A] [-ops-listen A]
//	issuance-center serve -config DIR/center.json
//	issuance-center kiosk enroll|suspend|activate|revoke|list -config FILE ...
//	issuance-center municipality list|add|enable|disable -config FILE ...
//	issuance-center records import|imports|import-cancel|count|delete|flag-set|flag-clear -config FILE ...
//	issuance-center rotate-shc-key -config FILE
//	issuance-center revoke -config FILE -certificate-id ID -kid KID -reason CODE
//	issuance-center operator add|list|disable|enable|reset|token|revoke-token -config FILE ...
//	issuance-center kiosk enroll-code -config FILE -id ID ... [-ttl 72h]
//	issuance-center keys request -config FILE -purpose vdsnc|kioskca -out FILE.csr
//	issuance-center keys install -config FILE -cert FILE.pem
//	issuance-center authority csca init|sign-signer -dir DIR ...       (offline machine)
//	issuance-center authority kiosk-ca init|sign -dir DIR ...          (offline machine)
//
// Operator commands act on the running center through its operations API
// (the address and token come from the config, or -center and
// -token-file), so nothing needs a stop. With -offline they open a stopped
// center's files instead, for maintenance; a running center refuses that.
// Every change is audited with the operator's ID: the owner of the API
// token on a running center, -operator (or $KIOSKCERT_OPERATOR) with
// -offline.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit code: 0 success, 1 the
// command failed, 2 usage.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok && len(args) > 1 {
		name = args[0] + " " + args[1]
		cmd, ok = commands[name]
		args = args[1:]
	}
	if !ok && len(args) > 1 {
		// Three-word commands: authority csca init, ...
		name = name + " " + args[1]
		cmd, ok = commands[name]
		args = args[1:]
	}
	if !ok {
		usage(stderr)
		return 2
	}
	env := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	if err := cmd(ctx, env, name, args[1:]); err != nil {
		if err == errUsage {
			return 2
		}
		fmt.Fprintln(stderr, "issuance-center:", err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: issuance-center COMMAND [flags]
  init            create a center (config, PKI, keys, databases) in -dir
  serve           run the center
  kiosk           enroll | suspend | activate | revoke | list
  municipality    list | add | enable | disable
  records         import | imports | import-cancel | count | delete | flag-set | flag-clear
  rotate-shc-key  make a new SMART Health Card key active; the old one stays published
  revoke          revoke a certificate ID (SMART Health Card revocation list)
  audit verify    check the audit log's hash chain and signed checkpoints; recompute settlement
  operator        add | list | disable | enable | reset | token | revoke-token (console accounts, API tokens)
  kiosk enroll-code  a one-time code for a kiosk to enroll itself (kiosk-agent enroll)
  version         the build, and whether it can use PKCS#11 tokens (pkcs11=yes)
  keys            request | install: certificates from the offline authorities (docs/KEYS.md)
  authority       csca init | csca sign-signer | kiosk-ca init | kiosk-ca sign (offline machine)
Operator commands go through the running center's operations API; -offline
opens a stopped center's files instead. Run "issuance-center COMMAND -h" for flags.`)
}
