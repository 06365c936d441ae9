package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if !reflect.DeepEqual(*c, d) {
		t.Fatalf("empty config %+v differs from the defaults %+v", *c, d)
	}
	if c.LockTimeout.Duration <= 0 {
		t.Fatal("the default lock timeout would wait forever")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		json string
		want string // substring of the error; "" for success
	}{
		{"overrides", `{"issuerUrl":"https://issuer.example.jp/kioskcert","heartbeat":"20s","lockTimeout":"500ms","feePerCopyYen":0}`, ""},
		{"unknown field", `{"issuer":"https://issuer.example.jp"}`, "unknown field"},
		{"misspelt field", `{"hearbeat":"15s"}`, "unknown field"},
		{"inline secret", `{"opsToken":"secret"}`, "unknown field"},
		{"trailing data", `{} {}`, "trailing data"},
		{"not an object", `[]`, "cannot unmarshal"},
		{"http issuer", `{"issuerUrl":"http://issuer.example.jp"}`, "issuerUrl"},
		{"issuer with a trailing slash", `{"issuerUrl":"https://issuer.example.jp/"}`, "issuerUrl"},
		{"issuer with a query", `{"issuerUrl":"https://issuer.example.jp/?a=b"}`, "issuerUrl"},
		{"issuer without a host", `{"issuerUrl":"https:///path"}`, "issuerUrl"},
		{"issuer not a URL", `{"issuerUrl":"issuer.example.jp"}`, "issuerUrl"},
		{"empty issuer", `{"issuerUrl":""}`, "issuerUrl"},
		{"zero lock timeout", `{"lockTimeout":"0s"}`, "lockTimeout"},
		{"negative lock timeout", `{"lockTimeout":"-1s"}`, "lockTimeout"},
		{"heartbeat under a second", `{"heartbeat":"500ms"}`, "heartbeat"},
		{"issue timeout under 100ms", `{"issueTimeout":"50ms"}`, "issueTimeout"},
		{"negative fee", `{"feePerCopyYen":-120}`, "feePerCopyYen"},
		{"listener without a port", `{"kioskListen":"localhost"}`, "kioskListen"},
		{"empty listener", `{"opsListen":""}`, "opsListen"},
		{"empty file name", `{"storeFile":""}`, "storeFile"},
		{"empty key directory", `{"keysDir":""}`, "keysDir"},
		{"bolt store without a path", `{"store":"bolt:"}`, "needs a path"},
		{"unknown store", `{"store":"mysql://db/center"}`, "bolt:PATH or a postgres"},
		{"store URL with a password", `{"store":"postgres://center:secret@db/kioskcert"}`, "passfile"},
		{"store URL with a password parameter", `{"store":"postgres://center@db/kioskcert?password=secret"}`, "passfile"},
		{"bad instance ID", `{"instanceId":"center a"}`, "instanceId"},
		{"duration as a number", `{"heartbeat":15}`, "duration must be a string"},
		{"duration without a unit", `{"heartbeat":"15"}`, "missing unit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.json))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Heartbeat.Duration != 20*time.Second || c.LockTimeout.Duration != 500*time.Millisecond || c.FeePerCopyYen != 0 {
					t.Fatalf("overrides not applied: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%s) = %v, want an error containing %q", tt.json, err, tt.want)
			}
		})
	}
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "center.json")
	abs := filepath.Join(t.TempDir(), "elsewhere", "records.db")
	if err := os.WriteFile(path, []byte(`{"recordsFile":"`+abs+`","keysDir":"secrets/keys"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Load from a relative path: the base must still be absolute.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c, err := Load("center.json")
	if err != nil {
		t.Fatal(err)
	}
	realDir, _ := filepath.EvalSymlinks(dir)
	tests := []struct{ in, want string }{
		{c.StoreFile, filepath.Join(dir, "center.db")},
		{c.KeysDir, filepath.Join(dir, "secrets", "keys")},
		{c.MasterKeyFile, filepath.Join(dir, "keys", "records-master.key")},
		{c.RecordsFile, abs},
		{"../up.db", filepath.Join(filepath.Dir(dir), "up.db")},
	}
	for _, tt := range tests {
		got := c.Path(tt.in)
		if !filepath.IsAbs(got) {
			t.Errorf("Path(%q) = %q is not absolute", tt.in, got)
		}
		if got != tt.want && got != strings.Replace(tt.want, dir, realDir, 1) {
			t.Errorf("Path(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	t.Chdir(wd)

	// A configuration not loaded from a file resolves against SetDir, and
	// without one leaves paths as written.
	var bare Config
	if got := bare.Path("center.db"); got != "center.db" {
		t.Errorf("Path without a directory = %q", got)
	}
	bare.SetDir("/srv/center")
	if got := bare.Path("center.db"); got != filepath.Join("/srv/center", "center.db") {
		t.Errorf("Path after SetDir = %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
		t.Fatalf("Load of a missing file: %v", err)
	}
	path := filepath.Join(dir, "bad.json")
	os.WriteFile(path, []byte(`{"lockTimeout":"0s"}`), 0o600)
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "lockTimeout") {
		t.Fatalf("Load of a bad file: %v (want the file and the field named)", err)
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c := Default()
	c.IssuerURL = "https://issuer.example.jp/kioskcert"
	c.Heartbeat.Duration = 42 * time.Second
	c.OverseasEnabled = false
	path := filepath.Join(dir, "center.json")
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config written with mode %04o", fi.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDir(got.dir)
	if !reflect.DeepEqual(*got, c) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", *got, c)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"heartbeat":"15s"}`, `{"issuerUrl":"https://a.b"}`, `{"x":1}`, `[`, `{"lockTimeout":"0s"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever parses is valid, and survives a round trip.
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid config: %v", err)
		}
		dir := t.TempDir()
		if err := c.Write(filepath.Join(dir, "c.json")); err != nil {
			t.Fatal(err)
		}
		again, err := Load(filepath.Join(dir, "c.json"))
		if err != nil {
			t.Fatalf("written config does not load: %v", err)
		}
		again.dir = ""
		if !reflect.DeepEqual(*again, *c) {
			t.Fatalf("round trip changed the config")
		}
	})
}

func TestParseStoreAndInstance(t *testing.T) {
	for _, js := range []string{
		`{"store":"bolt:data/center.db"}`,
		`{"store":"postgres://center@db.internal:5432/kioskcert?sslmode=verify-full&passfile=/etc/kioskcert/pgpass"}`,
		`{"store":"postgresql://center@/kioskcert?host=/run/postgresql"}`,
		`{"instanceId":"center-a.tokyo"}`,
	} {
		if _, err := Parse([]byte(js)); err != nil {
			t.Errorf("Parse(%s): %v", js, err)
		}
	}
}

func TestStoreLocation(t *testing.T) {
	tests := []struct{ store, kind, loc string }{
		{"", StoreBolt, "/srv/center/center.db"},
		{"bolt:other.db", StoreBolt, "/srv/center/other.db"},
		{"bolt:/var/lib/center.db", StoreBolt, "/var/lib/center.db"},
		{"postgres://center@db/kioskcert", StorePostgres, "postgres://center@db/kioskcert"},
	}
	for _, tc := range tests {
		c := Default()
		c.Store = tc.store
		c.SetDir("/srv/center")
		if kind, loc := c.StoreLocation(); kind != tc.kind || loc != tc.loc {
			t.Errorf("store %q: %s %s, want %s %s", tc.store, kind, loc, tc.kind, tc.loc)
		}
	}
}

// The records follow the store unless told otherwise, and "postgres"
// needs a PostgreSQL store to mean anything.
func TestRecordsLocation(t *testing.T) {
	const pg = "postgres://center@db/kioskcert"
	tests := []struct{ store, records, kind, loc, err string }{
		{"", "", StoreBolt, "/srv/center/records.db", ""},
		{"bolt:center.db", "", StoreBolt, "/srv/center/records.db", ""},
		{pg, "", StorePostgres, pg, ""},
		{pg, "bolt", StoreBolt, "/srv/center/records.db", ""},
		{pg, "bolt:/var/lib/records.db", StoreBolt, "/var/lib/records.db", ""},
		{pg, "postgres", StorePostgres, pg, ""},
		{"", "postgres://records@db2/vault", StorePostgres, "postgres://records@db2/vault", ""},
		{"", "postgres", "", "", "store is a bbolt file"},
		{"", "bolt:", "", "", "needs a path"},
		{"", "postgres://u:secret@db/x", "", "", "password"},
		{"", "mysql://db", "", "", "records must be"},
	}
	for _, tc := range tests {
		c := Default()
		c.Store, c.Records = tc.store, tc.records
		c.SetDir("/srv/center")
		err := c.Validate()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("store %q records %q: Validate = %v, want an error with %q", tc.store, tc.records, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("store %q records %q: %v", tc.store, tc.records, err)
		}
		if kind, loc := c.RecordsLocation(); kind != tc.kind || loc != tc.loc {
			t.Errorf("store %q records %q: %s %s, want %s %s", tc.store, tc.records, kind, loc, tc.kind, tc.loc)
		}
	}
}

func TestInstance(t *testing.T) {
	c := Default()
	c.InstanceID = "center-a"
	if got := c.Instance(); got != "center-a" {
		t.Errorf("Instance = %q", got)
	}
	c.InstanceID = ""
	host, _ := os.Hostname()
	got := c.Instance()
	if !strings.HasSuffix(got, "-8443") || !isIdent(got, 64) || !strings.HasPrefix(got, host[:min(len(host), 3)]) {
		t.Errorf("generated Instance = %q, want the host name and the kiosk port", got)
	}
}
