package records_test

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

	"github.com/kioskcert/kioskcert/center/internal/records"
	"github.com/kioskcert/kioskcert/center/internal/store/boltfile"
	"github.com/kioskcert/kioskcert/center/internal/store/boltstore"
	"github.com/kioskcert/kioskcert/center/internal/store/storetest"
)

func TestImportAndLookup(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	res, err := v.Import(ctx, asahikawa, demoEntries(t, asahikawa), full())
	if err != nil {
		t.Fatal(err)
	}
	want := records.ImportResult{Municipality: asahikawa, Mode: records.ModeFull, Persons: 6, Added: 6, Doses: 17, RegionCreated: true, KeyVersion: 1, Seq: 1}
	if res != want {
		t.Errorf("Import = %+v, want %+v", res, want)
	}
	importDemo(t, v, sapporo)

	byCode := map[string]map[string]records.Record{}
	for _, code := range []string{asahikawa, sapporo} {
		byCode[code] = map[string]records.Record{}
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
					if !errors.Is(err, records.ErrNoRecord) {
						t.Fatalf("Lookup: got %v, want ErrNoRecord", err)
					}
					if code == fujimino && !errors.Is(err, records.ErrNoRegion) {
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
	db := openDB(t, filepath.Join(t.TempDir(), "records.db"))
	v, err := records.Open(t.Context(), newBackend(t, db), randomMaster(t), records.Options{})
	if err != nil {
		t.Fatal(err)
	}
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
			if !errors.Is(err, records.ErrBadMyNumber) {
				t.Errorf("Vault.Lookup: %v, want ErrBadMyNumber", err)
			}
			_, err = region.Lookup(t.Context(), tc.mn)
			if !errors.Is(err, records.ErrBadMyNumber) {
				t.Errorf("Region.Lookup: %v, want ErrBadMyNumber", err)
			}
			if tc.mn != "" && strings.Contains(err.Error(), tc.mn) {
				t.Errorf("error %q contains the number", err)
			}
		})
	}
}

// rawGet and rawPut reach into a region's records through the backend, as
// an attacker with write access to the file could.
func rawGet(t *testing.T, b records.Backend, r *records.Region, key []byte) []byte {
	t.Helper()
	v, err := b.Get(t.Context(), r.Municipality(), records.RegionIDOf(r), key)
	if err != nil {
		t.Fatalf("raw get: %v", err)
	}
	return v
}

func rawPut(t *testing.T, b records.Backend, r *records.Region, key, value []byte) {
	t.Helper()
	old := rawGet(t, b, r, key)
	if _, err := b.Update(t.Context(), records.RecordUpdate{Code: r.Municipality(), ID: records.RegionIDOf(r), Key: key, Old: old, New: value,
		Log: records.Operation{Kind: records.OpFlagSet, Municipality: r.Municipality(), Operator: "attacker"}}); err != nil {
		t.Fatalf("raw put: %v", err)
	}
}

// One municipality's keys cannot read another's records: the record keys
// differ (so a person cannot even be found), and a value taken from the
// other region does not open under this region's data key.
func TestWrongMunicipalityKeyCannotRead(t *testing.T) {
	ctx := t.Context()
	v, b, _ := newVault(t)
	importDemo(t, v, asahikawa, sapporo)
	ra := mustRegion(t, v, asahikawa)
	rs := mustRegion(t, v, sapporo)
	an := demoResident(t, "an").MyNumber // only in Sapporo
	if _, err := ra.Lookup(ctx, an); !errors.Is(err, records.ErrNoRecord) {
		t.Errorf("Asahikawa handle found a Sapporo-only resident: %v", err)
	}
	ichiro := demoResident(t, "ichiro").MyNumber // in both
	if bytes.Equal(records.RecordKeyOf(ra, ichiro), records.RecordKeyOf(rs, ichiro)) {
		t.Error("the same person has the same record key in two municipalities")
	}
	sapporoValue := rawGet(t, b, rs, records.RecordKeyOf(rs, an))
	if _, err := records.OpenValue(ra, records.RecordKeyOf(rs, an), sapporoValue); !errors.Is(err, records.ErrCorrupt) {
		t.Errorf("Asahikawa's data key opened a Sapporo record: %v", err)
	}
	// A handle whose keys are pointed at another region is refused
	// outright: the identity it presents is not Sapporo's.
	forged := records.ForgeRegion(v, ra, sapporo)
	if _, err := forged.Lookup(ctx, an); !errors.Is(err, records.ErrNoRegion) {
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
		tamper func(t *testing.T, b records.Backend, ra, rs *records.Region)
		victim string
	}{
		{"moved between municipalities", func(t *testing.T, b records.Backend, ra, rs *records.Region) {
			// Sapporo's record of ichiro, put where Asahikawa keeps his.
			rawPut(t, b, ra, records.RecordKeyOf(ra, ichiro), rawGet(t, b, rs, records.RecordKeyOf(rs, ichiro)))
		}, ichiro},
		{"moved to another person's key", func(t *testing.T, b records.Backend, ra, rs *records.Region) {
			rawPut(t, b, ra, records.RecordKeyOf(ra, taro), rawGet(t, b, ra, records.RecordKeyOf(ra, hanako)))
		}, taro},
		{"one bit flipped", func(t *testing.T, b records.Backend, ra, rs *records.Region) {
			val := rawGet(t, b, ra, records.RecordKeyOf(ra, hanako))
			val[len(val)-20] ^= 1
			rawPut(t, b, ra, records.RecordKeyOf(ra, hanako), val)
		}, hanako},
		{"key version changed", func(t *testing.T, b records.Backend, ra, rs *records.Region) {
			val := rawGet(t, b, ra, records.RecordKeyOf(ra, hanako))
			val[4]++
			rawPut(t, b, ra, records.RecordKeyOf(ra, hanako), val)
		}, hanako},
		{"truncated", func(t *testing.T, b records.Backend, ra, rs *records.Region) {
			rawPut(t, b, ra, records.RecordKeyOf(ra, hanako), []byte{records.ValueFormat, 0, 0})
		}, hanako},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, b, _ := newVault(t)
			importDemo(t, v, asahikawa, sapporo)
			ra := mustRegion(t, v, asahikawa)
			rs := mustRegion(t, v, sapporo)
			tc.tamper(t, b, ra, rs)
			_, err := v.Lookup(ctx, asahikawa, tc.victim)
			if !errors.Is(err, records.ErrCorrupt) {
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
	b := newBackend(t, openDB(t, filepath.Join(t.TempDir(), "records.db")))
	right := randomMaster(t)
	v, err := records.Open(t.Context(), b, right, records.Options{})
	if err != nil {
		t.Fatal(err)
	}
	importDemo(t, v, asahikawa)

	wrong := randomMaster(t)
	_, err = records.Open(t.Context(), b, wrong, records.Options{})
	if !errors.Is(err, records.ErrWrongMasterKey) {
		t.Fatalf("Open with the wrong master key: %v, want ErrWrongMasterKey", err)
	}
	for _, want := range []string{"master key", wrong.ID(), right.ID()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Even past the check value, the region keys do not unwrap.
	st, err := b.Region(t.Context(), asahikawa)
	if err != nil {
		t.Fatal(err)
	}
	if err := records.UnwrapKeyEntry(wrong, asahikawa, st.KeyEntry); !errors.Is(err, records.ErrWrongMasterKey) {
		t.Errorf("unwrap with the wrong key: %v", err)
	}
	// Nor under another municipality's name (the code is bound in).
	if err := records.UnwrapKeyEntry(right, sapporo, st.KeyEntry); !errors.Is(err, records.ErrWrongMasterKey) {
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
			k, err := records.LoadMasterKey(tc.path)
			if tc.ok {
				if err != nil || k == nil {
					t.Fatalf("LoadMasterKey: %v", err)
				}
				return
			}
			if !errors.Is(err, records.ErrMasterKeyFile) {
				t.Fatalf("LoadMasterKey: %v, want ErrMasterKeyFile", err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not say %q", err, tc.mention)
			}
		})
	}

	p := filepath.Join(dir, "generated.key")
	gen, err := records.GenerateMasterKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 || fi.Size() != records.MasterKeySize {
		t.Errorf("generated file mode %04o size %d", fi.Mode().Perm(), fi.Size())
	}
	loaded, err := records.LoadMasterKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID() != gen.ID() {
		t.Error("loaded key differs from the generated one")
	}
	if _, err := records.GenerateMasterKeyFile(p); err == nil {
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
	sameResident := demoEntries(t, asahikawa)
	sameResident[3].Record.ResidentNumber = sameResident[1].Record.ResidentNumber
	tests := []struct {
		name    string
		entries []records.Entry
		want    error
	}{
		{"invalid birth date in the third entry", badBirth, records.ErrInvalidRecord},
		{"bad check digit in the second entry", badNumber, records.ErrBadMyNumber},
		{"same person twice", dup, records.ErrImportRejected},
		{"one resident number for two persons", sameResident, records.ErrImportRejected},
		{"record of another municipality", other, records.ErrInvalidRecord},
		{"nothing", nil, records.ErrInvalidRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, b, _ := newVault(t)
			// First on an empty database: no region may be created.
			_, err := v.Import(ctx, asahikawa, tc.entries, full())
			if !errors.Is(err, tc.want) {
				t.Fatalf("Import: %v, want %v", err, tc.want)
			}
			counts, _ := v.Counts(ctx)
			if len(counts) != 0 {
				t.Errorf("a failed import left regions: %+v", counts)
			}
			// Then over existing records: they stay as they were.
			importDemo(t, v, asahikawa)
			if _, err := v.Import(ctx, asahikawa, tc.entries, full()); !errors.Is(err, tc.want) {
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
			// The failed import's staging is gone.
			if g, _ := b.Garbage(ctx, fixedNow.Add(time.Hour)); len(g) != 0 {
				t.Errorf("a failed import left generations %v", g)
			}
		})
	}
}

func TestImportRejectedNamesEntries(t *testing.T) {
	v, _, _ := newVault(t)
	entries := syntheticEntries(t, 0, 20)
	entries = append(entries, entries[3]) // entry 21 is entry 4 again
	entries[9].Record.ResidentNumber = entries[6].Record.ResidentNumber
	_, err := v.Import(t.Context(), asahikawa, entries, full())
	var rej *records.RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("Import: %v, want *RejectedError", err)
	}
	want := []records.EntryProblem{
		{Kind: records.ProblemSameResidentNumber, Ref: 10, FirstRef: 7},
		{Kind: records.ProblemSamePerson, Ref: 21, FirstRef: 4},
	}
	if !reflect.DeepEqual(rej.Problems, want) {
		t.Errorf("problems %+v, want %+v", rej.Problems, want)
	}
	if msg := err.Error(); !strings.Contains(msg, "entry 21: the same person as entry 4") || strings.Contains(msg, entries[3].MyNumber) {
		t.Errorf("message %q", msg)
	}
}

// A cancelled context aborts an import at any stage; nothing is visible
// and the staging is dropped.
func TestImportCancelled(t *testing.T) {
	for _, stage := range []records.Phase{records.PhaseStaging, records.PhaseOrdering, records.PhasePublishing} {
		t.Run(string(stage), func(t *testing.T) {
			v, b, _ := newVault(t)
			importDemo(t, v, asahikawa)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			opts := full()
			opts.RunBytes = 32 << 10
			opts.OnProgress = func(p records.Progress) {
				if p.Phase == stage {
					cancel()
				}
			}
			job, err := v.BeginImport(ctx, asahikawa, opts)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range syntheticEntries(t, 0, 3000) {
				if err := job.Add(ctx, e, uint64(i+1)); err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Fatal(err)
					}
					job.Abort(ctx)
					break
				}
			}
			if _, err := job.Commit(ctx); !errors.Is(err, context.Canceled) && !errors.Is(err, records.ErrImportClosed) {
				t.Fatalf("Commit: %v, want context.Canceled", err)
			}
			n, _ := mustRegion(t, v, asahikawa).Count(t.Context())
			if n != 6 {
				t.Errorf("Count = %d after a cancelled import, want the 6 before", n)
			}
			if g, _ := b.Garbage(t.Context(), fixedNow.Add(time.Hour)); len(g) != 0 {
				t.Errorf("a cancelled import left generations %v", g)
			}
			if _, err := v.BeginImport(t.Context(), asahikawa, full()); err != nil {
				t.Errorf("a new import after the cancelled one: %v", err)
			}
		})
	}
}

// Many runs (small RunBytes) merge into one generation; lookups during
// staging see the old records, after Commit the new ones, and persons not
// in a full ledger are gone.
func TestFullImportReplacesRegion(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	first := syntheticEntries(t, 0, 1500)
	opts := full()
	opts.RunBytes = 64 << 10 // about 200 records a run
	if _, err := v.Import(ctx, asahikawa, first, opts); err != nil {
		t.Fatal(err)
	}
	second := syntheticEntries(t, 1000, 1500) // 500 kept, 1000 new, 1000 dropped
	for i := range second {
		second[i].Record.Doses[2].Lot = "NEW-LOT"
	}
	job, err := v.BeginImport(ctx, asahikawa, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range second {
		if err := job.Add(ctx, e, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := v.Lookup(ctx, asahikawa, first[0].MyNumber); err != nil || got.Doses[2].Lot != "FA5765" {
		t.Fatalf("during staging: %v", err)
	}
	if _, err := v.Lookup(ctx, asahikawa, second[1499].MyNumber); !errors.Is(err, records.ErrNoRecord) {
		t.Fatalf("a staged record is visible before Commit: %v", err)
	}
	res, err := job.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Persons != 1500 || res.Added != 1000 || res.Replaced != 500 || res.Removed != 1000 || res.Doses != 4500 || res.RegionCreated {
		t.Errorf("Commit = %+v", res)
	}
	for _, e := range second {
		got, err := v.Lookup(ctx, asahikawa, e.MyNumber)
		if err != nil || !reflect.DeepEqual(got, e.Record) {
			t.Fatalf("record after the import: %v", err)
		}
	}
	if _, err := v.Lookup(ctx, asahikawa, first[0].MyNumber); !errors.Is(err, records.ErrNoRecord) {
		t.Errorf("a person not in the new ledger is still there: %v", err)
	}
	counts, _ := v.Counts(ctx)
	if len(counts) != 1 || counts[0].Records != 1500 {
		t.Errorf("Counts = %+v", counts)
	}
	log, _ := v.Log(ctx)
	last := log[len(log)-1]
	if last.Kind != records.OpImport || last.Mode != records.ModeFull || last.Added != 1000 || last.Replaced != 500 || last.Removed != 1000 || last.Operator != operator {
		t.Errorf("log entry %+v", last)
	}
}

func TestChangesImport(t *testing.T) {
	ctx := t.Context()
	v, b, _ := newVault(t)
	if _, err := v.Import(ctx, asahikawa, syntheticEntries(t, 0, 4), changes()); !errors.Is(err, records.ErrNoRegion) {
		t.Fatalf("changes before any full import: %v, want ErrNoRegion", err)
	}
	base := syntheticEntries(t, 0, 100)
	if _, err := v.Import(ctx, asahikawa, base, full()); err != nil {
		t.Fatal(err)
	}
	changed := base[5]
	changed.Record.Doses = append(changed.Record.Doses, records.Dose{Number: 4, Date: "2022-02-01", Product: "spikevax", Manufacturer: "モデルナ", Lot: "3005000", VaccineType: "mRNAワクチン"})
	added := syntheticEntries(t, 500, 2)
	job, err := v.BeginImport(ctx, asahikawa, changes())
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range append([]records.Entry{changed}, added...) {
		if err := job.Add(ctx, e, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range []records.Entry{base[7], base[8], syntheticEntries(t, 900, 1)[0]} {
		if err := job.Remove(ctx, e.MyNumber, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := job.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := records.ImportResult{Municipality: asahikawa, Mode: records.ModeChanges, Persons: 3, Added: 2, Replaced: 1, Removed: 2, Absent: 1, Doses: 10, KeyVersion: 1, Seq: 2}
	if res != want {
		t.Errorf("Commit = %+v, want %+v", res, want)
	}
	if got, err := v.Lookup(ctx, asahikawa, changed.MyNumber); err != nil || len(got.Doses) != 4 {
		t.Errorf("changed person: %d doses, %v", len(got.Doses), err)
	}
	for _, e := range added {
		if _, err := v.Lookup(ctx, asahikawa, e.MyNumber); err != nil {
			t.Errorf("added person: %v", err)
		}
	}
	for _, e := range base[7:9] {
		if _, err := v.Lookup(ctx, asahikawa, e.MyNumber); !errors.Is(err, records.ErrNoRecord) {
			t.Errorf("removed person: %v", err)
		}
	}
	if _, err := v.Lookup(ctx, asahikawa, base[50].MyNumber); err != nil {
		t.Errorf("untouched person: %v", err)
	}
	counts, _ := v.Counts(ctx)
	if counts[0].Records != 100 || counts[0].MergePending {
		t.Errorf("Counts = %+v, want 100 records, merged", counts)
	}
	// The overlay was merged and dropped.
	st, _ := b.Region(ctx, asahikawa)
	if st.Overlay != 0 {
		t.Errorf("overlay %d left after the import", st.Overlay)
	}
	if g, _ := b.Garbage(ctx, fixedNow.Add(time.Hour)); len(g) != 0 {
		t.Errorf("generations left: %v", g)
	}
	// A removal in a full import is refused.
	job, _ = v.BeginImport(ctx, asahikawa, full())
	if err := job.Remove(ctx, base[1].MyNumber, 1); err == nil {
		t.Error("a full import accepted a removal")
	}
	job.Abort(ctx)
}

// An interrupted merge (the process died after publishing a changes file)
// is invisible to lookups and finished by Maintain.
func TestMaintainFinishesMerge(t *testing.T) {
	ctx := t.Context()
	v, b, _ := newVault(t)
	base := syntheticEntries(t, 0, 10)
	if _, err := v.Import(ctx, asahikawa, base, full()); err != nil {
		t.Fatal(err)
	}
	st, _ := b.Region(ctx, asahikawa)
	r := mustRegion(t, v, asahikawa)
	// Publish an overlay removing person 3 without merging it.
	g, _ := b.BeginStaging(ctx, asahikawa, fixedNow)
	if err := b.StageRun(ctx, g, records.RunRecords, []records.Staged{{Key: records.RecordKeyOf(r, base[3].MyNumber), Ref: 1}}, fixedNow); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FinishStaging(ctx, g, records.Finish{Build: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Promote(ctx, records.Promotion{Code: asahikawa, Gen: g, Overlay: true, ExpectID: st.ID, ExpectSerial: st.Serial, Records: 9,
		Log: records.Operation{Kind: records.OpImport, Municipality: asahikawa, Operator: operator}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Lookup(ctx, asahikawa, base[3].MyNumber); !errors.Is(err, records.ErrNoRecord) {
		t.Errorf("removed by the unmerged overlay: %v", err)
	}
	if c, _ := v.Counts(ctx); !c[0].MergePending || c[0].Records != 9 {
		t.Errorf("Counts = %+v", c)
	}
	// A stale staging generation of a dead import is collected too.
	dead, _ := b.BeginStaging(ctx, asahikawa, fixedNow.Add(-time.Hour))
	if err := v.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := v.Counts(ctx); c[0].MergePending {
		t.Error("merge still pending after Maintain")
	}
	if gs, _ := b.Garbage(ctx, fixedNow.Add(time.Hour)); len(gs) != 0 {
		t.Errorf("Maintain left generations %v (dead staging was %d)", gs, dead)
	}
	if _, err := v.Lookup(ctx, asahikawa, base[3].MyNumber); !errors.Is(err, records.ErrNoRecord) {
		t.Errorf("after the merge: %v", err)
	}
	if _, err := v.Lookup(ctx, asahikawa, base[4].MyNumber); err != nil {
		t.Errorf("untouched after the merge: %v", err)
	}
}

func TestImportExclusive(t *testing.T) {
	ctx := t.Context()
	v, _, _ := newVault(t)
	importDemo(t, v, asahikawa)
	job, err := v.BeginImport(ctx, asahikawa, full())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.BeginImport(ctx, asahikawa, full()); !errors.Is(err, records.ErrImportRunning) {
		t.Errorf("second import: %v, want ErrImportRunning", err)
	}
	if _, err := v.BeginImport(ctx, sapporo, full()); err != nil {
		t.Errorf("another municipality's import: %v", err)
	}
	hanako := demoResident(t, "hanako").MyNumber
	if _, err := v.SetFlag(ctx, asahikawa, hanako, operator, records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterStaffReview}); !errors.Is(err, records.ErrImportRunning) {
		t.Errorf("SetFlag during an import: %v, want ErrImportRunning", err)
	}
	if _, err := mustRegion(t, v, asahikawa).Delete(ctx, operator); !errors.Is(err, records.ErrImportRunning) {
		t.Errorf("Delete during an import: %v, want ErrImportRunning", err)
	}
	job.Abort(ctx)
	job.Abort(ctx) // twice is harmless
	if _, err := job.Commit(ctx); !errors.Is(err, records.ErrImportClosed) {
		t.Errorf("Commit after Abort: %v", err)
	}
	if _, err := v.SetFlag(ctx, asahikawa, hanako, operator, records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterStaffReview}); err != nil {
		t.Errorf("SetFlag after the import: %v", err)
	}
	for _, opts := range []records.ImportOptions{{Operator: operator}, {Operator: "", Mode: records.ModeFull}} {
		if _, err := v.BeginImport(ctx, asahikawa, opts); err == nil {
			t.Errorf("BeginImport(%+v) accepted", opts)
		}
	}
}

// Another process changing the region while an import stages (here: a
// second Vault on the same backend setting a flag) makes Commit fail
// rather than lose the change.
func TestImportConflictsWithOtherWriter(t *testing.T) {
	ctx := t.Context()
	v, b, master := newVault(t)
	importDemo(t, v, asahikawa)
	other, err := records.Open(ctx, b, master, records.Options{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := v.BeginImport(ctx, asahikawa, full())
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range demoEntries(t, asahikawa) {
		if err := job.Add(ctx, e, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	hanako := demoResident(t, "hanako").MyNumber
	if _, err := other.SetFlag(ctx, asahikawa, hanako, operator, records.FlagChange{Kind: records.FlagCounterOnly, Reason: records.CounterSupportMeasure}); err != nil {
		t.Fatal(err)
	}
	if _, err := job.Commit(ctx); !errors.Is(err, records.ErrConflict) {
		t.Fatalf("Commit after another writer: %v, want ErrConflict", err)
	}
	got, err := v.Lookup(ctx, asahikawa, hanako)
	if err != nil || got.Flags.CounterOnly != records.CounterSupportMeasure {
		t.Errorf("the other writer's flag was lost: %+v, %v", got.Flags, err)
	}
}

func mustRegion(t *testing.T, v *records.Vault, code string) *records.Region {
	t.Helper()
	r, err := v.Region(t.Context(), code)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDeleteRegion(t *testing.T) {
	ctx := t.Context()
	v, b, _ := newVault(t)
	importDemo(t, v, asahikawa, sapporo)
	region := mustRegion(t, v, asahikawa)
	hanako := demoResident(t, "hanako").MyNumber

	if _, err := region.Delete(ctx, ""); !errors.Is(err, records.ErrInvalidOperator) {
		t.Fatalf("Delete without operator: %v", err)
	}
	op, err := region.Delete(ctx, operator)
	if err != nil {
		t.Fatal(err)
	}
	want := records.Operation{Seq: 3, Kind: records.OpDelete, Municipality: asahikawa, At: fixedNow, Records: 6, Operator: operator, KeyVersion: 1}
	if op != want {
		t.Errorf("Delete = %+v, want %+v", op, want)
	}
	log, _ := v.Log(ctx)
	if len(log) != 3 || log[2] != want {
		t.Errorf("operations log = %+v", log)
	}
	// The keys are gone (crypto-shredding) and so are the records.
	if _, err := b.Region(ctx, asahikawa); !errors.Is(err, records.ErrNoRegion) {
		t.Errorf("region state survived deletion: %v", err)
	}
	if g, _ := b.Garbage(ctx, fixedNow.Add(time.Hour)); len(g) != 0 {
		t.Errorf("the deleted region's generations were not dropped: %v", g)
	}
	if _, err := region.Lookup(ctx, hanako); !errors.Is(err, records.ErrNoRegion) {
		t.Errorf("deleted handle Lookup: %v, want ErrNoRegion", err)
	}
	if _, err := region.Delete(ctx, operator); !errors.Is(err, records.ErrNoRegion) {
		t.Errorf("second Delete: %v, want ErrNoRegion", err)
	}
	if _, err := v.Lookup(ctx, asahikawa, hanako); !errors.Is(err, records.ErrNoRecord) {
		t.Errorf("Lookup after deletion: %v, want ErrNoRecord", err)
	}
	if _, err := v.Lookup(ctx, sapporo, demoResident(t, "an").MyNumber); err != nil {
		t.Errorf("other municipality affected by deletion: %v", err)
	}

	// Importing again creates a new region at the next key version; the
	// old handle does not read it.
	res, err := v.Import(ctx, asahikawa, demoEntries(t, asahikawa), full())
	if err != nil {
		t.Fatal(err)
	}
	if !res.RegionCreated || res.KeyVersion != 2 {
		t.Errorf("re-import = %+v, want a new region at key version 2", res)
	}
	if _, err := region.Lookup(ctx, hanako); !errors.Is(err, records.ErrNoRegion) {
		t.Errorf("old handle read the new region: %v", err)
	}
	if _, err := v.Lookup(ctx, asahikawa, hanako); err != nil {
		t.Errorf("Lookup in the new region: %v", err)
	}
}

// A region deleted and re-created by another process (another Vault on
// the same backend) is found again by a Vault holding a stale handle.
func TestLookupAfterOtherProcessRecreates(t *testing.T) {
	ctx := t.Context()
	v, b, master := newVault(t)
	importDemo(t, v, asahikawa)
	hanako := demoResident(t, "hanako").MyNumber
	if _, err := v.Lookup(ctx, asahikawa, hanako); err != nil {
		t.Fatal(err)
	}
	other, _ := records.Open(ctx, b, master, records.Options{Now: func() time.Time { return fixedNow }})
	if _, err := mustRegion(t, other, asahikawa).Delete(ctx, operator); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Lookup(ctx, asahikawa, hanako); !errors.Is(err, records.ErrNoRecord) {
		t.Errorf("Lookup after another process deleted: %v", err)
	}
	importDemo(t, other, asahikawa)
	if _, err := v.Lookup(ctx, asahikawa, hanako); err != nil {
		t.Errorf("Lookup after another process re-created: %v", err)
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
	want := []records.RegionCount{
		{Municipality: sapporo, Records: 3, KeyVersion: 1, Created: fixedNow},
		{Municipality: asahikawa, Records: 6, KeyVersion: 1, Created: fixedNow},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Counts = %+v, want %+v", got, want)
	}
}

func TestRewrap(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	oldPath := filepath.Join(dir, "old.key")
	newPath := filepath.Join(dir, "new.key")
	oldKey, err := records.GenerateMasterKeyFile(oldPath)
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, openDB(t, filepath.Join(dir, "records.db")))
	v, err := records.Open(ctx, b, oldKey, records.Options{})
	if err != nil {
		t.Fatal(err)
	}
	importDemo(t, v, asahikawa, sapporo)

	// A wrong "old" key changes nothing and leaves no new key file.
	wrongPath := filepath.Join(dir, "wrong.key")
	if _, err := records.GenerateMasterKeyFile(wrongPath); err != nil {
		t.Fatal(err)
	}
	if _, _, err := records.RotateMasterKeyFile(ctx, b, wrongPath, newPath, operator, fixedNow); !errors.Is(err, records.ErrWrongMasterKey) {
		t.Fatalf("rotate from the wrong key: %v", err)
	}
	if _, err := os.Stat(newPath); !os.IsNotExist(err) {
		t.Errorf("failed rotation left the new key file (%v)", err)
	}

	newKey, n, err := records.RotateMasterKeyFile(ctx, b, oldPath, newPath, operator, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("re-wrapped %d regions, want 2", n)
	}
	if _, err := records.Open(ctx, b, oldKey, records.Options{}); !errors.Is(err, records.ErrWrongMasterKey) {
		t.Errorf("Open with the old key after rotation: %v", err)
	}
	v2, err := records.Open(ctx, b, newKey, records.Options{})
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
	if last.Kind != records.OpRewrap || last.Records != 2 || last.MasterKeyID != newKey.ID() || last.Operator != operator {
		t.Errorf("rotation log entry = %+v", last)
	}
	if _, err := records.Rewrap(ctx, b, newKey, newKey, operator, fixedNow); err == nil {
		t.Error("Rewrap to the same key succeeded")
	}
}

// After imports, flag changes and a changes file, the database file holds
// no personal field in clear.
func TestNoPlaintextInDatabaseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records.db")
	db, err := boltfile.Open(path, boltfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := records.Open(t.Context(), newBackend(t, db), randomMaster(t), records.Options{})
	if err != nil {
		t.Fatal(err)
	}
	importDemo(t, v, asahikawa, sapporo)
	hanako := demoEntries(t, asahikawa)[0]
	if _, err := v.SetFlag(t.Context(), asahikawa, hanako.MyNumber, operator, records.FlagChange{Kind: records.FlagDeceased, Date: "2024-03-01"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Import(t.Context(), sapporo, demoEntries(t, sapporo), changes()); err != nil {
		t.Fatal(err)
	}
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
// more (shorter ones could occur by chance in ciphertext) found in raw.
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
	return found, checked
}

func TestRecordsRedacted(t *testing.T) {
	e := demoEntries(t, asahikawa)[0]
	e.Record.Flags = records.Flags{CounterOnly: records.CounterSupportMeasure, DeceasedOn: "2024-01-02"}
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "record", e.Record, "entry", e, "flags", e.Record.Flags)
	outputs := []string{
		fmt.Sprintf("%v", e.Record.Flags), fmt.Sprintf("%+v", e.Record.Flags), fmt.Sprintf("%#v", e.Record.Flags),
		fmt.Sprintf("%v", e.Record), fmt.Sprintf("%+v", e.Record), fmt.Sprintf("%#v", e.Record),
		fmt.Sprintf("%v", e), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e),
		fmt.Sprint([]records.Entry{e}), logBuf.String(),
	}
	for _, out := range outputs {
		for _, secret := range []string{e.MyNumber, e.Record.Name, e.Record.BirthDate, e.Record.PassportNumber, "support_measure", "2024-01-02"} {
			if strings.Contains(out, secret) {
				t.Errorf("formatted output %q contains personal data", out)
			}
		}
	}
}

func TestRecordValidation(t *testing.T) {
	base := func() records.Record { return demoEntries(t, asahikawa)[1].Record } // taro, 7 doses, last 2023-10-20
	tests := []struct {
		name   string
		mutate func(*records.Record)
		field  string
	}{
		{"valid", func(*records.Record) {}, ""},
		{"valid with flags", func(r *records.Record) {
			r.Flags = records.Flags{CounterOnly: records.CounterTravelDocument, DeceasedOn: "2024-02-01", MovedOutOn: "2024-01-01"}
		}, ""},
		{"bad municipality", func(r *records.Record) { r.Municipality = "012040" }, "municipality"},
		{"no resident number", func(r *records.Record) { r.ResidentNumber = "" }, "residentNumber"},
		{"resident number with letter", func(r *records.Record) { r.ResidentNumber = "00001234A" }, "residentNumber"},
		{"no name", func(r *records.Record) { r.Name = "" }, "name"},
		{"name with newline", func(r *records.Record) { r.Name = "試験\n太郎" }, "name"},
		{"name with an undecodable byte", func(r *records.Record) { r.Name = "試験\uFFFD太郎" }, "name"},
		{"name too long", func(r *records.Record) { r.Name = strings.Repeat("試", 40) }, "name"},
		{"hiragana kana", func(r *records.Record) { r.NameKana = "しけん　たろう" }, "nameKana"},
		{"lower-case roman", func(r *records.Record) { r.RomanFamily = "Shiken" }, "romanFamily"},
		{"given without family", func(r *records.Record) { r.RomanFamily, r.PassportNumber = "", "" }, "romanFamily"},
		{"30 February", func(r *records.Record) { r.BirthDate = "1942-02-30" }, "birthDate"},
		{"slashes", func(r *records.Record) { r.BirthDate = "1942/11/30" }, "birthDate"},
		{"sex 3", func(r *records.Record) { r.Sex = "3" }, "sex"},
		{"nationality lower-case", func(r *records.Record) { r.Nationality = "jpn" }, "nationality"},
		{"passport without nationality", func(r *records.Record) { r.Nationality = "" }, "nationality"},
		{"passport too long", func(r *records.Record) { r.PassportNumber = "TR76543210123" }, "passportNumber"},
		{"no doses", func(r *records.Record) { r.Doses = nil }, "doses"},
		{"eleven doses", func(r *records.Record) {
			for i := 8; i <= 11; i++ {
				r.Doses = append(r.Doses, records.Dose{Number: i, Date: "2024-01-01", Product: "comirnaty", Manufacturer: "x", Lot: "L1", VaccineType: "x"})
			}
		}, "doses"},
		{"repeated dose number", func(r *records.Record) { r.Doses[1].Number = 1 }, "dose.number"},
		{"dose before previous", func(r *records.Record) { r.Doses[1].Date = "2021-05-01" }, "dose.date"},
		{"dose before 2021-02-17", func(r *records.Record) { r.Doses[0].Date = "2020-12-31" }, "dose.date"},
		{"product with capitals", func(r *records.Record) { r.Doses[0].Product = "Comirnaty" }, "dose.product"},
		{"lot too long", func(r *records.Record) { r.Doses[0].Lot = strings.Repeat("A", 21) }, "dose.lot"},
		{"lot with space", func(r *records.Record) { r.Doses[0].Lot = "EY 2173" }, "dose.lot"},
		{"no manufacturer", func(r *records.Record) { r.Doses[0].Manufacturer = "" }, "dose.manufacturer"},
		{"no vaccine type", func(r *records.Record) { r.Doses[0].VaccineType = "" }, "dose.vaccineType"},
		{"unknown counter reason", func(r *records.Record) { r.Flags.CounterOnly = 9 }, "flags.counterOnly"},
		{"deceased date not a date", func(r *records.Record) { r.Flags.DeceasedOn = "2024-13-01" }, "flags.deceasedOn"},
		{"deceased before the last dose", func(r *records.Record) { r.Flags.DeceasedOn = "2022-01-01" }, "flags.deceasedOn"},
		{"moved out before birth", func(r *records.Record) { r.Flags.MovedOutOn = "1930-01-01" }, "flags.movedOutOn"},
		{"operator bit without the flag", func(r *records.Record) { r.Flags.ByOperator = 1 }, "flags.byOperator"},
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
			if err := r.Validate(); !errors.Is(err, records.ErrInvalidRecord) {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// Lookups run beside imports of the same region and always see a whole
// generation.
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
		for i := range 5 {
			mode := full()
			if i%2 == 1 {
				mode = changes()
			}
			if _, err := v.Import(ctx, asahikawa, entries, mode); err != nil {
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
	v, err := records.Open(ctx, newBackend(t, db), randomMaster(t), records.Options{})
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
		if err := records.CheckOperator(op); !errors.Is(err, records.ErrInvalidOperator) {
			t.Errorf("operator %q accepted", op)
		}
	}
	for _, op := range []string{"tanaka", "op-01", "t.tanaka@city.asahikawa"} {
		if err := records.CheckOperator(op); err != nil {
			t.Errorf("operator %q refused: %v", op, err)
		}
	}
}
