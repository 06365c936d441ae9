package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	demodata "github.com/kioskcert/kioskcert/assets/demo"
	"github.com/kioskcert/kioskcert/cardreader/pcsctest"
	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/kiosk/internal/demo"
	"github.com/kioskcert/kioskcert/kiosk/internal/printer/ipptest"
	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/certverify"
	"github.com/kioskcert/kioskcert/pkg/mynumber"
	"github.com/kioskcert/kioskcert/pkg/shc"
)

// Kiosks enrolled at the center, one per scenario so that each scenario's
// audit events can be told apart.
const (
	kioskGood     = "E2E-GOOD"
	kioskPIN      = "E2E-PIN"
	kioskBlocked  = "E2E-BLOCKED"
	kioskPulled   = "E2E-PULLED"
	kioskTamper   = "E2E-TAMPER"
	kioskNonPart  = "E2E-NONPART"
	kioskDown     = "E2E-DOWN"
	kioskRetry    = "E2E-RETRY"
	kioskKilled   = "E2E-KILLED"
	kioskPaper    = "E2E-PAPER"
	kioskPaper2   = "E2E-PAPER2"
	kioskMismatch = "E2E-MISMATCH"
	kioskDirect   = "E2E-DIRECT" // a bare center client, no flow
	kioskBench    = "E2E-BENCH"
	kioskMemory   = "E2E-MEMORY"
	kioskRenew    = "E2E-RENEW"
	kioskSuspend  = "E2E-SUSPEND"
)

// loadKiosks is how many kiosks (and synthetic residents) the load test runs.
const loadKiosks = 50

// loadMunicipality receives the synthetic residents' ledger.
const loadMunicipality = "012041"

func loadKioskID(i int) string { return fmt.Sprintf("E2E-LOAD-%03d", i) }

// environment is what TestMain sets up for every test.
type environment struct {
	root      string // everything below is removed at the end
	bin       string // the center binary's directory (not scanned: it embeds the demo residents)
	daemon    *pcsctest.Daemon
	authority carddata.Authority
	trust     string      // the authority's trust file
	printerCA *ipptest.CA // issues the test printers' TLS certificates
	cards     *virtualcard.DemoSet
	center    *demo.Center
	opsToken  string
	jwks      *shc.JWKS
	cscas     []*x509.Certificate
	load      []demodata.Resident // synthetic residents, one per load kiosk
	loadCards []carddata.Raw

	mu       sync.Mutex
	excluded []string            // directories that are the paper (printer spools)
	extra    []demodata.Resident // synthetic residents tests made (TestCounterOnly)
}

var env *environment

// agentLog receives every kiosk agent's log (and the process's default
// logger), so tests can check it carries no personal data.
var agentLog lockedBuffer

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func newLogger(kiosk string) *slog.Logger {
	return slog.New(slog.NewTextHandler(&agentLog, &slog.HandlerOptions{Level: slog.LevelDebug})).With("kiosk", kiosk)
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	e, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if e != nil {
			e.teardown()
		}
		return 1
	}
	env = e
	code := m.Run()
	e.teardown()
	return code
}

func setup() (*environment, error) {
	slog.SetDefault(newLogger("-"))
	for prog, pkg := range map[string]string{"pdftoppm": "poppler-utils", "ippeveprinter": "cups-ipp-utils"} {
		if _, err := exec.LookPath(prog); err != nil {
			return nil, fmt.Errorf("%s not found: run `make deps` (Debian package %s)", prog, pkg)
		}
	}
	root, err := os.MkdirTemp("", "kioskcert-e2e-")
	if err != nil {
		return nil, err
	}
	e := &environment{root: root, bin: filepath.Join(root, "bin")}
	// Everything the kiosk side, pcscd and the printers write to a temporary
	// directory lands below root, where the personal-data scan looks.
	tmp := filepath.Join(root, "tmp")
	for _, d := range []string{e.bin, tmp, filepath.Join(root, "jlis"), filepath.Join(root, "printer-ca")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return e, err
		}
	}
	if err := os.Setenv("TMPDIR", tmp); err != nil {
		return e, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The daemon must be up before any PC/SC call in this process.
	if e.daemon, err = pcsctest.Start(); err != nil {
		return e, err
	}
	centerBin, err := demo.BuildCenter(ctx, e.bin)
	if err != nil {
		return e, err
	}
	if e.authority, e.trust, err = demo.NewAuthority(filepath.Join(root, "jlis")); err != nil {
		return e, err
	}
	if e.printerCA, err = ipptest.NewCA(filepath.Join(root, "printer-ca")); err != nil {
		return e, err
	}
	if e.cards, err = virtualcard.NewDemoSet(e.authority); err != nil {
		return e, err
	}
	ids := []string{kioskGood, kioskPIN, kioskBlocked, kioskPulled, kioskTamper, kioskNonPart, kioskDown, kioskRetry,
		kioskKilled, kioskPaper, kioskPaper2, kioskMismatch, kioskDirect, kioskBench, kioskMemory, kioskRenew, kioskSuspend, kioskCounter}
	for i := range loadKiosks {
		ids = append(ids, loadKioskID(i))
	}
	if e.center, err = demo.SetupCenter(ctx, centerBin, filepath.Join(root, "center"), e.trust, ids...); err != nil {
		return e, err
	}
	if err := e.importLoadResidents(ctx, centerBin); err != nil {
		return e, err
	}
	if err := e.center.Start(ctx); err != nil {
		return e, err
	}
	// Fixed ports, so that a restarted center is where the kiosks expect it.
	if err := e.center.PinAddresses(); err != nil {
		return e, err
	}
	tok, err := os.ReadFile(filepath.Join(e.center.Dir, "keys", "ops.token"))
	if err != nil {
		return e, err
	}
	e.opsToken = strings.TrimSpace(string(tok))
	jwks, err := e.center.JWKS(ctx)
	if err != nil {
		return e, err
	}
	if e.jwks, err = shc.ParseJWKS(jwks); err != nil {
		return e, err
	}
	if e.cscas, err = certverify.LoadCSCAs(e.center.CSCAFile()); err != nil {
		return e, err
	}
	return e, nil
}

func (e *environment) teardown() {
	if e.center != nil {
		e.center.Stop()
	}
	if e.daemon != nil {
		e.daemon.Stop()
	}
	if os.Getenv("KIOSKCERT_E2E_KEEP") != "" {
		fmt.Fprintln(os.Stderr, "e2e: kept", e.root)
		return
	}
	os.RemoveAll(e.root)
}

// Synthetic residents for the load test: valid My Numbers, distinct names,
// two doses each, passport data so that either kind can be asked for.
var (
	loadFamilies = []struct{ kanji, roman string }{
		{"負荷", "FUKA"}, {"並行", "HEIKO"}, {"同時", "DOJI"}, {"多重", "TAJU"}, {"試行", "SHIKO"},
	}
	loadGivens = []struct{ kanji, roman string }{
		{"一郎", "ICHIRO"}, {"二郎", "JIRO"}, {"三郎", "SABURO"}, {"四郎", "SHIRO"}, {"五郎", "GORO"},
		{"花子", "HANAKO"}, {"春子", "HARUKO"}, {"夏子", "NATSUKO"}, {"秋子", "AKIKO"}, {"冬子", "FUYUKO"},
	}
)

func syntheticResident(i int) (demodata.Resident, error) {
	num, err := mynumber.Complete(fmt.Sprintf("8%010d", 1000003*(i+1)%10000000000))
	if err != nil {
		return demodata.Resident{}, err
	}
	fam, giv := loadFamilies[i/len(loadGivens)%len(loadFamilies)], loadGivens[i%len(loadGivens)]
	birth := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 331*i)
	first := time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i)
	sex := "1"
	if i%10 >= 5 {
		sex = "2"
	}
	return demodata.Resident{
		ID:             fmt.Sprintf("load%03d", i),
		MyNumber:       num,
		PIN:            fmt.Sprintf("%04d", (i*7919+1357)%10000),
		Name:           fam.kanji + "　" + giv.kanji,
		RomanFamily:    fam.roman,
		RomanGiven:     giv.roman,
		Address:        fmt.Sprintf("北海道旭川市負荷試験町%d丁目%d番地", i%9+1, i+1),
		BirthDate:      birth.Format("2006-01-02"),
		Sex:            sex,
		Nationality:    "JPN",
		PassportNumber: fmt.Sprintf("LT%07d", 4200000+i*37),
		Records: []demodata.Record{{
			Municipality:   loadMunicipality,
			ResidentNumber: fmt.Sprintf("77%08d", i+1),
			Doses: []demodata.Dose{
				{Number: 1, Date: first.Format("2006-01-02"), Product: "comirnaty", Lot: fmt.Sprintf("LA%04d", i)},
				{Number: 2, Date: first.AddDate(0, 0, 21).Format("2006-01-02"), Product: "comirnaty", Lot: fmt.Sprintf("LB%04d", i)},
			},
		}},
	}, nil
}

// importLoadResidents makes the synthetic residents and their cards and
// loads their records into the center exactly as a municipality would:
// a changes file (docs/RECORDS.md) through `issuance-center records import
// -mode changes`, layered over the demo residents of the same municipality
// (a full ledger would replace them).
// The file holds personal data, so it is removed right after the import.
func (e *environment) importLoadResidents(ctx context.Context, bin string) error {
	// One AP key for all synthetic cards: generating 50 RSA keys would take
	// minutes under the race detector, and the key is not what is tested.
	ap, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	var subject [carddata.KeyIDLen]byte
	h := sha256.Sum256(ap.N.Bytes())
	copy(subject[:], h[:])

	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"action", "municipality_code", "my_number", "resident_number", "ticket_number", "name", "name_kana",
		"roman_family", "roman_given", "birth_date", "sex", "nationality", "passport_number", "dose_number",
		"vaccination_date", "product_code", "manufacturer", "lot_number", "vaccine_type"})
	for i := range loadKiosks {
		r, err := syntheticResident(i)
		if err != nil {
			return err
		}
		raw, err := e.authority.Personalize(r.MyNumber, carddata.FourItems{
			Name: r.Name, Address: r.Address, BirthDate: r.CardBirthDate(), Sex: carddata.Sex(r.Sex[0]),
		}, ap, subject)
		if err != nil {
			return err
		}
		e.load = append(e.load, r)
		e.loadCards = append(e.loadCards, raw)
		rec := r.Records[0]
		for _, d := range rec.Doses {
			w.Write([]string{"set", loadMunicipality, r.MyNumber, rec.ResidentNumber, "", r.Name, "",
				r.RomanFamily, r.RomanGiven, r.BirthDate, r.Sex, r.Nationality, r.PassportNumber, strconv.Itoa(d.Number),
				d.Date, d.Product, "ファイザー", d.Lot, "mRNAワクチン"})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(e.root, "ledger-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "ledger-"+loadMunicipality+".csv")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, bin, "records", "import", "-config", e.center.Config, "-offline",
		"-municipality", loadMunicipality, "-mode", "changes", "-file", file, "-operator", "e2e-test").CombinedOutput()
	if err != nil {
		return fmt.Errorf("issuance-center records import: %w\n%s", err, out)
	}
	if want := fmt.Sprintf("imported %d persons", loadKiosks); !strings.Contains(string(out), want) {
		return fmt.Errorf("records import said %q, want %q", out, want)
	}
	return nil
}

// exclude marks dir as paper: the personal-data scan skips it.
func (e *environment) exclude(dir string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.excluded = append(e.excluded, dir)
}

// auditEvent is the part of the center's audit events (center/internal/store.Event,
// as GET /ops/audit returns them) the tests look at.
type auditEvent struct {
	Seq           uint64 `json:"seq"`
	Type          string `json:"type"`
	KioskID       string `json:"kioskId"`
	Municipality  string `json:"municipality"`
	Kind          string `json:"kind"`
	Copies        int    `json:"copies"`
	CertificateID string `json:"certificateId"`
	RequestID     string `json:"requestId"`
	Result        string `json:"result"`
	Operator      string `json:"operator"`
}

// opsGet fetches an operations API path with the operator token.
func (e *environment) opsGet(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.center.OpsAddr+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+e.opsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	return b, nil
}

// audit returns the center's audit events of one kiosk's requests ("" for
// all kiosks); operator actions (enrollment, status changes) are left out.
func (e *environment) audit(t testing.TB, kiosk string) []auditEvent {
	t.Helper()
	path := "/ops/audit?limit=100000"
	if kiosk != "" {
		path += "&kiosk=" + kiosk
	}
	b, err := e.opsGet(path)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	var all []auditEvent
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatalf("audit: %v", err)
	}
	var evs []auditEvent
	for _, ev := range all {
		if ev.Operator == "" {
			evs = append(evs, ev)
		}
	}
	return evs
}

// metric returns a counter of the center's /metrics, e.g.
// `kioskcert_center_issue_requests_total{result="replayed"}` (0 if absent).
func (e *environment) metric(t testing.TB, series string) float64 {
	t.Helper()
	b, err := e.opsGet("/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// ensureCenter starts the center again if a test left it down.
func (e *environment) ensureCenter(t testing.TB) {
	t.Helper()
	if e.center.Running() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.center.Start(ctx); err != nil {
		t.Fatalf("restarting the center: %v", err)
	}
}

// personalTerms are the byte strings that identify a resident: none may
// appear in a log or a file outside the paper.
func personalTerms(r demodata.Resident) map[string][]byte {
	terms := map[string][]byte{
		"my_number":       []byte(r.MyNumber),
		"name":            []byte(r.Name),
		"name_no_space":   []byte(strings.NewReplacer("　", "", " ", "").Replace(r.Name)),
		"address":         []byte(r.Address),
		"birth_date":      []byte(r.BirthDate),
		"card_birth_date": []byte(r.CardBirthDate()),
	}
	if r.PassportNumber != "" {
		terms["passport_number"] = []byte(r.PassportNumber)
	}
	if r.RomanFamily != "" {
		terms["roman_name"] = []byte(r.RomanFamily + " " + r.RomanGiven)
	}
	return terms
}

// checkNoPersonalData scans the agents' log and every file below the
// test root except the printer spools and the center binary for every
// known resident's personal data.
func (e *environment) checkNoPersonalData(t testing.TB) {
	t.Helper()
	residents := append([]demodata.Resident{}, e.cards.Residents.Residents...)
	residents = append(residents, e.load...)
	e.mu.Lock()
	skip := append([]string{e.bin}, e.excluded...)
	residents = append(residents, e.extra...)
	e.mu.Unlock()
	scan := func(where string, data []byte) {
		for _, r := range residents {
			for label, term := range personalTerms(r) {
				if len(term) > 0 && bytes.Contains(data, term) {
					t.Errorf("%s holds resident %s's %s", where, r.ID, label)
				}
			}
		}
	}
	scan("the agent log", agentLog.Bytes())
	files := 0
	err := filepath.WalkDir(e.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // a test's temporary directory going away
				return nil
			}
			return err
		}
		for _, s := range skip {
			if path == s {
				return filepath.SkipDir
			}
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		files++
		scan(strings.TrimPrefix(path, e.root+"/"), b)
		return nil
	})
	if err != nil {
		t.Fatalf("scanning %s: %v", e.root, err)
	}
	if files < 10 {
		t.Fatalf("the personal-data scan found only %d files below %s: it is not looking where the kiosk and center write", files, e.root)
	}
}
