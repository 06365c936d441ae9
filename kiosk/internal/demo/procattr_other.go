//go:build !linux

package demo

import "syscall"

// childProcAttr has no parent-death signal outside Linux: the caller stops
// the child itself.
func childProcAttr() *syscall.SysProcAttr { return nil }
