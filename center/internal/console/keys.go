package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/store"
)

// served fetches a public path in process and indents its JSON.
func (c *Console) served(ctx context.Context, path string) string {
	if c.cfg.Public == nil || path == "" {
		return ""
	}
	status, body := c.cfg.Public(ctx, path)
	if status != http.StatusOK {
		return ""
	}
	var out bytes.Buffer
	if json.Indent(&out, body, "", "  ") != nil {
		return string(body)
	}
	return out.String()
}

func (c *Console) keys(w http.ResponseWriter, r *http.Request, q *request) {
	ks, err := c.cfg.Store.ListSigningKeys(r.Context(), "")
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	c.render(w, r, q, "keys", map[string]any{"Keys": ks, "JWKS": c.served(r.Context(), c.cfg.JWKSPath), "JWKSPath": c.cfg.JWKSPath})
}

func (c *Console) rotate(w http.ResponseWriter, r *http.Request, q *request) {
	if !confirmed(r) {
		c.confirm(w, r, q, tr(q.lang, "rotate_question"), nil)
		return
	}
	if _, err := c.cfg.Admin.RotateSHCKey(r.Context(), q.actor(r)); err != nil {
		c.fail(w, r, q, err)
		return
	}
	http.Redirect(w, r, "/keys", http.StatusSeeOther)
}

func (c *Console) revocations(w http.ResponseWriter, r *http.Request, q *request) {
	revs, err := c.cfg.Store.Revocations(r.Context(), "")
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	ks, err := c.cfg.Store.ListSigningKeys(r.Context(), store.PurposeSHC)
	if err != nil {
		c.fail(w, r, q, err)
		return
	}
	lists := map[string]string{}
	if c.cfg.CRLPath != nil {
		for _, rv := range revs {
			if _, ok := lists[rv.KID]; !ok {
				lists[rv.KID] = c.served(r.Context(), c.cfg.CRLPath(rv.KID))
			}
		}
	}
	c.render(w, r, q, "revocations", map[string]any{"Revocations": revs, "Keys": ks, "Lists": lists})
}

// keyAt returns the SHC key that was active at t: the key that signed a
// certificate issued then.
func keyAt(keys []store.SigningKey, t time.Time) string {
	best := ""
	for _, k := range keys {
		if k.Created.After(t) {
			continue
		}
		if k.Status == store.KeyActive || k.StatusAt.After(t) {
			best = k.KID
		}
	}
	return best
}

func (c *Console) revoke(w http.ResponseWriter, r *http.Request, q *request) {
	certID := strings.TrimSpace(r.PostFormValue("certificate_id"))
	kid := r.PostFormValue("kid")
	reason := r.PostFormValue("reason")
	if reason == "" {
		reason = "misprint"
	}
	if kid == "" {
		// The key that signed it: the SHC key active when it was issued.
		evs, err := c.cfg.Store.Events(r.Context(), store.EventQuery{CertificateID: certID, Type: store.EventIssued, Limit: 1})
		if err != nil {
			c.fail(w, r, q, err)
			return
		}
		if len(evs) == 0 {
			c.fail(w, r, q, errors.Join(store.ErrNotFound, fmtErr("no issuance of certificate %q in the audit log; choose the key", certID)))
			return
		}
		ks, err := c.cfg.Store.ListSigningKeys(r.Context(), store.PurposeSHC)
		if err != nil {
			c.fail(w, r, q, err)
			return
		}
		kid = keyAt(ks, evs[0].Time)
	}
	if !confirmed(r) {
		c.confirm(w, r, q, tr(q.lang, "revoke_question")+" ("+certID+", "+kid+")", map[string]string{"certificate_id": certID, "kid": kid, "reason": reason})
		return
	}
	if err := c.cfg.Admin.RevokeCertificate(r.Context(), q.actor(r), certID, kid, reason); err != nil {
		c.fail(w, r, q, err)
		return
	}
	http.Redirect(w, r, "/revocations", http.StatusSeeOther)
}
