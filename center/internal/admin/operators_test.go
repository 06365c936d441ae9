package admin

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

func TestAccounts(t *testing.T) {
	ctx := context.Background()
	cfg := initCenter(t)
	s := local(t, cfg)
	s.cfg.PasswordParams = opauth.Params{Time: 1, Memory: 1024, Threads: 1, SaltLen: 16, KeyLen: 32}
	root := Actor{Operator: "admin", Source: "local"}

	// Init made the first operator, for scripts, with the token in keys/ops.token.
	ops, err := s.ListOperators(ctx)
	if err != nil || len(ops) != 1 || ops[0].ID != "admin" || ops[0].Role != store.RoleAdministrator || ops[0].ConsoleLogin {
		t.Fatalf("operators after init = %+v, %v", ops, err)
	}

	created, err := s.AddOperator(ctx, root, NewOperator{ID: "op-suzuki", Role: store.RoleAdministrator})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.Password) != 20 || !strings.HasPrefix(created.TOTPURI, "otpauth://totp/kioskcert:op-suzuki") || !created.Operator.ConsoleLogin {
		t.Errorf("AddOperator = %+v", created)
	}
	o, err := s.cfg.Store.Operator(ctx, "op-suzuki")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := opauth.VerifyPassword(o.PasswordHash, created.Password); !ok {
		t.Error("the stored hash does not verify the returned password")
	}
	if strings.Contains(string(o.TOTPSecret), created.TOTPSecret) {
		t.Error("the second factor is stored in the clear")
	}
	if _, err := s.AddOperator(ctx, root, NewOperator{ID: "op-suzuki", Role: store.RoleViewer}); !errors.Is(err, store.ErrExists) {
		t.Errorf("second AddOperator: %v", err)
	}
	if _, err := s.AddOperator(ctx, root, NewOperator{ID: "city", Role: store.RoleMunicipality}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("municipality role without a municipality: %v", err)
	}
	if _, err := s.AddOperator(ctx, Actor{}, NewOperator{ID: "op-x", Role: store.RoleViewer}); !errors.Is(err, ErrNoOperator) {
		t.Errorf("AddOperator without an actor: %v", err)
	}

	suzuki := Actor{Operator: "op-suzuki", Source: "192.0.2.1"}
	viewer := store.RoleViewer
	yes := true
	if _, err := s.ChangeOperator(ctx, suzuki, "op-suzuki", OperatorChange{Role: &viewer}); !errors.Is(err, ErrOwnAccount) {
		t.Errorf("changing one's own role: %v", err)
	}
	info, err := s.ChangeOperator(ctx, suzuki, "admin", OperatorChange{Disabled: &yes})
	if err != nil || !info.Disabled {
		t.Errorf("disable = %+v, %v", info, err)
	}
	tok, err := s.IssueAPIToken(ctx, suzuki, "op-suzuki", "laptop", 0)
	if err != nil || !strings.HasPrefix(tok.Token, opauth.TokenPrefix) {
		t.Fatalf("IssueAPIToken = %+v, %v", tok, err)
	}
	if err := s.RevokeAPIToken(ctx, suzuki, tok.Record.ID); err != nil {
		t.Fatal(err)
	}
	again, err := s.ResetCredentials(ctx, suzuki, "admin", "")
	if err != nil || again.Password == "" || again.Operator.ConsoleLogin != true {
		t.Errorf("ResetCredentials = %+v, %v", again, err)
	}

	evs, err := s.cfg.Store.Events(ctx, store.EventQuery{Operator: "op-suzuki"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, string(e.Type)+":"+e.Object+":"+e.Source)
	}
	want := "operator_changed:admin:192.0.2.1 api_token_issued:" + tok.Record.ID + ":192.0.2.1 api_token_revoked:" + tok.Record.ID + ":192.0.2.1 operator_changed:admin:192.0.2.1"
	if strings.Join(got, " ") != want {
		t.Errorf("audit = %s\nwant %s", strings.Join(got, " "), want)
	}
}
