package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

// The script tests run the issuance-center command as operators do: on a
// stopped center's files and against a running center, in the style of
// age's cmd/age tests. Scripts live in testdata/script.

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"issuance-center": main,
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup:               setupScript,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitserving": cmdWaitServing,
			"ledger":      cmdLedger,
		},
	})
}

// setupScript writes a test card authority's trust file to $WORK/trust.pem.
func setupScript(e *testscript.Env) error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	a := carddata.Authority{Signer: k}
	copy(a.KeyID[:], "CLI-SCRIPT-JLIS0")
	ik, err := a.IssuerKey()
	if err != nil {
		return err
	}
	trust, err := carddata.MarshalIssuerKey(ik)
	if err != nil {
		return err
	}
	e.Setenv("KIOSKCERT_OPERATOR", "")
	return os.WriteFile(filepath.Join(e.WorkDir, "trust.pem"), trust, 0o644)
}

// waitserving DIR waits up to 20 s for the center in DIR to write its run
// file, i.e. to be serving.
func cmdWaitServing(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitserving DIR")
	}
	path := filepath.Join(ts.MkAbs(args[0]), RunFile)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			var info runInfo
			if json.Unmarshal(b, &info) == nil && info.Ops != "" {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("the center in %s did not start serving in 20 s", args[0])
}

// ledger CODE FILE writes the demo residents' ledger of one municipality.
func cmdLedger(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: ledger CODE FILE")
	}
	d, err := demo.Load()
	ts.Check(err)
	f, err := os.Create(ts.MkAbs(args[1]))
	ts.Check(err)
	n, err := d.WriteLedger(f, args[0])
	ts.Check(err)
	ts.Check(f.Close())
	if n == 0 {
		ts.Fatalf("no demo resident has a record in %s", args[0])
	}
	fmt.Fprintf(ts.Stdout(), "%d persons\n", n)
}
