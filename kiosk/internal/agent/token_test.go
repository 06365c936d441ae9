//go:build !windows

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadTokenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "integrator.token")
	tok, err := LoadToken(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 43 || strings.ContainsAny(tok, "+/= \n") {
		t.Errorf("token %q: want 43 base64url characters", tok)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("created with mode %04o, want 0600", perm)
	}
	again, err := LoadToken(path)
	if err != nil || again != tok {
		t.Errorf("second load: %q, %v; want the same token", again, err)
	}
	other, err := LoadToken(filepath.Join(t.TempDir(), "other.token"))
	if err != nil || other == tok {
		t.Errorf("a second file's token: %q, %v", other, err)
	}
}

func TestLoadTokenRefusesLooseOrBadFiles(t *testing.T) {
	good := strings.Repeat("k", 40) + "\n"
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		dir     bool
		want    error
	}{
		{"group readable", good, 0o640, false, ErrTokenFilePermissions},
		{"world readable", good, 0o644, false, ErrTokenFilePermissions},
		{"group writable", good, 0o620, false, ErrTokenFilePermissions},
		{"owner read only", good, 0o400, false, nil},
		{"short token", "z9Qx7\n", 0o600, false, nil},
		{"two tokens", strings.Repeat("k", 40) + " " + strings.Repeat("j", 40), 0o600, false, nil},
		{"directory", "", 0o700, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "integrator.token")
			if tc.dir {
				if err := os.Mkdir(path, tc.mode); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			tok, err := LoadToken(path)
			switch {
			case tc.name == "owner read only":
				if err != nil || tok != strings.TrimSpace(good) {
					t.Errorf("got %q, %v", tok, err)
				}
			case tc.want != nil:
				if !errors.Is(err, tc.want) {
					t.Errorf("got %v, want %v", err, tc.want)
				}
			default:
				if err == nil {
					t.Errorf("accepted (token %q)", tok)
				}
			}
			if err != nil && strings.Contains(err.Error(), strings.TrimSpace(tc.content)) && tc.content != "" {
				t.Errorf("error %q repeats the file's content", err)
			}
		})
	}
}

func TestLoadTokenMissingDirectory(t *testing.T) {
	if _, err := LoadToken(filepath.Join(t.TempDir(), "no", "such", "dir", "token")); err == nil {
		t.Fatal("created a token in a directory that does not exist")
	}
}
