package pgmigrate

import (
	"strings"
	"testing"
	"testing/fstest"
)

// Migration files are numbered 1, 2, 3… and named NNNN_name.sql; anything
// else is refused before it reaches a database.
func TestList(t *testing.T) {
	file := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }
	tests := []struct {
		name  string
		files fstest.MapFS
		want  []string // names, in order
		err   string
	}{
		{"numbers sorted, then a gap", fstest.MapFS{"m/0002_b.sql": file("B"), "m/0001_a.sql": file("A"), "m/0010_j.sql": nil}, nil, "not numbered"},
		{"two", fstest.MapFS{"m/0002_b.sql": file("B"), "m/0001_a.sql": file("A")}, []string{"0001_a.sql", "0002_b.sql"}, ""},
		{"gap", fstest.MapFS{"m/0001_a.sql": file("A"), "m/0003_c.sql": file("C")}, nil, "not numbered"},
		{"duplicate number", fstest.MapFS{"m/0001_a.sql": file("A"), "m/0001_b.sql": file("B")}, nil, "not numbered"},
		{"no number", fstest.MapFS{"m/init.sql": file("A")}, nil, "NNNN_name.sql"},
		{"not sql", fstest.MapFS{"m/0001_a.txt": file("A")}, nil, "NNNN_name.sql"},
		{"empty", fstest.MapFS{"m/.keep": nil}, nil, "NNNN_name.sql"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.files {
				if v == nil {
					tc.files[k] = file("")
				}
			}
			s := Set{Name: "test", FS: tc.files, Dir: "m", Table: "t"}
			ms, err := s.List()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("List = %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, m := range ms {
				got = append(got, m.Name)
				if m.Version != i+1 || m.SQL == "" {
					t.Errorf("migration %d: %+v", i, m)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") || s.Version() != len(tc.want) {
				t.Errorf("List = %v (version %d), want %v", got, s.Version(), tc.want)
			}
		})
	}
}
