// Package freeport picks loopback TCP ports for test servers that must be
// told their port before they start (postgres, haproxy, ippeveprinter, a
// center instance that comes back on the same address after a kill).
//
// A port found with Listen("127.0.0.1:0") comes from the kernel's
// ephemeral range, the range every outgoing connection takes its source
// port from: under a busy test run (thousands of kiosk connections in a
// neighbouring package) one of them takes the port before the server
// binds it, and the server fails to start. These ports come from below
// that range, where only servers that name their port bind.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// floor is the lowest port handed out: above the registered ports most
// daemons on a development machine use.
const floor = 20000

// Loopback returns a TCP port on 127.0.0.1 that is free now and outside
// the ephemeral range.
func Loopback() (int, error) {
	ceiling := ephemeralLow()
	if ceiling-floor < 1000 {
		// An unusual range: fall back to the kernel's choice.
		return kernelPort()
	}
	for range 200 {
		port := floor + rand.IntN(ceiling-floor)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("freeport: no free port between %d and %d on 127.0.0.1", floor, ceiling)
}

// Addr is Loopback as "127.0.0.1:PORT".
func Addr() (string, error) {
	p, err := Loopback()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// ephemeralLow is the first port of the ephemeral range (Linux's
// ip_local_port_range; 32768, its default, elsewhere).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 || n > 65535 {
		return 32768
	}
	return n
}

func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
