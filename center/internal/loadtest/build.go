package loadtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildCenter builds the issuance-center command into dir as it is
// deployed (CGO_ENABLED=0) and returns its path. It builds from the module
// the go command finds from the working directory (tests run inside it).
func BuildCenter(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("loadtest: the go command is not in PATH: %w", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("loadtest: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("loadtest: not inside the kioskcert module")
	}
	bin := filepath.Join(dir, "issuance-center")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./center/cmd/issuance-center")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("loadtest: build the issuance center: %w\n%s", err, out)
	}
	return bin, nil
}
