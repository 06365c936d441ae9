package console

import (
	"net/http"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/store"
)

// operators shows the accounts (administrators) and one's own API tokens.
func (c *Console) operators(w http.ResponseWriter, r *http.Request, q *request) {
	c.showOperators(w, r, q, nil)
}

func (c *Console) showOperators(w http.ResponseWriter, r *http.Request, q *request, once map[string]any) {
	data := map[string]any{"Once": once, "Roles": []store.OperatorRole{store.RoleViewer, store.RoleOperator, store.RoleAdministrator, store.RoleMunicipality}}
	if opauth.Allowed(q.op.Role, opauth.ManageOperators) {
		ops, err := c.cfg.Admin.ListOperators(r.Context())
		if err != nil {
			c.fail(w, r, q, err)
			return
		}
		data["Operators"] = ops
	}
	toks, err := c.cfg.Admin.ListAPITokens(r.Context(), q.op.ID)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	data["Tokens"] = toks
	c.render(w, r, q, "operators", data)
}

func (c *Console) addOperator(w http.ResponseWriter, r *http.Request, q *request) {
	n := admin.NewOperator{ID: r.PostFormValue("id"), Role: store.OperatorRole(r.PostFormValue("role")),
		Municipality: r.PostFormValue("municipality"), TokenOnly: r.PostFormValue("token_only") == "on"}
	created, err := c.cfg.Admin.AddOperator(r.Context(), q.actor(r), n)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	c.showOperators(w, r, q, map[string]any{"Created": created})
}

func (c *Console) changeOperator(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	var err error
	switch r.PostFormValue("action") {
	case "disable", "enable":
		off := r.PostFormValue("action") == "disable"
		_, err = c.cfg.Admin.ChangeOperator(r.Context(), q.actor(r), id, admin.OperatorChange{Disabled: &off, Unlock: !off})
	case "role":
		role := store.OperatorRole(r.PostFormValue("role"))
		muni := r.PostFormValue("municipality")
		_, err = c.cfg.Admin.ChangeOperator(r.Context(), q.actor(r), id, admin.OperatorChange{Role: &role, Municipality: &muni})
	case "reset":
		if !confirmed(r) {
			c.confirm(w, r, q, tr(q.lang, "reset_credentials")+" ("+id+")", map[string]string{"action": "reset"})
			return
		}
		created, err := c.cfg.Admin.ResetCredentials(r.Context(), q.actor(r), id, "")
		if err != nil {
			c.fail(w, r, q, err)
			return
		}
		c.showOperators(w, r, q, map[string]any{"Created": created})
		return
	default:
		err = fmtErr("%w: unknown action", store.ErrInvalid)
	}
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	http.Redirect(w, r, "/operators", http.StatusSeeOther)
}

func (c *Console) issueToken(w http.ResponseWriter, r *http.Request, q *request) {
	ttl := 90 * 24 * time.Hour
	if d, err := time.ParseDuration(r.PostFormValue("ttl")); err == nil && d > 0 {
		ttl = d
	}
	tok, err := c.cfg.Admin.IssueAPIToken(r.Context(), q.actor(r), q.op.ID, r.PostFormValue("label"), ttl)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	c.showOperators(w, r, q, map[string]any{"Token": tok})
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	if !opauth.Allowed(q.op.Role, opauth.ManageOperators) {
		own, err := c.cfg.Admin.ListAPITokens(r.Context(), q.op.ID)
		if err != nil {
			c.fail(w, r, q, err)
			return
		}
		mine := false
		for _, t := range own {
			mine = mine || t.ID == id
		}
		if !mine {
			c.forbidden(w, r, q)
			return
		}
	}
	if err := c.cfg.Admin.RevokeAPIToken(r.Context(), q.actor(r), id); err != nil {
		c.fail(w, r, q, err)
		return
	}
	http.Redirect(w, r, "/operators", http.StatusSeeOther)
}
