package opsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kioskcert/kioskcert/center/internal/opauth"
	"github.com/kioskcert/kioskcert/center/internal/server"
	"github.com/kioskcert/kioskcert/center/internal/store"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/pkg/certificate"
)

// token is an administrator's; viewerToken a viewer's.
const (
	token       = "0123456789abcdef0123456789abcdef"
	viewerToken = "kcop_viewer_0123456789abcdef0123"
)

// fakeLive is a hand-written Live.
type fakeLive struct{}

func (fakeLive) Live() []server.KioskLive {
	return []server.KioskLive{{KioskID: "K1", Connected: true, Printer: "ok"}}
}
func (fakeLive) InFlight() int { return 3 }

var now = time.Date(2024, 4, 1, 12, 0, 0, 0, time.UTC) // 21:00 JST

func newServer(t *testing.T, tok string) *httptest.Server {
	t.Helper()
	srv, _ := newServerStore(t, tok)
	return srv
}

// newServerStore is newServer, with its store.
func newServerStore(t *testing.T, tok string) (*httptest.Server, *boltstore.Store) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "center.db"), boltfile.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.EnrollKiosk(ctx, store.Kiosk{ID: "K1", StoreName: "テスト店", StoreCode: "S1", Chain: "TEST", Prefecture: "01",
		CertSerial: "1", CertSHA256: fmt.Sprintf("%064x", 1), EnrolledAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertMunicipality(ctx, store.Municipality{Code: "012041", NameJa: "旭川市", NameEn: "Asahikawa City", AuthorityJa: "旭川市長", AuthorityEn: "Mayor of Asahikawa City", Participating: true}); err != nil {
		t.Fatal(err)
	}
	for i, typ := range []store.EventType{store.EventRequested, store.EventIssued, store.EventPrinted} {
		e := store.Event{Time: now.Add(time.Duration(i) * time.Second), Type: typ, KioskID: "K1", StoreCode: "S1", Municipality: "012041",
			Kind: certificate.Domestic, Copies: 1, RequestID: "0123456789abcdef0123456789abcdef"}
		if typ == store.EventIssued {
			e.CertificateID, e.Result = "4M41JFDVR4JS", "ok"
		}
		if _, err := st.AppendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "kioskcert_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	for _, o := range []struct {
		id, tok string
		role    store.OperatorRole
	}{{"op-admin", token, store.RoleAdministrator}, {"op-viewer", viewerToken, store.RoleViewer}} {
		if err := st.CreateOperator(ctx, store.Operator{ID: o.id, Role: o.role, Created: now}); err != nil {
			t.Fatal(err)
		}
		if err := st.PutAPIToken(ctx, store.APIToken{ID: "tok-" + o.id, Operator: o.id, SHA256: opauth.HashToken(o.tok), Label: "test", Created: now}); err != nil {
			t.Fatal(err)
		}
	}
	var auth *opauth.Authenticator
	if tok != "" {
		auth = &opauth.Authenticator{Store: st, Now: func() time.Time { return now }}
	}
	srv := httptest.NewServer(Handler(Config{Auth: auth, Store: st, Live: fakeLive{}, Gatherer: reg,
		Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	return srv, st
}

func get(t *testing.T, srv *httptest.Server, path, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var endpoints = []string{"/ops/kiosks", "/ops/municipalities", "/ops/stats", "/ops/audit"}

func TestTokenRequired(t *testing.T) {
	srv := newServer(t, token)
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"wrong token", "Bearer " + strings.Repeat("x", len(token)), http.StatusUnauthorized},
		{"prefix of the token", "Bearer " + token[:len(token)-1], http.StatusUnauthorized},
		{"token and more", "Bearer " + token + "0", http.StatusUnauthorized},
		{"other case", "Bearer " + strings.ToUpper(token), http.StatusUnauthorized},
		{"other scheme", "Basic " + token, http.StatusUnauthorized},
		{"scheme in lower case", "bearer " + token, http.StatusUnauthorized},
		{"token without scheme", token, http.StatusUnauthorized},
		{"right token", "Bearer " + token, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range endpoints {
				code, body := get(t, srv, path, tt.auth)
				if code != tt.want {
					t.Fatalf("%s: %d, want %d (%s)", path, code, tt.want, body)
				}
				if code == http.StatusUnauthorized && strings.Contains(body, "K1") {
					t.Fatalf("%s: refused request got data", path)
				}
			}
		})
	}
}

// TestEmptyTokenDisablesAPI: a handler without an authenticator serves
// metrics only.
func TestEmptyTokenDisablesAPI(t *testing.T) {
	srv := newServer(t, "")
	for _, path := range endpoints {
		for _, auth := range []string{"", "Bearer ", "Bearer x"} {
			if code, _ := get(t, srv, path, auth); code != http.StatusUnauthorized {
				t.Fatalf("%s with %q: %d", path, auth, code)
			}
		}
	}
	if code, _ := get(t, srv, "/metrics", ""); code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
}

func TestMetricsWithoutToken(t *testing.T) {
	srv := newServer(t, token)
	code, body := get(t, srv, "/metrics", "")
	if code != http.StatusOK || !strings.Contains(body, "kioskcert_test_total 1") {
		t.Fatalf("/metrics: %d %s", code, body)
	}
}

func TestEndpoints(t *testing.T) {
	srv := newServer(t, token)
	auth := "Bearer " + token
	decode := func(body string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
	}

	_, body := get(t, srv, "/ops/kiosks", auth)
	var kiosks struct {
		Enrolled []store.Kiosk      `json:"enrolled"`
		Live     []server.KioskLive `json:"live"`
		InFlight int                `json:"inFlight"`
	}
	decode(body, &kiosks)
	if len(kiosks.Enrolled) != 1 || kiosks.Enrolled[0].ID != "K1" || len(kiosks.Live) != 1 || kiosks.InFlight != 3 {
		t.Fatalf("/ops/kiosks: %s", body)
	}

	_, body = get(t, srv, "/ops/municipalities", auth)
	var ms []store.Municipality
	decode(body, &ms)
	if len(ms) != 1 || ms[0].Code != "012041" {
		t.Fatalf("/ops/municipalities: %s", body)
	}

	// Stats default to today's settlement day (Japan time).
	_, body = get(t, srv, "/ops/stats", auth)
	var counts []store.DailyCount
	decode(body, &counts)
	if len(counts) != 3 || counts[0].Day != "2024-04-01" {
		t.Fatalf("/ops/stats: %s", body)
	}
	_, body = get(t, srv, "/ops/stats?from=2024-03-01&to=2024-03-31", auth)
	counts = nil
	decode(body, &counts)
	if len(counts) != 0 {
		t.Fatalf("/ops/stats for March: %s", body)
	}
	if code, _ := get(t, srv, "/ops/stats?from=yesterday", auth); code != http.StatusBadRequest {
		t.Fatalf("/ops/stats with a bad day: %d", code)
	}

	tests := []struct {
		query string
		want  int
		code  int
	}{
		{"", 3, http.StatusOK},
		{"?limit=2", 2, http.StatusOK},
		{"?kiosk=K1", 3, http.StatusOK},
		{"?kiosk=K2", 0, http.StatusOK},
		{"?since=" + now.Add(time.Second).Format(time.RFC3339), 2, http.StatusOK},
		{"?since=yesterday", 0, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run("audit"+tt.query, func(t *testing.T) {
			code, body := get(t, srv, "/ops/audit"+tt.query, auth)
			if code != tt.code {
				t.Fatalf("%d, want %d: %s", code, tt.code, body)
			}
			if code != http.StatusOK {
				return
			}
			var evs []store.Event
			decode(body, &evs)
			if len(evs) != tt.want {
				t.Fatalf("%d events, want %d: %s", len(evs), tt.want, body)
			}
		})
	}
}

// TestStatsCounterOnly: residents sent to the counter are counted by
// reason in one municipality's statistics only; across municipalities
// they are one type.
func TestStatsCounterOnly(t *testing.T) {
	srv, st := newServerStore(t, token)
	ctx := context.Background()
	for i, e := range []struct {
		muni, typ string
	}{
		{"012041", "counter_only.support_measure"}, {"012041", "counter_only.support_measure"},
		{"012041", "counter_only.deceased"}, {"012041", "counter_only.alias_on_card"}, {"011002", "counter_only.staff_review"},
	} {
		if _, err := st.AppendEvent(ctx, store.Event{Time: now.Add(time.Duration(10+i) * time.Second), Type: store.EventType(e.typ),
			KioskID: "K1", StoreCode: "S1", Municipality: e.muni, Kind: certificate.Domestic, Copies: 1,
			RequestID: fmt.Sprintf("%032x", 100+i), Result: "counter_only"}); err != nil {
			t.Fatal(err)
		}
	}
	stats := func(q string) map[string]int64 {
		t.Helper()
		code, body := get(t, srv, "/ops/stats"+q, "Bearer "+token)
		if code != http.StatusOK {
			t.Fatalf("/ops/stats%s: %d %s", q, code, body)
		}
		var counts []store.DailyCount
		if err := json.Unmarshal([]byte(body), &counts); err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, c := range counts {
			out[c.Municipality+" "+string(c.Type)] += c.Events
		}
		return out
	}
	got := stats("?municipality=012041")
	want := map[string]int64{"012041 requested": 1, "012041 issued": 1, "012041 printed": 1,
		"012041 counter_only.support_measure": 2, "012041 counter_only.deceased": 1, "012041 counter_only.alias_on_card": 1}
	if !maps.Equal(got, want) {
		t.Errorf("Asahikawa's statistics %v, want %v", got, want)
	}
	got = stats("")
	want = map[string]int64{"012041 requested": 1, "012041 issued": 1, "012041 printed": 1,
		"012041 counter_only": 4, "011002 counter_only": 1}
	if !maps.Equal(got, want) {
		t.Errorf("statistics across municipalities %v, want %v (no reasons)", got, want)
	}
	if code, _ := get(t, srv, "/ops/stats?municipality=012040", "Bearer "+token); code != http.StatusBadRequest {
		t.Errorf("a bad municipality code: %d, want 400", code)
	}
}
