package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/bpf"
	"gvisor.dev/gvisor/pkg/seccomp"
)

// VMM is what a built VM's process may still do once confined, beyond the
// Go runtime and I/O on the descriptors it holds.
type VMM struct {
	// Ioctls are the ioctl requests it may issue: a running VM's KVM
	// requests, a TAP's offload setting, the terminal's mode. No other
	// request passes, on any descriptor.
	Ioctls []uintptr
	// Helpers says it has helper processes (vmm-usernet), which it may
	// kill through their pidfds (SIGKILL only) and reap. It can signal no
	// other process: kill(2) is refused, and so is a helper's kill where
	// the kernel has no pidfds (Linux < 5.3), but a helper exits by itself
	// once its socket closes.
	Helpers bool
	// LogOnly lets refused calls through and has the kernel log them
	// instead (SECCOMP_RET_LOG): for finding what the filter is missing.
	LogOnly bool
}

// vmmRules are the system calls of a VMM whose VM is built: vCPU threads
// in KVM_RUN, devices reading and writing disks, TAPs, eventfds and
// sockets they already hold, the metrics written to a file opened before,
// helper processes killed and reaped at exit. Nothing can be opened,
// created, mapped executable or executed; no socket can be made.
func vmmRules(pid int, p VMM) seccomp.SyscallRules {
	rules := runtimeRules(pid)
	more := map[uintptr]seccomp.SyscallRule{
		// Disks: positioned and vectored I/O, flushes, discard and
		// write-zeroes (fallocate), size (lseek).
		unix.SYS_PWRITE64: allow, unix.SYS_PREADV: allow, unix.SYS_PWRITEV: allow,
		unix.SYS_FDATASYNC: allow, unix.SYS_FSYNC: allow, unix.SYS_FALLOCATE: allow, unix.SYS_LSEEK: allow,
		// Metrics at exit; the CPU profiler's timers (--cpu-profile).
		unix.SYS_GETRUSAGE: allow, unix.SYS_SETITIMER: allow,
		unix.SYS_TIMER_CREATE: allow, unix.SYS_TIMER_SETTIME: allow, unix.SYS_TIMER_DELETE: allow,
	}
	if len(p.Ioctls) > 0 {
		var ioctls seccomp.Or
		for _, req := range p.Ioctls {
			ioctls = append(ioctls, seccomp.PerArg{seccomp.AnyValue{}, seccomp.EqualTo(req)})
		}
		more[unix.SYS_IOCTL] = ioctls
	}
	if p.Helpers {
		// Helpers are killed at exit (os.Process.Kill uses the pidfd the
		// Go runtime holds for each child) and reaped.
		more[unix.SYS_PIDFD_SEND_SIGNAL] = seccomp.PerArg{seccomp.AnyValue{}, seccomp.EqualTo(unix.SIGKILL)}
		more[unix.SYS_WAITID] = allow
		more[unix.SYS_WAIT4] = allow
	}
	for nr, r := range more {
		rules[nr] = r
	}
	return seccomp.MakeSyscallRules(rules)
}

// Filter is a seccomp filter built and ready to install.
type Filter struct {
	instrs []bpf.Instruction
}

// VMMFilter builds the VMM's filter for p. Building takes a few
// milliseconds of CPU (far more under emulation), so a VMM can build it
// while it builds its VM, and install it after.
func VMMFilter(p VMM) (*Filter, error) {
	instrs, err := build(vmmRules(os.Getpid(), p), p.LogOnly)
	if err != nil {
		return nil, err
	}
	return &Filter{instrs: instrs}, nil
}

// Install installs f on every thread of the calling process (and threads
// it creates later). It cannot be undone. A VMM installs its filter once
// the VM is built, before its vCPUs run: from then on a guest that takes
// over a device emulation finds no file to open, no program to run, no
// socket to make and no other process to touch.
func (f *Filter) Install() error {
	if err := seccomp.SetFilter(f.instrs); err != nil {
		return fmt.Errorf("sandbox: install seccomp filter: %w", err)
	}
	return nil
}

// ConfineVMM builds the VMM's filter for p and installs it (see Install).
func ConfineVMM(p VMM) error {
	f, err := VMMFilter(p)
	if err != nil {
		return err
	}
	return f.Install()
}
