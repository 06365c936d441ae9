//go:build !linux

package ipptest

import "syscall"

// childAttr: parent-death signals are Linux-only; elsewhere t.Cleanup
// alone stops the printer.
func childAttr() *syscall.SysProcAttr { return nil }
