package records

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/center/internal/store/storetest"
)

func TestImportAndLookup(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	res, err := v.Import(ctx, asahikawa, operator, demoEntries(t, asahikawa))
	if err != nil {
		t.Fatal(err)
	}
	want := ImportResult{Municipality: asahikawa, Persons: 4, Added: 4, Doses: 13, RegionCreated: true, KeyVersion: 1}
	if res != want {
		t.Errorf("Import = %+v, want %+v", res, want)
	}
	importDemo(t, v, sapporo)

	byCode := map[string]map[string]Record{}
	for _, code := range []string{asahikawa, sapporo} {
		byCode[code] = map[string]Record{}
		for _, e := range demoEntries(t, code) {
			byCode[code][e.MyNumber] = e.Record
		}
	}
	for _, id := range []string{"hanako", "taro", "an", "takasaki", "ichiro", "norecord"} {
		res := demoResident(t, id)
		for _, code := range []string{asahikawa, sapporo, fujimino} {
			t.Run(id+"@"+code, func(t *testing.T) {
				got, err := v.Lookup(ctx, code, res.MyNumber)
				want, has := byCode[code][res.MyNumber]
				if !has {
					if !errors.Is(err, ErrNoRecord) {
						t.Fatalf("Lookup: got %v, want ErrNoRecord", err)
					}
					if code == fujimino && !errors.Is(err, ErrNoRegion) {
						t.Errorf("Lookup in a municipality without region: %v, want ErrNoRegion too", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Lookup: %v", err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Lookup returned a different record than imported")
				}
			})
		}
	}
	// The person who moved has each municipality's own doses only.
	ichiro := demoResident(t, "ichiro")
	a, _ := v.Lookup(ctx, asahikawa, ichiro.MyNumber)
	s, _ := v.Lookup(ctx, sapporo, ichiro.MyNumber)
	if len(a.Doses) != 2 || a.Doses[0].Number != 3 || len(s.Doses) != 2 || s.Doses[0].Number != 1 {
		t.Errorf("ichiro: Asahikawa doses %d (first %d), Sapporo doses %d", len(a.Doses), a.Doses[0].Number, len(s.Doses))
	}
}

// A bad check digit is refused before any lookup: even on a closed
// database the answer is ErrBadMyNumber, not a database error.
func TestLookupRefusesBadMyNumberFirst(t *testing.T) {
	v, db, _ := newVault(t)
	importDemo(t, v, asahikawa)
	region, err := v.Region(t.Context(), asahikawa)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	good := demoResident(t, "hanako").MyNumber
	tests := []struct{ name, mn string }{
		{"wrong check digit", good[:11] + string('0'+(good[11]-'0'+1)%10)},
		{"eleven digits", good[:11]},
		{"letters", "31415926535X"},
		{"empty", ""},
		{"full-width digits", "３１４１５９２６５３５２"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Lookup(t.Context(), asahikawa, tc.mn)
			if !errors.Is(err, ErrBadMyNumber) {
				t.Errorf("Vault.Lookup: %v, want ErrBadMyNumber", err)
			}
			_, err = region.Lookup(t.Context(), tc.mn)
			if !errors.Is(err, ErrBadMyNumber) {
				t.Errorf("Region.Lookup: %v, want ErrBadMyNumber", err)
			}
			if tc.mn != "" && strings.Contains(err.Error(), tc.mn) {
				t.Errorf("error %q contains the number", err)
			}
		})
	}
}

// rawGet and rawPut reach into a region's bucket as an attacker with write
// access to the file would.
func rawGet(t *testing.T, db *bolt.DB, code string, key []byte) []byte {
	t.Helper()
	var out []byte
	if err := db.View(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucketRegions).Bucket([]byte(code)).Get(key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out == nil {
		t.Fatalf("no value under the key in %s", code)
	}
	return out
}

func rawPut(t *testing.T, db *bolt.DB, code string, key, value []byte) {
	t.Helper()
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRegions).Bucket([]byte(code)).Put(key, value)
	}); err != nil {
		t.Fatal(err)
	}
}

// One municipality's keys cannot read another's records: the record keys
// differ (so a person cannot even be found), and a value taken from the
// other region does not open under this region's data key.
func TestWrongMunicipalityKeyCannotRead(t *testing.T) {
	ctx := t.Context()
	v, db, _ := newVault(t)
	importDemo(t, v, asahikawa, sapporo)
	ra, err := v.Region(ctx, asahikawa)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := v.Region(ctx, sapporo)
	if err != nil {
		t.Fatal(err)
	}
	an := demoResident(t, "an").MyNumber // only in Sapporo
	if _, err := ra.Lookup(ctx, an); !errors.Is(err, ErrNoRecord) {
		t.Errorf("Asahikawa handle found a Sapporo-only resident: %v", err)
	}
	ichiro := demoResident(t, "ichiro").MyNumber // in both
	if bytes.Equal(ra.keys.recordKey(ichiro), rs.keys.recordKey(ichiro)) {
		t.Error("the same person has the same record key in two municipalities")
	}
	sapporoValue := rawGet(t, db, sapporo, rs.keys.recordKey(an))
	if _, err := ra.keys.openRecord(rs.keys.recordKey(an), sapporoValue); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Asahikawa's data key opened a Sapporo record: %v", err)
	}
	// A handle whose keys are pointed at another region's bucket is
	// refused outright.
	forged := newRegion(v, &regionKeys{code: sapporo, version: ra.keys.version, id: ra.keys.id, data: ra.keys.data, lookup: ra.keys.lookup})
	if _, err := forged.Lookup(ctx, an); !errors.Is(err, ErrNoRegion) {
		t.Errorf("handle with Asahikawa keys read Sapporo: %v", err)
	}
}

func TestCiphertextMovedFails(t *testing.T) {
	ctx := t.Context()
	ichiro := demoResident(t, "ichiro").MyNumber
	hanako := demoResident(t, "hanako").MyNumber
	taro := demoResident(t, "taro").MyNumber
	tests := []struct {
		name   string
		tamper func(t *testing.T, db *bolt.DB, ra, rs *Region)
		victim string
	}{
		{"moved between municipalities", func(t *testing.T, db *bolt.DB, ra, rs *Region) {
			// Sapporo's record of ichiro, put where Asahikawa keeps his.
			rawPut(t, db, asahikawa, ra.keys.recordKey(ichiro), rawGet(t, db, sapporo, rs.keys.recordKey(ichiro)))
		}, ichiro},
		{"moved to another person's key", func(t *testing.T, db *bolt.DB, ra, rs *Region) {
			rawPut(t, db, asahikawa, ra.keys.recordKey(taro), rawGet(t, db, asahikawa, ra.keys.recordKey(hanako)))
		}, taro},
		{"one bit flipped", func(t *testing.T, db *bolt.DB, ra, rs *Region) {
			val := rawGet(t, db, asahikawa, ra.keys.recordKey(hanako))
			val[len(val)-20] ^= 1
			rawPut(t, db, asahikawa, ra.keys.recordKey(hanako), val)
		}, hanako},
		{"key version changed", func(t *testing.T, db *bolt.DB, ra, rs *Region) {
			val := rawGet(t, db, asahikawa, ra.keys.recordKey(hanako))
			val[4]++
			rawPut(t, db, asahikawa, ra.keys.recordKey(hanako), val)
		}, hanako},
		{"truncated", func(t *testing.T, db *bolt.DB, ra, rs *Region) {
			rawPut(t, db, asahikawa, ra.keys.recordKey(hanako), []byte{formatV1, 0, 0})
		}, hanako},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, db, _ := newVault(t)
			importDemo(t, v, asahikawa, sapporo)
			ra, _ := v.Region(ctx, asahikawa)
			rs, _ := v.Region(ctx, sapporo)
			tc.tamper(t, db, ra, rs)
			_, err := v.Lookup(ctx, asahikawa, tc.victim)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Lookup after tampering: %v, want ErrCorrupt", err)
			}
			// Untouched records still read.
			if _, err := v.Lookup(ctx, sapporo, ichiro); err != nil {
				t.Errorf("untouched record: %v", err)
			}
		})
	}
}

func TestWrongMasterKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records.db")
	db := openDB(t, path)
	right := randomMaster(t)
	v, err := Open(db, right, Options{})
	if err != nil {
		t.Fatal(err)
	}
	importDemo(t, v, asahikawa)

	wrong := randomMaster(t)
	_, err = Open(db, wrong, Options{})
	if !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("Open with the wrong master key: %v, want ErrWrongMasterKey", err)
	}
	for _, want := range []string{"master key", wrong.ID(), right.ID()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Even past the check value, the region keys do not unwrap.
	var entry []byte
	db.View(func(tx *bolt.Tx) error {
		entry = bytes.Clone(tx.Bucket(bucketKeys).Get([]byte(asahikawa)))
		return nil
	})
	if _, err := unwrapKeyEntry(wrong, asahikawa, entry); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("unwrap with the wrong key: %v", err)
	}
	// Nor under another municipality's name (the code is bound in).
	if _, err := unwrapKeyEntry(right, sapporo, entry); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("unwrap under another code: %v", err)
	}
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte{7}, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		ok      bool
		mention string
	}{
		{"0600", write("k600", 32, 0o600), true, ""},
		{"0400", write("k400", 32, 0o400), true, ""},
		{"0640 group-readable", write("k640", 32, 0o640), false, "chmod 600"},
		{"0644 world-readable", write("k644", 32, 0o644), false, "chmod 600"},
		{"0604", write("k604", 32, 0o604), false, "chmod 600"},
		{"0620 group-writable", write("k620", 32, 0o620), false, "chmod 600"},
		{"31 bytes", write("k31", 31, 0o600), false, "exactly 32"},
		{"33 bytes", write("k33", 33, 0o600), false, "exactly 32"},
		{"directory", dir, false, "not a regular file"},
		{"missing", filepath.Join(dir, "nope"), false, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadMasterKey(tc.path)
			if tc.ok {
				if err != nil || k == nil {
					t.Fatalf("LoadMasterKey: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrMasterKeyFile) {
				t.Fatalf("LoadMasterKey: %v, want ErrMasterKeyFile", err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not say %q", err, tc.mention)
			}
		})
	}

	p := filepath.Join(dir, "generated.key")
	gen, err := GenerateMasterKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 || fi.Size() != MasterKeySize {
		t.Errorf("generated file mode %04o size %d", fi.Mode().Perm(), fi.Size())
	}
	loaded, err := LoadMasterKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID() != gen.ID() {
		t.Error("loaded key differs from the generated one")
	}
	if _, err := GenerateMasterKeyFile(p); err == nil {
		t.Error("GenerateMasterKeyFile overwrote an existing key")
	}
}

func TestImportAllOrNothing(t *testing.T) {
	ctx := t.Context()
	good := demoEntries(t, asahikawa)
	badBirth := demoEntries(t, asahikawa)
	badBirth[2].Record.BirthDate = "1960-02-30"
	badNumber := demoEntries(t, asahikawa)
	badNumber[1].MyNumber = badNumber[1].MyNumber[:11] + "0"
	if badNumber[1].MyNumber == good[1].MyNumber {
		badNumber[1].MyNumber = good[1].MyNumber[:11] + "1"
	}
	dup := append(demoEntries(t, asahikawa), demoEntries(t, asahikawa)[0])
	other := demoEntries(t, asahikawa)
	other[0].Record.Municipality = sapporo
	tests := []struct {
		name    string
		entries []Entry
		want    error
	}{
		{"invalid birth date in the third entry", badBirth, ErrInvalidRecord},
		{"bad check digit in the second entry", badNumber, ErrBadMyNumber},
		{"same person twice", dup, ErrInvalidRecord},
		{"record of another municipality", other, ErrInvalidRecord},
		{"nothing", nil, ErrInvalidRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, _, _ := newVault(t)
			// First on an empty database: no region may be created.
			_, err := v.Import(ctx, asahikawa, operator, tc.entries)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Import: %v, want %v", err, tc.want)
			}
			counts, _ := v.Counts(ctx)
			if len(counts) != 0 {
				t.Errorf("a failed import left regions: %+v", counts)
			}
			// Then over existing records: they stay as they were.
			importDemo(t, v, asahikawa)
			if _, err := v.Import(ctx, asahikawa, operator, tc.entries); !errors.Is(err, tc.want) {
				t.Fatalf("second Import: %v", err)
			}
			for _, e := range good {
				got, err := v.Lookup(ctx, asahikawa, e.MyNumber)
				if err != nil || !reflect.DeepEqual(got, e.Record) {
					t.Errorf("record changed by a failed import (err %v)", err)
				}
			}
			log, _ := v.Log(ctx)
			if len(log) != 1 {
				t.Errorf("operations log has %d entries, want 1 (the good import)", len(log))
			}
		})
	}
}

// A cancelled context aborts an import inside the transaction: nothing is
// written.
func TestImportCancelledMidway(t *testing.T) {
	v, _, _ := newVault(t)
	entries := syntheticEntries(t, 3000)
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	v.now = func() time.Time {
		calls++
		cancel() // cancelled after validation, before the transaction's checks
		return fixedNow
	}
	_, err := v.Import(ctx, asahikawa, operator, entries)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Import: %v, want context.Canceled", err)
	}
	counts, _ := v.Counts(t.Context())
	if len(counts) != 0 || calls != 1 {
		t.Errorf("cancelled import left %+v", counts)
	}
}

func TestImportReplacesPerson(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	importDemo(t, v, asahikawa)
	hanako := demoEntries(t, asahikawa)[0]
	hanako.Record.Doses = append(hanako.Record.Doses, Dose{Number: 3, Date: "2022-02-01", Product: "spikevax", Manufacturer: "テスト製薬", Lot: "3005000", VaccineType: "mRNAワクチン"})
	res, err := v.Import(ctx, asahikawa, operator, []Entry{hanako})
	if err != nil {
		t.Fatal(err)
	}
	if res.Replaced != 1 || res.Added != 0 || res.RegionCreated {
		t.Errorf("Import = %+v, want one replaced", res)
	}
	got, err := v.Lookup(ctx, asahikawa, hanako.MyNumber)
	if err != nil || len(got.Doses) != 3 {
		t.Errorf("replaced record: %d doses, %v", len(got.Doses), err)
	}
	n, _ := mustRegion(t, v, asahikawa).Count(ctx)
	if n != 4 {
		t.Errorf("Count = %d, want 4 (others untouched)", n)
	}
}

func mustRegion(t *testing.T, v *Vault, code string) *Region {
	t.Helper()
	r, err := v.Region(t.Context(), code)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDeleteRegion(t *testing.T) {
	ctx := t.Context()
	v, db, _ := newVault(t)
	importDemo(t, v, asahikawa, sapporo)
	region := mustRegion(t, v, asahikawa)
	hanako := demoResident(t, "hanako").MyNumber

	if _, err := region.Delete(ctx, ""); !errors.Is(err, ErrInvalidOperator) {
		t.Fatalf("Delete without operator: %v", err)
	}
	op, err := region.Delete(ctx, operator)
	if err != nil {
		t.Fatal(err)
	}
	want := Operation{Seq: 3, Kind: OpDelete, Municipality: asahikawa, At: fixedNow, Records: 4, Operator: operator, KeyVersion: 1}
	if op != want {
		t.Errorf("Delete = %+v, want %+v", op, want)
	}
	log, _ := v.Log(ctx)
	if len(log) != 3 || log[2] != want {
		t.Errorf("operations log = %+v", log)
	}
	// The keys are gone from the database (crypto-shredding) and so is the bucket.
	db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKeys).Get([]byte(asahikawa)) != nil {
			t.Error("region keys survived deletion")
		}
		if tx.Bucket(bucketRegions).Bucket([]byte(asahikawa)) != nil {
			t.Error("region bucket survived deletion")
		}
		return nil
	})
	if _, err := region.Lookup(ctx, hanako); !errors.Is(err, ErrNoRegion) {
		t.Errorf("deleted handle Lookup: %v, want ErrNoRegion", err)
	}
	if _, err := region.Delete(ctx, operator); !errors.Is(err, ErrNoRegion) {
		t.Errorf("second Delete: %v, want ErrNoRegion", err)
	}
	if _, err := v.Lookup(ctx, asahikawa, hanako); !errors.Is(err, ErrNoRecord) {
		t.Errorf("Lookup after deletion: %v, want ErrNoRecord", err)
	}
	if _, err := v.Lookup(ctx, sapporo, demoResident(t, "an").MyNumber); err != nil {
		t.Errorf("other municipality affected by deletion: %v", err)
	}

	// Importing again creates a new region at the next key version; the
	// old handle does not read it.
	res, err := v.Import(ctx, asahikawa, operator, demoEntries(t, asahikawa))
	if err != nil {
		t.Fatal(err)
	}
	if !res.RegionCreated || res.KeyVersion != 2 {
		t.Errorf("re-import = %+v, want a new region at key version 2", res)
	}
	if _, err := region.Lookup(ctx, hanako); !errors.Is(err, ErrNoRegion) {
		t.Errorf("old handle read the new region: %v", err)
	}
	if _, err := v.Lookup(ctx, asahikawa, hanako); err != nil {
		t.Errorf("Lookup in the new region: %v", err)
	}
}

func TestCounts(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	importDemo(t, v, sapporo, asahikawa)
	got, err := v.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []RegionCount{
		{Municipality: sapporo, Records: 2, KeyVersion: 1, Created: fixedNow},
		{Municipality: asahikawa, Records: 4, KeyVersion: 1, Created: fixedNow},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Counts = %+v, want %+v", got, want)
	}
}

func TestRewrap(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "records.db")
	oldPath := filepath.Join(dir, "old.key")
	newPath := filepath.Join(dir, "new.key")
	oldKey, err := GenerateMasterKeyFile(oldPath)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, path)
	v, err := Open(db, oldKey, Options{})
	if err != nil {
		t.Fatal(err)
	}
	importDemo(t, v, asahikawa, sapporo)

	// A wrong "old" key changes nothing and leaves no new key file.
	wrongPath := filepath.Join(dir, "wrong.key")
	if _, err := GenerateMasterKeyFile(wrongPath); err != nil {
		t.Fatal(err)
	}
	if _, _, err := RotateMasterKeyFile(ctx, db, wrongPath, newPath, operator, fixedNow); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("rotate from the wrong key: %v", err)
	}
	if _, err := os.Stat(newPath); !os.IsNotExist(err) {
		t.Errorf("failed rotation left the new key file (%v)", err)
	}

	newKey, n, err := RotateMasterKeyFile(ctx, db, oldPath, newPath, operator, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("re-wrapped %d regions, want 2", n)
	}
	if _, err := Open(db, oldKey, Options{}); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("Open with the old key after rotation: %v", err)
	}
	v2, err := Open(db, newKey, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range demoEntries(t, sapporo) {
		got, err := v2.Lookup(ctx, sapporo, e.MyNumber)
		if err != nil || !reflect.DeepEqual(got, e.Record) {
			t.Errorf("record after rotation differs (err %v)", err)
		}
	}
	log, _ := v2.Log(ctx)
	last := log[len(log)-1]
	if last.Kind != OpRewrap || last.Records != 2 || last.MasterKeyID != newKey.ID() || last.Operator != operator {
		t.Errorf("rotation log entry = %+v", last)
	}
	if _, err := Rewrap(ctx, db, newKey, newKey, operator, fixedNow); err == nil {
		t.Error("Rewrap to the same key succeeded")
	}
}

// After an import, the database file holds no personal field in clear.
func TestNoPlaintextInDatabaseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records.db")
	db, err := boltfile.Open(path, boltfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := Open(db, randomMaster(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	importDemo(t, v, asahikawa, sapporo)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	assertNoPlaintext(t, raw)
}

// assertNoPlaintext fails if raw holds any demo resident's personal value
// in clear.
func assertNoPlaintext(t *testing.T, raw []byte) {
	t.Helper()
	// The scan must be able to see plaintext: check it on a control that
	// holds the records unencrypted.
	var control []byte
	for _, code := range []string{asahikawa, sapporo} {
		for _, e := range demoEntries(t, code) {
			control = fmt.Appendf(control, "%s %s %s", e.MyNumber, e.Record.ResidentNumber, e.Record.Name)
		}
	}
	if found, _ := plaintextFound(t, control); found == 0 {
		t.Fatal("the scan does not detect plaintext in a control")
	}
	found, checked := plaintextFound(t, raw)
	if found > 0 {
		t.Errorf("database file contains %d personal values in clear", found)
	}
	if checked < 30 {
		t.Fatalf("only %d values checked", checked)
	}
}

// plaintextFound counts the demo residents' personal values of six bytes or
// more (shorter ones could occur by chance in ciphertext) found in raw, and
// the unencrypted JSON field names.
func plaintextFound(t *testing.T, raw []byte) (found, checked int) {
	t.Helper()
	for _, code := range []string{asahikawa, sapporo} {
		for _, e := range demoEntries(t, code) {
			r := e.Record
			values := []string{e.MyNumber, r.ResidentNumber, r.TicketNumber, r.Name, r.NameKana,
				r.RomanFamily, r.RomanGiven, r.BirthDate, r.PassportNumber,
				strings.ReplaceAll(r.BirthDate, "-", "")}
			for _, d := range r.Doses {
				values = append(values, d.Lot)
			}
			for _, val := range values {
				if len(val) < 6 {
					continue
				}
				checked++
				if bytes.Contains(raw, []byte(val)) {
					found++
				}
			}
		}
	}
	for _, marker := range []string{"residentNumber", "birthDate", "passportNumber"} {
		if bytes.Contains(raw, []byte(marker)) {
			found++
		}
	}
	return found, checked
}

func TestRecordsRedacted(t *testing.T) {
	e := demoEntries(t, asahikawa)[0]
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "record", e.Record, "entry", e)
	outputs := []string{
		fmt.Sprintf("%v", e.Record), fmt.Sprintf("%+v", e.Record), fmt.Sprintf("%#v", e.Record),
		fmt.Sprintf("%v", e), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e),
		fmt.Sprint([]Entry{e}), logBuf.String(),
	}
	for _, out := range outputs {
		for _, secret := range []string{e.MyNumber, e.Record.Name, e.Record.BirthDate, e.Record.PassportNumber} {
			if strings.Contains(out, secret) {
				t.Errorf("formatted output %q contains personal data", out)
			}
		}
	}
}

func TestRecordValidation(t *testing.T) {
	base := func() Record { return demoEntries(t, asahikawa)[1].Record } // taro, 7 doses
	tests := []struct {
		name   string
		mutate func(*Record)
		field  string
	}{
		{"valid", func(*Record) {}, ""},
		{"bad municipality", func(r *Record) { r.Municipality = "012040" }, "municipality"},
		{"no resident number", func(r *Record) { r.ResidentNumber = "" }, "residentNumber"},
		{"resident number with letter", func(r *Record) { r.ResidentNumber = "00001234A" }, "residentNumber"},
		{"no name", func(r *Record) { r.Name = "" }, "name"},
		{"name with newline", func(r *Record) { r.Name = "試験\n太郎" }, "name"},
		{"name too long", func(r *Record) { r.Name = strings.Repeat("試", 40) }, "name"},
		{"hiragana kana", func(r *Record) { r.NameKana = "しけん　たろう" }, "nameKana"},
		{"lower-case roman", func(r *Record) { r.RomanFamily = "Shiken" }, "romanFamily"},
		{"given without family", func(r *Record) { r.RomanFamily, r.PassportNumber = "", "" }, "romanFamily"},
		{"30 February", func(r *Record) { r.BirthDate = "1942-02-30" }, "birthDate"},
		{"slashes", func(r *Record) { r.BirthDate = "1942/11/30" }, "birthDate"},
		{"sex 3", func(r *Record) { r.Sex = "3" }, "sex"},
		{"nationality lower-case", func(r *Record) { r.Nationality = "jpn" }, "nationality"},
		{"passport without nationality", func(r *Record) { r.Nationality = "" }, "nationality"},
		{"passport too long", func(r *Record) { r.PassportNumber = "TR76543210123" }, "passportNumber"},
		{"no doses", func(r *Record) { r.Doses = nil }, "doses"},
		{"eleven doses", func(r *Record) {
			for i := 8; i <= 11; i++ {
				r.Doses = append(r.Doses, Dose{Number: i, Date: "2024-01-01", Product: "comirnaty", Manufacturer: "x", Lot: "L1", VaccineType: "x"})
			}
		}, "doses"},
		{"repeated dose number", func(r *Record) { r.Doses[1].Number = 1 }, "dose.number"},
		{"dose before previous", func(r *Record) { r.Doses[1].Date = "2021-05-01" }, "dose.date"},
		{"dose before 2021-02-17", func(r *Record) { r.Doses[0].Date = "2020-12-31" }, "dose.date"},
		{"product with capitals", func(r *Record) { r.Doses[0].Product = "Comirnaty" }, "dose.product"},
		{"lot too long", func(r *Record) { r.Doses[0].Lot = strings.Repeat("A", 21) }, "dose.lot"},
		{"lot with space", func(r *Record) { r.Doses[0].Lot = "EY 2173" }, "dose.lot"},
		{"no manufacturer", func(r *Record) { r.Doses[0].Manufacturer = "" }, "dose.manufacturer"},
		{"no vaccine type", func(r *Record) { r.Doses[0].VaccineType = "" }, "dose.vaccineType"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.mutate(&r)
			ps := r.Problems()
			if tc.field == "" {
				if len(ps) != 0 || r.Validate() != nil {
					t.Fatalf("valid record has problems %v", ps)
				}
				return
			}
			found := false
			for _, p := range ps {
				found = found || p.Field == tc.field
			}
			if !found {
				t.Errorf("problems %v do not name %s", ps, tc.field)
			}
			if err := r.Validate(); !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestConcurrentLookupsAndImports(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	importDemo(t, v, asahikawa, sapporo)
	entries := demoEntries(t, asahikawa)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				e := entries[(w+i)%len(entries)]
				got, err := v.Lookup(ctx, asahikawa, e.MyNumber)
				if err != nil || got.ResidentNumber != e.Record.ResidentNumber {
					errs <- fmt.Errorf("lookup: %v", err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			if _, err := v.Import(ctx, asahikawa, operator, entries); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The records and the store can share one database file: their buckets
// are prefixed and do not collide.
func TestSharedDatabaseWithStore(t *testing.T) {
	ctx := t.Context()
	db := openDB(t, filepath.Join(t.TempDir(), "center.db"))
	st, err := boltstore.New(db)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Open(db, randomMaster(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	importDemo(t, v, asahikawa)
	if err := st.EnrollKiosk(ctx, storetest.NewKiosk("shared")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Lookup(ctx, asahikawa, demoResident(t, "taro").MyNumber); err != nil {
		t.Error(err)
	}
	if _, err := st.Kiosk(ctx, "kiosk-shared"); err != nil {
		t.Error(err)
	}
}

// The records file, like the store's, refuses a second opener quickly.
func TestRecordsFileLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records.db")
	openDB(t, path)
	start := time.Now()
	_, err := boltfile.Open(path, boltfile.Options{Timeout: 30 * time.Millisecond})
	if !errors.Is(err, boltfile.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Error("second open waited far beyond its timeout")
	}
}

func TestOperatorValidation(t *testing.T) {
	for _, op := range []string{"", "tanaka taro", "田中", strings.Repeat("a", 65), "a/b"} {
		if err := checkOperator(op); !errors.Is(err, ErrInvalidOperator) {
			t.Errorf("operator %q accepted", op)
		}
	}
	for _, op := range []string{"tanaka", "op-01", "t.tanaka@city.asahikawa"} {
		if err := checkOperator(op); err != nil {
			t.Errorf("operator %q refused: %v", op, err)
		}
	}
}
