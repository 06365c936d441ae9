package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

func init() {
	commands["operator add"] = cmdOperatorAdd
	commands["operator list"] = cmdOperatorList
	commands["operator disable"] = cmdOperatorEnable(false)
	commands["operator enable"] = cmdOperatorEnable(true)
	commands["operator reset"] = cmdOperatorReset
	commands["operator token"] = cmdOperatorToken
	commands["operator revoke-token"] = cmdOperatorRevokeToken
}

// withAccounts runs f with the account procedures of the running center
// (or of a stopped one's files with -offline).
func withAccounts(ctx context.Context, e *env, name string, args []string, define func(*flag.FlagSet), f func(admin.Accounts, admin.Actor) error) error {
	return withOps(ctx, e, name, args, define, func(ops admin.Operations, a admin.Actor) error {
		acc, ok := ops.(admin.Accounts)
		if !ok {
			return errors.New("this connection does not manage operators")
		}
		return f(acc, a)
	})
}

func readPassword(e *env, file string) (string, error) {
	if file == "" {
		return "", nil
	}
	var b []byte
	var err error
	if file == "-" {
		b, err = readAllLimited(e.stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func readAllLimited(r interface{ Read([]byte) (int, error) }) ([]byte, error) {
	buf := make([]byte, 0, 256)
	tmp := make([]byte, 256)
	for len(buf) < 4096 {
		n, err := r.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil {
			break
		}
	}
	return buf, nil
}

func printCreated(e *env, c admin.OperatorCreated) {
	fmt.Fprintf(e.stdout, "operator %s (%s) created\n", c.Operator.ID, c.Operator.Role)
	if c.Password != "" {
		fmt.Fprintf(e.stdout, "password: %s\n", c.Password)
	}
	if c.TOTPURI != "" {
		fmt.Fprintf(e.stdout, "TOTP secret: %s\n", c.TOTPSecret)
		fmt.Fprintf(e.stdout, "TOTP enrolment URI (scan into an authenticator app): %s\n", c.TOTPURI)
		fmt.Fprintln(e.stdout, "hand these to the operator in person; they are shown only now")
	}
}

func cmdOperatorAdd(ctx context.Context, e *env, name string, args []string) error {
	var n admin.NewOperator
	var role, pwFile string
	var asAdmin bool
	return withAccounts(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&n.ID, "id", "", "the new operator's ID (1-64 of [A-Za-z0-9._:-], e.g. op-suzuki)")
		fs.StringVar(&role, "role", "viewer", "viewer, operator, administrator or municipality")
		fs.BoolVar(&asAdmin, "admin", false, "same as -role administrator")
		fs.StringVar(&n.Municipality, "municipality", "", "the municipality a municipality-role operator sees")
		fs.StringVar(&pwFile, "password-file", "", "file holding the initial password (- for standard input); default: one is made and printed")
		fs.BoolVar(&n.TokenOnly, "token-only", false, "an account for scripts: API tokens only, no console login")
	}, func(acc admin.Accounts, a admin.Actor) error {
		n.Role = store.OperatorRole(role)
		if asAdmin {
			n.Role = store.RoleAdministrator
		}
		var err error
		if n.Password, err = readPassword(e, pwFile); err != nil {
			return err
		}
		c, err := acc.AddOperator(ctx, a, n)
		if err != nil {
			return err
		}
		printCreated(e, c)
		return nil
	})
}

func cmdOperatorList(ctx context.Context, e *env, name string, args []string) error {
	return withAccounts(ctx, e, name, args, nil, func(acc admin.Accounts, a admin.Actor) error {
		ops, err := acc.ListOperators(ctx)
		if err != nil {
			return err
		}
		for _, o := range ops {
			state := "active"
			if o.Disabled {
				state = "disabled"
			}
			login := "console"
			if !o.ConsoleLogin {
				login = "tokens-only"
			}
			fmt.Fprintf(e.stdout, "%-24s %-14s %-8s %-11s %s\n", o.ID, o.Role, state, login, o.Municipality)
		}
		return nil
	})
}

func cmdOperatorEnable(on bool) command {
	return func(ctx context.Context, e *env, name string, args []string) error {
		var id string
		return withAccounts(ctx, e, name, args, func(fs *flag.FlagSet) {
			fs.StringVar(&id, "id", "", "operator ID")
		}, func(acc admin.Accounts, a admin.Actor) error {
			disabled := !on
			o, err := acc.ChangeOperator(ctx, a, id, admin.OperatorChange{Disabled: &disabled, Unlock: on})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "operator %s disabled: %v\n", o.ID, o.Disabled)
			return nil
		})
	}
}

func cmdOperatorReset(ctx context.Context, e *env, name string, args []string) error {
	var id, pwFile string
	return withAccounts(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&id, "id", "", "operator ID")
		fs.StringVar(&pwFile, "password-file", "", "file holding the new password (- for standard input); default: one is made and printed")
	}, func(acc admin.Accounts, a admin.Actor) error {
		pw, err := readPassword(e, pwFile)
		if err != nil {
			return err
		}
		c, err := acc.ResetCredentials(ctx, a, id, pw)
		if err != nil {
			return err
		}
		printCreated(e, c)
		return nil
	})
}

func cmdOperatorToken(ctx context.Context, e *env, name string, args []string) error {
	var id, label, out string
	var ttl time.Duration
	return withAccounts(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&id, "id", "", "the operator the token acts as (default: yourself)")
		fs.StringVar(&label, "label", "cli", "what the token is for")
		fs.DurationVar(&ttl, "ttl", 0, "how long the token lasts (default and at most a year)")
		fs.StringVar(&out, "out", "", "write the token to this file (mode 0600) instead of printing it")
	}, func(acc admin.Accounts, a admin.Actor) error {
		if id == "" {
			id = a.Operator
		}
		t, err := acc.IssueAPIToken(ctx, a, id, label, ttl)
		if err != nil {
			return err
		}
		if out != "" {
			if err := os.WriteFile(out, []byte(t.Token+"\n"), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "token %s for %s (until %s) written to %s\n", t.Record.ID, t.Record.Operator, t.Record.Expires.Format(time.DateOnly), out)
			return nil
		}
		fmt.Fprintf(e.stdout, "token %s for %s (until %s): %s\n", t.Record.ID, t.Record.Operator, t.Record.Expires.Format(time.DateOnly), t.Token)
		return nil
	})
}

func cmdOperatorRevokeToken(ctx context.Context, e *env, name string, args []string) error {
	var id string
	return withAccounts(ctx, e, name, args, func(fs *flag.FlagSet) {
		fs.StringVar(&id, "token-id", "", "the token's ID (tok-…)")
	}, func(acc admin.Accounts, a admin.Actor) error {
		if err := acc.RevokeAPIToken(ctx, a, id); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "token %s revoked\n", id)
		return nil
	})
}
