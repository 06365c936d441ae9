package demo

import "syscall"

// childProcAttr makes the child process die with this one (a test or demo
// killed mid-run leaves no daemon behind). Linux only.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
