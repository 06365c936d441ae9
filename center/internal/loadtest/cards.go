package loadtest

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/center/internal/admin"
	"github.com/kioskcert/kioskcert/center/internal/kioskpki"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// LoadKiosks reads enrolled kiosks' credentials: every subdirectory of dir
// holding the files `issuance-center kiosk enroll -out` writes (kiosk.pem,
// kiosk.key, center-ca.pem). serverName is the name the center's TLS
// certificate carries. Kiosks are returned ordered by ID.
func LoadKiosks(dir, serverName string) ([]Kiosk, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loadtest: kiosk credentials: %w", err)
	}
	var out []Kiosk
	for _, e := range entries {
		sub := filepath.Join(dir, e.Name())
		if fi, err := os.Stat(sub); err != nil || !fi.IsDir() { // symlinks to directories count
			continue
		}
		if _, err := os.Stat(filepath.Join(sub, admin.KioskCertFile)); err != nil {
			continue
		}
		cert, err := tls.LoadX509KeyPair(filepath.Join(sub, admin.KioskCertFile), filepath.Join(sub, admin.KioskKeyFile))
		if err != nil {
			return nil, fmt.Errorf("loadtest: kiosk credentials in %s: %w", sub, err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("loadtest: kiosk certificate in %s: %w", sub, err)
		}
		pool, err := kioskpki.LoadCertPool(filepath.Join(sub, admin.CenterCAFile))
		if err != nil {
			return nil, err
		}
		out = append(out, Kiosk{ID: leaf.Subject.CommonName, TLS: kioskpki.ClientTLS(cert, pool, serverName)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("loadtest: no kiosk credentials (%s, %s) under %s", admin.KioskCertFile, admin.KioskKeyFile, dir)
	}
	slices.SortFunc(out, func(a, b Kiosk) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// option is one thing a demo resident can be issued at a kiosk.
type option struct {
	r        demo.Resident
	muni     string
	overseas bool // passport data on record
}

// issuable lists, from the demo data, every resident and participating
// municipality holding a record of them.
func issuable(d *demo.Data) []option {
	participating := map[string]bool{}
	for _, m := range d.Municipalities {
		participating[m.Code] = m.Participating
	}
	var out []option
	for _, r := range d.Residents {
		for _, rec := range r.Records {
			// Residents sent to the counter are refused by design.
			if participating[rec.Municipality] && !r.SentToCounter(rec) {
				out = append(out, option{r: r, muni: rec.Municipality,
					overseas: r.PassportNumber != "" && r.Nationality != "" && r.RomanFamily != ""})
			}
		}
	}
	return out
}

// DemoCards makes n cards for kiosk number k from the demo residents who
// have a record in a participating municipality, signed by auth with the
// AP key ap (RSA-2048). Each card's address carries the kiosk and card
// number, so that no two cards of a run have the same card digest and an
// answer delivered to the wrong kiosk cannot pass the binding check. The
// kinds are taken in turn from kinds (the domestic kind for residents
// without passport data).
func DemoCards(auth carddata.Authority, ap crypto.Signer, k, n int, kinds []certificate.Kind) ([]Card, error) {
	d, err := demo.Load()
	if err != nil {
		return nil, err
	}
	opts := issuable(d)
	if len(opts) == 0 || n <= 0 || len(kinds) == 0 {
		return nil, errors.New("loadtest: no demo residents to make cards of, or no cards or kinds asked for")
	}
	var sub [carddata.KeyIDLen]byte
	pub, ok := ap.Public().(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("loadtest: the AP key must be RSA-2048")
	}
	h := sha256.Sum256(pub.N.Bytes())
	copy(sub[:], h[:])
	cards := make([]Card, 0, n)
	for j := 0; j < n; j++ {
		o := opts[(k*n+j)%len(opts)]
		kind := kinds[(k+j)%len(kinds)]
		if !o.overseas {
			kind = certificate.Domestic
		}
		items := carddata.FourItems{
			Name:      o.r.Name,
			Address:   fmt.Sprintf("%s　負荷試験%d-%d", o.r.Address, k, j),
			BirthDate: o.r.CardBirthDate(),
			Sex:       carddata.Sex(o.r.Sex[0]),
		}
		raw, err := auth.Personalize(o.r.MyNumber, items, ap, sub)
		if err != nil {
			return nil, err
		}
		cards = append(cards, Card{Raw: raw, Municipality: o.muni, Kind: kind, HolderName: o.r.Name, BirthDate: o.r.BirthDate})
	}
	return cards, nil
}

// FetchAudit reads the audit events of the given kiosks since a time from
// a center's operations API (opsURL like http://127.0.0.1:8081, token the
// operator's bearer token).
func FetchAudit(ctx context.Context, opsURL, token string, kioskIDs []string, since time.Time) ([]store.Event, error) {
	var out []store.Event
	client := &http.Client{Timeout: 30 * time.Second}
	for _, id := range kioskIDs {
		q := url.Values{"kiosk": {id}, "since": {since.UTC().Format(time.RFC3339Nano)}, "limit": {fmt.Sprint(store.MaxEventLimit)}}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(opsURL, "/")+"/ops/audit?"+q.Encode(), nil)
		if err != nil {
			return nil, fmt.Errorf("loadtest: audit request: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("loadtest: audit of kiosk %s: %w", id, err)
		}
		var evs []store.Event
		err = json.NewDecoder(resp.Body).Decode(&evs)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("loadtest: audit of kiosk %s: %s", id, resp.Status)
		}
		if err != nil {
			return nil, fmt.Errorf("loadtest: audit of kiosk %s: %w", id, err)
		}
		out = append(out, evs...)
	}
	return out, nil
}
