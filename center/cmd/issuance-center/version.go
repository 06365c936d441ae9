package main

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"

	"github.com/kioskcert/kioskcert/center/internal/keyring/pkcs11source"
)

func init() {
	commands["version"] = cmdVersion
}

// cmdVersion prints the build and whether it can use PKCS#11 tokens
// (pkcs11=yes only in the cgo build with the pkcs11 tag): the demo asks
// it before choosing SoftHSM2.
func cmdVersion(ctx context.Context, e *env, name string, args []string) error {
	if err := parse(e, flag.NewFlagSet(name, flag.ContinueOnError), args); err != nil {
		return err
	}
	version, goVersion := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				version += " " + s.Value[:12]
			}
		}
	}
	pkcs11 := "no"
	if pkcs11source.Supported {
		pkcs11 = "yes"
	}
	fmt.Fprintf(e.stdout, "issuance-center %s %s pkcs11=%s\n", version, goVersion, pkcs11)
	return nil
}
