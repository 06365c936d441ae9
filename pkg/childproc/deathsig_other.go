//go:build !linux

package childproc

import "os/exec"

// setDeathSignal: parent-death signals are Linux only; elsewhere the
// caller's own cleanup stops the child.
func setDeathSignal(*exec.Cmd) {}
