package vpcd

import (
	"net"
	"syscall"
)

// quickAck asks the kernel to acknowledge received data at once. The vpcd
// driver writes each message's 2-byte length and its payload in separate
// send calls without TCP_NODELAY, so Nagle's algorithm holds the payload
// until the length is acknowledged; with Linux's delayed ACK that costs
// about 40 ms per APDU. TCP_QUICKACK is not sticky, so it is set before
// every read.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
