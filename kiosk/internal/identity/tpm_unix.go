//go:build !windows

package identity

import (
	"fmt"
	"os"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// openTPM opens a TPM device (/dev/tpmrm0, through the kernel's resource
// manager) or a software TPM's Unix socket (swtpm, for tests).
func openTPM(path string) (transport.TPMCloser, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("identity: TPM: %w", err)
	}
	var t transport.TPMCloser
	if fi.Mode()&os.ModeSocket != 0 {
		t, err = linuxudstpm.Open(path)
	} else {
		t, err = linuxtpm.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: open the TPM at %s: %w", path, err)
	}
	return t, nil
}
