//go:build windows

package identity

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/windowstpm"
)

// openTPM opens the TPM through Windows' TPM Base Services; the path is
// not used there.
func openTPM(string) (transport.TPMCloser, error) {
	t, err := windowstpm.Open()
	if err != nil {
		return nil, fmt.Errorf("identity: open the TPM: %w", err)
	}
	return t, nil
}
