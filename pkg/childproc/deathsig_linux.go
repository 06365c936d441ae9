package childproc

import (
	"os/exec"
	"syscall"
)

// setDeathSignal asks the kernel to SIGKILL the child when this process
// dies, unless the caller chose another signal.
func setDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
}
