package ipptest

import "syscall"

// childAttr makes the kernel kill the printer if the test binary dies
// without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
