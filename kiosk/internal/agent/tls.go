package agent

import (
	"crypto/x509"
	"fmt"
	"os"
)

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: center CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("agent: %s holds no PEM certificate", path)
	}
	return pool, nil
}
