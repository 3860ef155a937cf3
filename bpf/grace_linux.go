package bpf

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// membarrierCmdGlobal is MEMBARRIER_CMD_GLOBAL: the kernel implements it
// with synchronize_rcu().
const membarrierCmdGlobal = 1

// waitForReaders returns once every BPF program that was running when it
// was called has finished. Programs run in RCU read-side critical sections,
// so an RCU grace period covers them: after it, no program can still hold
// a generation number or a map value it read before the call. Map entries
// that a program may still be using are deleted only after this.
func waitForReaders() error {
	_, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0)
	if errno == 0 {
		return nil
	}
	if errors.Is(errno, unix.EINVAL) {
		// nohz_full kernels refuse MEMBARRIER_CMD_GLOBAL.
		return fmt.Errorf("wait for running BPF programs: membarrier(MEMBARRIER_CMD_GLOBAL) is refused by this kernel (booted with nohz_full?); boot without nohz_full: %w", errno)
	}
	return fmt.Errorf("wait for running BPF programs: membarrier(MEMBARRIER_CMD_GLOBAL): %w", errno)
}
