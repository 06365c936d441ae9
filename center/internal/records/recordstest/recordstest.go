// Package recordstest is the conformance suite every records.Backend runs,
// so the bbolt backend and a PostgreSQL one behave the same wherever the
// Vault relies on them: generations, staging and promotion, overlays and
// their merge, compare-and-swap updates, deletion, garbage, rotation, the
// log, and all of it under concurrent callers.
//
// A backend's test calls Run with a function returning a new, empty
// backend:
//
//	func TestConformance(t *testing.T) {
//		recordstest.Run(t, func(t *testing.T) records.Backend { return openEmpty(t) })
//	}
//
// The suite stores arbitrary bytes: a backend must never interpret keys or
// values.
package recordstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kioskcert/kioskcert/center/internal/records"
)

// Factory returns a new, empty backend for one subtest; the factory
// arranges its cleanup.
type Factory func(t *testing.T) records.Backend

// Run runs the conformance suite against backends made by newBackend.
func Run(t *testing.T, newBackend Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b records.Backend)
	}{
		{"Init", testInit},
		{"NoRegion", testNoRegion},
		{"StageAndCreate", testStageAndCreate},
		{"StageRunOrder", testStageRunOrder},
		{"Conflicts", testConflicts},
		{"CheckOnly", testCheckOnly},
		{"JoinWithBase", testJoinWithBase},
		{"ReplaceRegion", testReplaceRegion},
		{"OverlayAndMerge", testOverlayAndMerge},
		{"PromoteExpectations", testPromoteExpectations},
		{"Update", testUpdate},
		{"UpdateDuringOverlay", testUpdateDuringOverlay},
		{"DeleteRegion", testDeleteRegion},
		{"GarbageAndDrop", testGarbageAndDrop},
		{"Rewrap", testRewrap},
		{"CallerOwnsSlices", testCallerOwnsSlices},
		{"CancelledContext", testCancelledContext},
		{"ConcurrentLookupsDuringImports", testConcurrentLookupsDuringImports},
		{"ConcurrentUpdatesAndMerge", testConcurrentUpdatesAndMerge},
		{"ConcurrentStaging", testConcurrentStaging},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newBackend(t))
		})
	}
}

const (
	codeA = "012041"
	codeB = "011002"
)

var base = time.Date(2024, 4, 1, 9, 30, 0, 123456000, time.UTC)

// base0Time is base, for tests whose variables shadow it.
var base0Time = base

func key(seed string) []byte {
	// Fixed, distinct 32-byte keys spread over the key space like HMACs.
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i*31) ^ byte(len(seed))
	}
	for i, c := range []byte(seed) {
		k[i%32] ^= c * byte(i+7)
		k[(i*13)%32] += c
	}
	return k
}

func randomKey(t testing.TB) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func val(s string) []byte { return []byte("sealed:" + s) }

func op(kind records.OperationKind, code string) records.Operation {
	return records.Operation{Kind: kind, Municipality: code, At: base, Operator: "op-test"}
}

func region(code string, version uint32) *records.RegionState {
	return &records.RegionState{Code: code, ID: []byte(fmt.Sprintf("id-%s-%d", code, version)), KeyVersion: version, KeyEntry: []byte("wrapped-" + code)}
}

func sorted(items []records.Staged) []records.Staged {
	out := slices.Clone(items)
	slices.SortStableFunc(out, func(a, b records.Staged) int { return bytes.Compare(a.Key, b.Key) })
	return out
}

// stageBuilt stages items (records) in runs of at most runLen, plus the
// unique items, and finishes with a build, failing on any conflict.
func stageBuilt(t *testing.T, b records.Backend, code string, items []records.Staged, runLen int) records.Generation {
	t.Helper()
	ctx := context.Background()
	g, err := b.BeginStaging(ctx, code, base)
	must(t, "BeginStaging", err)
	for start := 0; start < len(items); start += runLen {
		end := min(start+runLen, len(items))
		must(t, "StageRun", b.StageRun(ctx, g, records.RunRecords, sorted(items[start:end]), base))
	}
	res, err := b.FinishStaging(ctx, g, records.Finish{Build: true})
	must(t, "FinishStaging", err)
	if len(res.Conflicts) != 0 {
		t.Fatalf("unexpected conflicts %+v", res.Conflicts)
	}
	return g
}

// create makes a region from items.
func create(t *testing.T, b records.Backend, code string, items []records.Staged) records.RegionState {
	t.Helper()
	g := stageBuilt(t, b, code, items, 3)
	_, err := b.Promote(context.Background(), records.Promotion{Code: code, Gen: g, Create: region(code, 1), Records: int64(len(items)), Log: op(records.OpImport, code)})
	must(t, "Promote", err)
	st, err := b.Region(context.Background(), code)
	must(t, "Region", err)
	return st
}

func items(prefix string, n int) []records.Staged {
	out := make([]records.Staged, n)
	for i := range out {
		s := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = records.Staged{Key: key(s), Value: val(s), Ref: uint64(i + 1)}
	}
	return out
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}

func get(t *testing.T, b records.Backend, st records.RegionState, k []byte) ([]byte, error) {
	t.Helper()
	return b.Get(context.Background(), st.Code, st.ID, k)
}

func testInit(t *testing.T, b records.Backend) {
	ctx := context.Background()
	first := records.Meta{Format: 2, MasterCheck: []byte("check-1"), MasterID: "id-1"}
	got, err := b.Init(ctx, first)
	must(t, "Init", err)
	if got.Format != 2 || !bytes.Equal(got.MasterCheck, first.MasterCheck) || got.MasterID != "id-1" {
		t.Errorf("first Init returned %+v", got)
	}
	got, err = b.Init(ctx, records.Meta{Format: 9, MasterCheck: []byte("other"), MasterID: "id-2"})
	must(t, "second Init", err)
	if got.Format != 2 || got.MasterID != "id-1" {
		t.Errorf("second Init replaced the stored metadata: %+v", got)
	}
}

func testNoRegion(t *testing.T, b records.Backend) {
	ctx := context.Background()
	_, err := b.Region(ctx, codeA)
	mustIs(t, "Region", err, records.ErrNoRegion)
	_, err = b.Get(ctx, codeA, []byte("id"), key("x"))
	mustIs(t, "Get", err, records.ErrNoRegion)
	_, err = b.Update(ctx, records.RecordUpdate{Code: codeA, ID: []byte("id"), Key: key("x"), Old: val("x"), New: val("y"), Log: op(records.OpFlagSet, codeA)})
	mustIs(t, "Update", err, records.ErrNoRegion)
	_, err = b.DeleteRegion(ctx, codeA, []byte("id"), op(records.OpDelete, codeA))
	mustIs(t, "DeleteRegion", err, records.ErrNoRegion)
	v, err := b.LastKeyVersion(ctx, codeA)
	must(t, "LastKeyVersion", err)
	if v != 0 {
		t.Errorf("LastKeyVersion = %d, want 0", v)
	}
	rs, err := b.Regions(ctx)
	must(t, "Regions", err)
	if len(rs) != 0 {
		t.Errorf("Regions = %+v", rs)
	}
	g, err := b.Merge(ctx, codeA, []byte("id"))
	if g != 0 || !errors.Is(err, records.ErrNoRegion) {
		t.Errorf("Merge = %d, %v; want 0, ErrNoRegion", g, err)
	}
}

func testStageAndCreate(t *testing.T, b records.Backend) {
	ctx := context.Background()
	all := items("a", 25)
	g := stageBuilt(t, b, codeA, all, 4)
	// Not visible before promotion.
	_, err := b.Region(ctx, codeA)
	mustIs(t, "Region before Promote", err, records.ErrNoRegion)
	logged, err := b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, Create: region(codeA, 1), Records: 25, Log: op(records.OpImport, codeA)})
	must(t, "Promote", err)
	if logged.Seq == 0 || logged.Kind != records.OpImport {
		t.Errorf("Promote logged %+v", logged)
	}
	st, err := b.Region(ctx, codeA)
	must(t, "Region", err)
	want := region(codeA, 1)
	if st.Code != codeA || !bytes.Equal(st.ID, want.ID) || st.KeyVersion != 1 || !bytes.Equal(st.KeyEntry, want.KeyEntry) || st.Active != g || st.Overlay != 0 || st.Records != 25 {
		t.Errorf("Region = %+v", st)
	}
	for _, it := range all {
		v, err := get(t, b, st, it.Key)
		must(t, "Get", err)
		if !bytes.Equal(v, it.Value) {
			t.Fatalf("Get returned another value")
		}
	}
	_, err = get(t, b, st, key("absent"))
	mustIs(t, "Get absent", err, records.ErrNoRecord)
	_, err = b.Get(ctx, codeA, []byte("another-id"), all[0].Key)
	mustIs(t, "Get with another id", err, records.ErrNoRegion)
	v, err := b.LastKeyVersion(ctx, codeA)
	if err != nil || v != 1 {
		t.Errorf("LastKeyVersion = %d, %v", v, err)
	}
	log, err := b.Log(ctx)
	must(t, "Log", err)
	if len(log) != 1 || log[0].Seq != logged.Seq || log[0].Kind != records.OpImport || !log[0].At.Equal(base) {
		t.Errorf("Log = %+v", log)
	}
	// A second region is separate.
	create(t, b, codeB, items("b", 3))
	rs, err := b.Regions(ctx)
	must(t, "Regions", err)
	if len(rs) != 2 || rs[0].Code != codeB || rs[1].Code != codeA {
		t.Errorf("Regions not ordered by code: %+v", rs)
	}
	_, err = get(t, b, rs[0], all[0].Key)
	mustIs(t, "Get of A's key in B", err, records.ErrNoRecord)
}

func testStageRunOrder(t *testing.T, b records.Backend) {
	ctx := context.Background()
	g, err := b.BeginStaging(ctx, codeA, base)
	must(t, "BeginStaging", err)
	unsorted := []records.Staged{{Key: []byte{9}, Value: val("9")}, {Key: []byte{1}, Value: val("1")}}
	if err := b.StageRun(ctx, g, records.RunRecords, unsorted, base); err == nil {
		t.Error("StageRun accepted an unsorted run")
	}
	must(t, "empty run", b.StageRun(ctx, g, records.RunRecords, nil, base))
}

func testConflicts(t *testing.T, b records.Backend) {
	ctx := context.Background()
	g, err := b.BeginStaging(ctx, codeA, base)
	must(t, "BeginStaging", err)
	// Person p2 twice in one run and again in another; p5 across runs.
	run1 := []records.Staged{
		{Key: key("p1"), Value: val("1"), Ref: 1},
		{Key: key("p2"), Value: val("2"), Ref: 4},
		{Key: key("p2"), Value: val("2b"), Ref: 9},
	}
	run2 := []records.Staged{
		{Key: key("p2"), Value: val("2c"), Ref: 2},
		{Key: key("p5"), Value: val("5"), Ref: 20},
	}
	run3 := []records.Staged{{Key: key("p5"), Value: nil, Ref: 30}}
	for _, r := range [][]records.Staged{run1, run2, run3} {
		must(t, "StageRun", b.StageRun(ctx, g, records.RunRecords, sorted(r), base))
	}
	unique := []records.Staged{
		{Key: []byte("resident-7"), Value: []byte("tag-a"), Ref: 1},
		{Key: []byte("resident-7"), Value: []byte("tag-b"), Ref: 20},
		{Key: []byte("resident-8"), Value: []byte("tag-c"), Ref: 4},
	}
	must(t, "StageRun unique", b.StageRun(ctx, g, records.RunUnique, sorted(unique), base))
	var progressCalls int
	res, err := b.FinishStaging(ctx, g, records.Finish{Build: true, Progress: func(done, total int64) {
		progressCalls++
		if done > total || total != 9 {
			t.Errorf("progress %d of %d", done, total)
		}
	}})
	must(t, "FinishStaging", err)
	if progressCalls == 0 {
		t.Error("no progress reported")
	}
	if res.Records != 5 || res.Removals != 1 {
		t.Errorf("counts %d records %d removals, want 5 and 1", res.Records, res.Removals)
	}
	type c struct {
		kind       records.RunKind
		first, ref uint64
	}
	var got []c
	for _, x := range res.Conflicts {
		got = append(got, c{x.Kind, x.FirstRef, x.Ref})
		if x.Kind == records.RunUnique && (string(x.FirstValue) != "tag-a" || string(x.Value) != "tag-b") {
			t.Errorf("unique conflict values %q, %q", x.FirstValue, x.Value)
		}
	}
	slices.SortFunc(got, func(a, b c) int { return int(a.ref) - int(b.ref) })
	want := []c{{records.RunRecords, 2, 4}, {records.RunRecords, 2, 9}, {records.RunUnique, 1, 20}, {records.RunRecords, 20, 30}}
	if !slices.Equal(got, want) {
		t.Errorf("conflicts %+v, want %+v", got, want)
	}
	// With conflicts nothing was built: the generation cannot be promoted.
	_, err = b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, Create: region(codeA, 1), Records: 3, Log: op(records.OpImport, codeA)})
	mustIs(t, "Promote after conflicts", err, records.ErrStaging)
	_, err = b.Region(ctx, codeA)
	mustIs(t, "Region", err, records.ErrNoRegion)
	must(t, "Drop", b.Drop(ctx, g))

	// MaxConflicts caps the list.
	g, _ = b.BeginStaging(ctx, codeA, base)
	many := make([]records.Staged, 10)
	for i := range many {
		many[i] = records.Staged{Key: key("same"), Value: val("x"), Ref: uint64(i + 1)}
	}
	must(t, "StageRun", b.StageRun(ctx, g, records.RunRecords, many, base))
	res, err = b.FinishStaging(ctx, g, records.Finish{Build: true, MaxConflicts: 3})
	must(t, "FinishStaging", err)
	if len(res.Conflicts) != 3 || res.MoreConflicts != 6 {
		t.Errorf("listed %d, more %d; want 3 and 6", len(res.Conflicts), res.MoreConflicts)
	}
	for _, x := range res.Conflicts {
		if x.FirstRef != 1 {
			t.Errorf("conflict's first ref %d, want 1 (the earliest)", x.FirstRef)
		}
	}
}

func testCheckOnly(t *testing.T, b records.Backend) {
	ctx := context.Background()
	g, err := b.BeginStaging(ctx, codeA, base)
	must(t, "BeginStaging", err)
	must(t, "StageRun", b.StageRun(ctx, g, records.RunRecords, sorted(items("c", 10)), base))
	res, err := b.FinishStaging(ctx, g, records.Finish{Build: false})
	must(t, "FinishStaging", err)
	if res.Records != 10 || len(res.Conflicts) != 0 {
		t.Errorf("check-only result %+v", res)
	}
	_, err = b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, Create: region(codeA, 1), Records: 10, Log: op(records.OpImport, codeA)})
	mustIs(t, "Promote of a checked-only generation", err, records.ErrStaging)
}

func testReplaceRegion(t *testing.T, b records.Backend) {
	ctx := context.Background()
	old := items("old", 12)
	st := create(t, b, codeA, old)
	newer := append(items("new", 5), old[0])
	newer[5].Value = val("changed")
	g := stageBuilt(t, b, codeA, newer, 2)
	_, err := b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, ExpectID: st.ID, ExpectSerial: st.Serial, Records: 6, Log: op(records.OpImport, codeA)})
	must(t, "Promote", err)
	st2, err := b.Region(ctx, codeA)
	must(t, "Region", err)
	if st2.Active != g || st2.Records != 6 || st2.Serial <= st.Serial || !bytes.Equal(st2.ID, st.ID) {
		t.Errorf("state after replacement %+v (before %+v)", st2, st)
	}
	v, err := get(t, b, st2, old[0].Key)
	if err != nil || string(v) != string(val("changed")) {
		t.Errorf("replaced record: %q, %v", v, err)
	}
	_, err = get(t, b, st2, old[1].Key)
	mustIs(t, "record not in the new ledger", err, records.ErrNoRecord)
	garbage, err := b.Garbage(ctx, base)
	must(t, "Garbage", err)
	if !slices.Contains(garbage, st.Active) {
		t.Errorf("Garbage %v lacks the replaced generation %d", garbage, st.Active)
	}
	if slices.Contains(garbage, g) {
		t.Errorf("Garbage lists the live generation %d", g)
	}
	must(t, "Drop", b.Drop(ctx, st.Active))
	if err := b.Drop(ctx, g); err == nil {
		t.Error("Drop of the live generation succeeded")
	}
	v, err = get(t, b, st2, newer[2].Key)
	if err != nil || !bytes.Equal(v, newer[2].Value) {
		t.Errorf("record after dropping the old generation: %q, %v", v, err)
	}
}

func testOverlayAndMerge(t *testing.T, b records.Backend) {
	ctx := context.Background()
	base0 := items("m", 40)
	st := create(t, b, codeA, base0)
	changes := []records.Staged{
		{Key: base0[0].Key, Value: val("m-0 changed"), Ref: 1},
		{Key: base0[1].Key, Value: nil, Ref: 2},
		{Key: key("m-new"), Value: val("m-new"), Ref: 3},
		{Key: key("m-never"), Value: nil, Ref: 4}, // removing an absent key
	}
	g := stageBuilt(t, b, codeA, changes, 2)
	_, err := b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, Overlay: true, ExpectID: st.ID, ExpectSerial: st.Serial, Records: 40, Log: op(records.OpImport, codeA)})
	must(t, "Promote overlay", err)
	st2, err := b.Region(ctx, codeA)
	must(t, "Region", err)
	if st2.Overlay != g || st2.Active != st.Active || st2.Records != 40 {
		t.Fatalf("state with overlay %+v", st2)
	}
	check := func(when string, st records.RegionState) {
		t.Helper()
		v, err := get(t, b, st, base0[0].Key)
		if err != nil || string(v) != string(val("m-0 changed")) {
			t.Errorf("%s: changed record %q, %v", when, v, err)
		}
		_, err = get(t, b, st, base0[1].Key)
		mustIs(t, when+": removed record", err, records.ErrNoRecord)
		_, err = get(t, b, st, key("m-never"))
		mustIs(t, when+": never-present record", err, records.ErrNoRecord)
		v, err = get(t, b, st, key("m-new"))
		if err != nil || string(v) != string(val("m-new")) {
			t.Errorf("%s: added record %q, %v", when, v, err)
		}
		v, err = get(t, b, st, base0[39].Key)
		if err != nil || !bytes.Equal(v, base0[39].Value) {
			t.Errorf("%s: untouched record %q, %v", when, v, err)
		}
	}
	check("overlaid", st2)
	// A second overlay must wait for the merge.
	g2 := stageBuilt(t, b, codeA, items("later", 1), 1)
	_, err = b.Promote(ctx, records.Promotion{Code: codeA, Gen: g2, Overlay: true, ExpectID: st2.ID, ExpectSerial: st2.Serial, Records: 41, Log: op(records.OpImport, codeA)})
	mustIs(t, "second overlay before the merge", err, records.ErrConflict)

	merged, err := b.Merge(ctx, codeA, st2.ID)
	must(t, "Merge", err)
	if merged != g {
		t.Errorf("Merge retired %d, want %d", merged, g)
	}
	st3, err := b.Region(ctx, codeA)
	must(t, "Region", err)
	if st3.Overlay != 0 || st3.Active != st.Active || st3.Serial != st2.Serial {
		t.Errorf("state after merge %+v", st3)
	}
	check("merged", st3)
	again, err := b.Merge(ctx, codeA, st3.ID)
	if err != nil || again != 0 {
		t.Errorf("Merge without overlay = %d, %v", again, err)
	}
	garbage, _ := b.Garbage(ctx, base)
	if !slices.Contains(garbage, g) {
		t.Errorf("Garbage %v lacks the merged overlay %d", garbage, g)
	}
	must(t, "Drop overlay", b.Drop(ctx, g))
	check("dropped", st3)
	_, err = b.Promote(ctx, records.Promotion{Code: codeA, Gen: g2, Overlay: true, ExpectID: st3.ID, ExpectSerial: st3.Serial, Records: 41, Log: op(records.OpImport, codeA)})
	must(t, "second overlay after the merge", err)
}

func testPromoteExpectations(t *testing.T, b records.Backend) {
	ctx := context.Background()
	st := create(t, b, codeA, items("e", 3))
	cases := []struct {
		name string
		p    records.Promotion
		want error
	}{
		{"stale serial", records.Promotion{ExpectID: st.ID, ExpectSerial: st.Serial + 7}, records.ErrConflict},
		{"another id", records.Promotion{ExpectID: []byte("old-id"), ExpectSerial: st.Serial}, records.ErrNoRegion},
		{"create over an existing region", records.Promotion{Create: region(codeA, 2)}, records.ErrConflict},
	}
	for _, tc := range cases {
		g := stageBuilt(t, b, codeA, items("x", 2), 2)
		p := tc.p
		p.Code, p.Gen, p.Records, p.Log = codeA, g, 2, op(records.OpImport, codeA)
		_, err := b.Promote(ctx, p)
		mustIs(t, tc.name, err, tc.want)
		must(t, "Drop", b.Drop(ctx, g))
	}
	// A new region must be at the next key version.
	g := stageBuilt(t, b, codeB, items("y", 1), 1)
	_, err := b.Promote(ctx, records.Promotion{Code: codeB, Gen: g, Create: region(codeB, 3), Records: 1, Log: op(records.OpImport, codeB)})
	mustIs(t, "create at a skipped version", err, records.ErrConflict)
	// A staging generation of another municipality cannot be promoted here.
	_, err = b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, ExpectID: st.ID, ExpectSerial: st.Serial, Records: 1, Log: op(records.OpImport, codeA)})
	mustIs(t, "another municipality's generation", err, records.ErrStaging)
	_, err = b.Promote(ctx, records.Promotion{Code: codeB, Gen: g, Create: region(codeB, 1), Records: 1, Log: op(records.OpImport, codeB)})
	must(t, "create at version 1", err)
	_, err = b.Promote(ctx, records.Promotion{Code: codeB, Gen: g, Create: region(codeB, 1), Records: 1, Log: op(records.OpImport, codeB)})
	if err == nil {
		t.Error("a generation was promoted twice")
	}
	// Nothing changed in A.
	st2, _ := b.Region(ctx, codeA)
	if st2.Active != st.Active || st2.Serial != st.Serial {
		t.Errorf("failed promotions changed the region: %+v", st2)
	}
}

func testUpdate(t *testing.T, b records.Backend) {
	ctx := context.Background()
	all := items("u", 5)
	st := create(t, b, codeA, all)
	u := records.RecordUpdate{Code: codeA, ID: st.ID, Key: all[2].Key, Old: all[2].Value, New: val("u-2 flagged"), Log: op(records.OpFlagSet, codeA)}
	logged, err := b.Update(ctx, u)
	must(t, "Update", err)
	if logged.Seq == 0 || logged.Kind != records.OpFlagSet {
		t.Errorf("Update logged %+v", logged)
	}
	v, err := get(t, b, st, all[2].Key)
	if err != nil || string(v) != string(val("u-2 flagged")) {
		t.Errorf("after Update: %q, %v", v, err)
	}
	st2, _ := b.Region(ctx, codeA)
	if st2.Serial != st.Serial+1 || st2.Records != 5 {
		t.Errorf("Update: serial %d → %d, records %d", st.Serial, st2.Serial, st2.Records)
	}
	_, err = b.Update(ctx, u) // Old is stale now
	mustIs(t, "Update with a stale old value", err, records.ErrConflict)
	u.Key, u.Old = key("nobody"), val("nobody")
	_, err = b.Update(ctx, u)
	mustIs(t, "Update of an absent record", err, records.ErrNoRecord)
	log, _ := b.Log(ctx)
	if len(log) != 2 {
		t.Errorf("log has %d entries, want 2 (import, one update)", len(log))
	}
}

func testUpdateDuringOverlay(t *testing.T, b records.Backend) {
	ctx := context.Background()
	all := items("o", 6)
	st := create(t, b, codeA, all)
	g := stageBuilt(t, b, codeA, []records.Staged{
		{Key: all[0].Key, Value: val("o-0 v2"), Ref: 1},
		{Key: all[1].Key, Value: nil, Ref: 2},
	}, 5)
	_, err := b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, Overlay: true, ExpectID: st.ID, ExpectSerial: st.Serial, Records: 5, Log: op(records.OpImport, codeA)})
	must(t, "Promote", err)
	up := func(k, old, new []byte) error {
		_, err := b.Update(ctx, records.RecordUpdate{Code: codeA, ID: st.ID, Key: k, Old: old, New: new, Log: op(records.OpFlagSet, codeA)})
		return err
	}
	mustIs(t, "Update against the active value hidden by the overlay", up(all[0].Key, all[0].Value, val("x")), records.ErrConflict)
	must(t, "Update of an overlaid record", up(all[0].Key, val("o-0 v2"), val("o-0 v3")))
	mustIs(t, "Update of a removed record", up(all[1].Key, all[1].Value, val("x")), records.ErrNoRecord)
	must(t, "Update of an untouched record", up(all[2].Key, all[2].Value, val("o-2 v2")))
	_, err = b.Merge(ctx, codeA, st.ID)
	must(t, "Merge", err)
	for k, want := range map[string]string{string(all[0].Key): "o-0 v3", string(all[2].Key): "o-2 v2"} {
		v, err := b.Get(ctx, codeA, st.ID, []byte(k))
		if err != nil || string(v) != string(val(want)) {
			t.Errorf("after merge: %q, %v; want %q", v, err, want)
		}
	}
}

func testDeleteRegion(t *testing.T, b records.Backend) {
	ctx := context.Background()
	all := items("d", 7)
	st := create(t, b, codeA, all)
	create(t, b, codeB, items("other", 2))
	o := op(records.OpDelete, codeA)
	o.KeyVersion = 1
	logged, err := b.DeleteRegion(ctx, codeA, st.ID, o)
	must(t, "DeleteRegion", err)
	if logged.Records != 7 || logged.Seq == 0 || logged.Kind != records.OpDelete || logged.KeyVersion != 1 {
		t.Errorf("DeleteRegion logged %+v", logged)
	}
	_, err = b.Region(ctx, codeA)
	mustIs(t, "Region after deletion", err, records.ErrNoRegion)
	_, err = get(t, b, st, all[0].Key)
	mustIs(t, "Get after deletion", err, records.ErrNoRegion)
	_, err = b.DeleteRegion(ctx, codeA, st.ID, o)
	mustIs(t, "second DeleteRegion", err, records.ErrNoRegion)
	if v, _ := b.LastKeyVersion(ctx, codeA); v != 1 {
		t.Errorf("LastKeyVersion after deletion = %d, want 1", v)
	}
	garbage, _ := b.Garbage(ctx, base)
	if !slices.Contains(garbage, st.Active) {
		t.Errorf("Garbage %v lacks the deleted region's generation", garbage)
	}
	for _, g := range garbage {
		must(t, "Drop", b.Drop(ctx, g))
	}
	// Created again at version 2; the old id reads nothing.
	g := stageBuilt(t, b, codeA, all[:2], 2)
	_, err = b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, Create: region(codeA, 2), Records: 2, Log: op(records.OpImport, codeA)})
	must(t, "re-create", err)
	_, err = get(t, b, st, all[0].Key)
	mustIs(t, "old id on the re-created region", err, records.ErrNoRegion)
	rs, _ := b.Regions(ctx)
	if len(rs) != 2 {
		t.Errorf("Regions = %+v", rs)
	}
}

func testGarbageAndDrop(t *testing.T, b records.Backend) {
	ctx := context.Background()
	stale, err := b.BeginStaging(ctx, codeA, base)
	must(t, "BeginStaging", err)
	must(t, "StageRun", b.StageRun(ctx, stale, records.RunRecords, sorted(items("s", 50)), base))
	fresh, err := b.BeginStaging(ctx, codeA, base.Add(time.Hour))
	must(t, "BeginStaging", err)
	if fresh == stale || fresh == 0 || stale == 0 {
		t.Fatalf("generations %d, %d", stale, fresh)
	}
	garbage, err := b.Garbage(ctx, base.Add(30*time.Minute))
	must(t, "Garbage", err)
	if !slices.Contains(garbage, stale) || slices.Contains(garbage, fresh) {
		t.Errorf("Garbage = %v; want %d (stale) and not %d (fresh)", garbage, stale, fresh)
	}
	// A run refreshes the heartbeat.
	must(t, "StageRun", b.StageRun(ctx, stale, records.RunRecords, sorted(items("s2", 1)), base.Add(time.Hour)))
	garbage, _ = b.Garbage(ctx, base.Add(30*time.Minute))
	if slices.Contains(garbage, stale) {
		t.Errorf("Garbage lists a staging generation with a fresh heartbeat")
	}
	must(t, "Drop staging", b.Drop(ctx, stale))
	must(t, "Drop again", b.Drop(ctx, stale))
	must(t, "Drop unknown", b.Drop(ctx, 987654))
	mustIs(t, "StageRun after Drop", b.StageRun(ctx, stale, records.RunRecords, sorted(items("s3", 1)), base), records.ErrStaging)
	_, err = b.FinishStaging(ctx, stale, records.Finish{Build: true})
	mustIs(t, "FinishStaging after Drop", err, records.ErrStaging)
	garbage, _ = b.Garbage(ctx, base.Add(48*time.Hour))
	if slices.Contains(garbage, stale) || !slices.Contains(garbage, fresh) {
		t.Errorf("Garbage after Drop = %v", garbage)
	}
}

func testRewrap(t *testing.T, b records.Backend) {
	ctx := context.Background()
	_, err := b.Init(ctx, records.Meta{Format: 2, MasterCheck: []byte("old-check"), MasterID: "old"})
	must(t, "Init", err)
	create(t, b, codeA, items("r", 2))
	create(t, b, codeB, items("r", 2))
	refuse := errors.New("wrong key")
	_, _, err = b.Rewrap(ctx, records.Rewrapping{
		Check:  func(m records.Meta) error { return refuse },
		Rewrap: func(code string, e []byte) ([]byte, error) { return []byte("never"), nil },
		Meta:   records.Meta{Format: 2, MasterCheck: []byte("new-check"), MasterID: "new"},
		Log:    op(records.OpRewrap, ""),
	})
	mustIs(t, "Rewrap refused by Check", err, refuse)
	failing := errors.New("second region fails")
	calls := 0
	_, _, err = b.Rewrap(ctx, records.Rewrapping{
		Check: func(m records.Meta) error { return nil },
		Rewrap: func(code string, e []byte) ([]byte, error) {
			if calls++; calls == 2 {
				return nil, failing
			}
			return []byte("half"), nil
		},
		Meta: records.Meta{Format: 2, MasterCheck: []byte("new-check"), MasterID: "new"},
		Log:  op(records.OpRewrap, ""),
	})
	mustIs(t, "Rewrap failing midway", err, failing)
	rs, _ := b.Regions(ctx)
	for _, r := range rs {
		if string(r.KeyEntry) != "wrapped-"+r.Code {
			t.Errorf("a failed rewrap changed %s's key entry", r.Code)
		}
	}
	var seen records.Meta
	logged, n, err := b.Rewrap(ctx, records.Rewrapping{
		Check:  func(m records.Meta) error { seen = m; return nil },
		Rewrap: func(code string, e []byte) ([]byte, error) { return append([]byte("re-"), e...), nil },
		Meta:   records.Meta{Format: 2, MasterCheck: []byte("new-check"), MasterID: "new"},
		Log:    op(records.OpRewrap, ""),
	})
	must(t, "Rewrap", err)
	if seen.MasterID != "old" || string(seen.MasterCheck) != "old-check" {
		t.Errorf("Check saw %+v", seen)
	}
	if n != 2 || logged.Records != 2 || logged.Seq == 0 {
		t.Errorf("Rewrap = %+v, %d", logged, n)
	}
	rs, _ = b.Regions(ctx)
	for _, r := range rs {
		if string(r.KeyEntry) != "re-wrapped-"+r.Code {
			t.Errorf("%s's key entry %q", r.Code, r.KeyEntry)
		}
	}
	m, _ := b.Init(ctx, records.Meta{Format: 2, MasterID: "ignored"})
	if m.MasterID != "new" || string(m.MasterCheck) != "new-check" {
		t.Errorf("metadata after rewrap %+v", m)
	}
}

func testCallerOwnsSlices(t *testing.T, b records.Backend) {
	ctx := context.Background()
	all := items("own", 2)
	st := create(t, b, codeA, all)
	v, _ := get(t, b, st, all[0].Key)
	clear(v)
	st.ID[0] ^= 0xff
	st.KeyEntry[0] ^= 0xff
	st2, _ := b.Region(ctx, codeA)
	v2, err := get(t, b, st2, all[0].Key)
	if err != nil || !bytes.Equal(v2, all[0].Value) || string(st2.KeyEntry) != "wrapped-"+codeA {
		t.Errorf("changing returned slices changed the stored data: %q, %v", v2, err)
	}
}

func testCancelledContext(t *testing.T, b records.Backend) {
	st := create(t, b, codeA, items("cc", 2))
	g, err := b.BeginStaging(context.Background(), codeA, base)
	must(t, "BeginStaging", err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k := key("cc-0")
	calls := map[string]func() error{
		"Init":           func() error { _, err := b.Init(ctx, records.Meta{Format: 2}); return err },
		"Region":         func() error { _, err := b.Region(ctx, codeA); return err },
		"Regions":        func() error { _, err := b.Regions(ctx); return err },
		"LastKeyVersion": func() error { _, err := b.LastKeyVersion(ctx, codeA); return err },
		"Get":            func() error { _, err := b.Get(ctx, codeA, st.ID, k); return err },
		"Update": func() error {
			_, err := b.Update(ctx, records.RecordUpdate{Code: codeA, ID: st.ID, Key: k, Old: val("cc-0"), New: val("x"), Log: op(records.OpFlagSet, codeA)})
			return err
		},
		"BeginStaging":  func() error { _, err := b.BeginStaging(ctx, codeA, base); return err },
		"StageRun":      func() error { return b.StageRun(ctx, g, records.RunRecords, items("z", 1), base) },
		"FinishStaging": func() error { _, err := b.FinishStaging(ctx, g, records.Finish{Build: true}); return err },
		"Merge":         func() error { _, err := b.Merge(ctx, codeA, st.ID); return err },
		"DeleteRegion":  func() error { _, err := b.DeleteRegion(ctx, codeA, st.ID, op(records.OpDelete, codeA)); return err },
		"Garbage":       func() error { _, err := b.Garbage(ctx, base); return err },
		"Drop":          func() error { return b.Drop(ctx, g) },
		"Log":           func() error { _, err := b.Log(ctx); return err },
	}
	for name, call := range calls {
		mustIs(t, name, call(), context.Canceled)
	}
	v, err := get(t, b, st, k)
	if err != nil || string(v) != string(val("cc-0")) {
		t.Errorf("a cancelled call changed a record: %q, %v", v, err)
	}
	if _, err := b.Region(context.Background(), codeA); err != nil {
		t.Errorf("a cancelled DeleteRegion deleted: %v", err)
	}
}

// Lookups running beside repeated full imports of the same region always
// see one complete generation: a key's value is the old or the new one,
// and a key present in both is never missing.
func testConcurrentLookupsDuringImports(t *testing.T, b records.Backend) {
	ctx := context.Background()
	const n = 300
	gen := func(round int) []records.Staged {
		out := make([]records.Staged, n)
		for i := range out {
			out[i] = records.Staged{Key: key(fmt.Sprintf("c-%d", i)), Value: val(fmt.Sprintf("c-%d round %d", i, round)), Ref: uint64(i + 1)}
		}
		return out
	}
	st := create(t, b, codeA, gen(0))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := (i*7 + w) % n
				v, err := b.Get(ctx, codeA, st.ID, key(fmt.Sprintf("c-%d", k)))
				if err != nil {
					errs <- fmt.Errorf("lookup during imports: %w", err)
					return
				}
				if !bytes.HasPrefix(v, val(fmt.Sprintf("c-%d round ", k))) {
					errs <- errors.New("a lookup returned another key's value")
					return
				}
			}
		}()
	}
	for round := 1; round <= 4; round++ {
		cur, err := b.Region(ctx, codeA)
		must(t, "Region", err)
		g := stageBuilt(t, b, codeA, gen(round), 64)
		_, err = b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, ExpectID: cur.ID, ExpectSerial: cur.Serial, Records: n, Log: op(records.OpImport, codeA)})
		must(t, "Promote", err)
		garbage, _ := b.Garbage(ctx, base)
		for _, old := range garbage {
			must(t, "Drop", b.Drop(ctx, old))
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Updates racing a merge are never lost, and concurrent updates of one
// record serialise (exactly one of two with the same old value wins).
func testConcurrentUpdatesAndMerge(t *testing.T, b records.Backend) {
	ctx := context.Background()
	const n = 120
	all := items("cu", n)
	st := create(t, b, codeA, all)
	var over []records.Staged
	for i := 0; i < n; i += 2 {
		over = append(over, records.Staged{Key: all[i].Key, Value: val(fmt.Sprintf("cu-%d v2", i)), Ref: uint64(i + 1)})
	}
	g := stageBuilt(t, b, codeA, over, 16)
	_, err := b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, Overlay: true, ExpectID: st.ID, ExpectSerial: st.Serial, Records: n, Log: op(records.OpImport, codeA)})
	must(t, "Promote", err)
	var wg sync.WaitGroup
	wins := make([]int, n)
	var mu sync.Mutex
	errs := make(chan error, 8)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				cur, err := b.Get(ctx, codeA, st.ID, all[i].Key)
				if err != nil {
					errs <- err
					return
				}
				_, err = b.Update(ctx, records.RecordUpdate{Code: codeA, ID: st.ID, Key: all[i].Key, Old: cur, New: append(bytes.Clone(cur), byte('a'+w)), Log: op(records.OpFlagSet, codeA)})
				switch {
				case err == nil:
					mu.Lock()
					wins[i]++
					mu.Unlock()
				case !errors.Is(err, records.ErrConflict):
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := b.Merge(ctx, codeA, st.ID); err != nil {
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := b.Merge(ctx, codeA, st.ID); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		v, err := b.Get(ctx, codeA, st.ID, all[i].Key)
		must(t, "Get", err)
		want := all[i].Value
		if i%2 == 0 {
			want = val(fmt.Sprintf("cu-%d v2", i))
		}
		suffix := len(v) - len(want)
		if !bytes.HasPrefix(v, want) || suffix != wins[i] || wins[i] < 1 {
			t.Fatalf("record %d: %q after %d successful updates (an update lost, or applied twice)", i, v, wins[i])
		}
	}
}

func testConcurrentStaging(t *testing.T, b records.Backend) {
	ctx := context.Background()
	var wg sync.WaitGroup
	gens := make([]records.Generation, 8)
	errs := make(chan error, len(gens))
	for i := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := b.BeginStaging(ctx, codeA, base)
			if err != nil {
				errs <- err
				return
			}
			gens[i] = g
			var run []records.Staged
			for j := range 20 {
				run = append(run, records.Staged{Key: randomKey(t), Value: val(fmt.Sprint(i, j)), Ref: uint64(j + 1)})
			}
			if err := b.StageRun(ctx, g, records.RunRecords, sorted(run), base); err != nil {
				errs <- err
				return
			}
			res, err := b.FinishStaging(ctx, g, records.Finish{Build: true})
			if err != nil || res.Records != 20 {
				errs <- fmt.Errorf("FinishStaging: %+v, %v", res, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(gens)
	if len(slices.Compact(slices.Clone(gens))) != len(gens) {
		t.Fatalf("BeginStaging handed out a generation twice: %v", gens)
	}
	// Exactly one of several builds racing to create the region wins.
	var wins int
	var mu sync.Mutex
	for _, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, Create: region(codeA, 1), Records: 20, Log: op(records.OpImport, codeA)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, records.ErrConflict):
				t.Errorf("Promote: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d promotions created the region, want 1", wins)
	}
}

// A build joined with a base generation counts against it and lets Carry
// rewrite the values whose key the base holds.
func testJoinWithBase(t *testing.T, b records.Backend) {
	ctx := context.Background()
	base := items("j", 30)
	st := create(t, b, codeA, base)
	staged := []records.Staged{
		{Key: base[0].Key, Value: val("j-0 new"), Ref: 1},    // replaced, carried
		{Key: base[1].Key, Value: val("j-1 new"), Ref: 2},    // replaced, kept as staged
		{Key: key("j-fresh"), Value: val("j-fresh"), Ref: 3}, // added
		{Key: base[2].Key, Value: nil, Ref: 4},               // removed
		{Key: key("j-never"), Value: nil, Ref: 5},            // absent
	}
	g, err := b.BeginStaging(ctx, codeA, base0Time)
	must(t, "BeginStaging", err)
	must(t, "StageRun", b.StageRun(ctx, g, records.RunRecords, sorted(staged[:2]), base0Time))
	must(t, "StageRun", b.StageRun(ctx, g, records.RunRecords, sorted(staged[2:]), base0Time))
	var carried []uint64
	res, err := b.FinishStaging(ctx, g, records.Finish{Build: true, Base: st.Active, Carry: func(it records.Staged, old []byte) ([]byte, error) {
		carried = append(carried, it.Ref)
		want := base[it.Ref-1].Value
		if !bytes.Equal(old, want) {
			t.Errorf("Carry of ref %d got base value %q, want %q", it.Ref, old, want)
		}
		if it.Ref == 1 {
			return append(bytes.Clone(it.Value), " +carried"...), nil
		}
		return it.Value, nil
	}})
	must(t, "FinishStaging", err)
	slices.Sort(carried)
	if !slices.Equal(carried, []uint64{1, 2}) {
		t.Errorf("Carry called for refs %v, want [1 2]", carried)
	}
	if res.Records != 3 || res.Removals != 2 || res.Added != 1 || res.Replaced != 2 || res.Removed != 1 || res.Absent != 1 {
		t.Errorf("result %+v", res)
	}
	_, err = b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, Overlay: true, ExpectID: st.ID, ExpectSerial: st.Serial, Records: 29, Log: op(records.OpImport, codeA)})
	must(t, "Promote", err)
	for k, want := range map[string]string{"j-0": "j-0 new +carried", "j-1": "j-1 new", "j-fresh": "j-fresh", "j-3": "j-3"} {
		v, err := b.Get(ctx, codeA, st.ID, key(k))
		if err != nil || string(v) != string(val(want)) {
			t.Errorf("%s: %q, %v; want %q", k, v, err, want)
		}
	}
	// A Carry error stops the build: nothing to promote.
	g, _ = b.BeginStaging(ctx, codeA, base0Time)
	must(t, "StageRun", b.StageRun(ctx, g, records.RunRecords, sorted(base[5:8]), base0Time))
	boom := errors.New("carry failed")
	st2, _ := b.Region(ctx, codeA)
	_, err = b.FinishStaging(ctx, g, records.Finish{Build: true, Base: st2.Active, Carry: func(records.Staged, []byte) ([]byte, error) { return nil, boom }})
	mustIs(t, "FinishStaging with a failing Carry", err, boom)
	_, err = b.Promote(ctx, records.Promotion{Code: codeA, Gen: g, ExpectID: st2.ID, ExpectSerial: st2.Serial, Records: 3, Log: op(records.OpImport, codeA)})
	if err == nil {
		t.Error("a generation whose build failed was promoted")
	}
}
