package sandbox

import (
	"os"

	"golang.org/x/sys/unix"
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
	// UnixStreams lets it accept connections on the Unix sockets it
	// listens on and connect new Unix stream sockets (a vsock device's
	// host end). A socket of any other family or type is still refused,
	// but the connect can reach any Unix socket the user can write to.
	UnixStreams bool
	// AcceptUnix lets it accept connections on the Unix sockets it
	// listens on (the control socket), and nothing more.
	AcceptUnix bool
	// LogOnly lets refused calls through and has the kernel log them
	// instead (SECCOMP_RET_LOG): for finding what the filter is missing.
	LogOnly bool
}

// vmmRules are the system calls of a VMM whose VM is built: vCPU threads
// in KVM_RUN, devices reading and writing disks, TAPs, eventfds and
// sockets they already hold, the metrics written to a file opened before,
// helper processes killed and reaped at exit. Nothing can be opened,
// created, mapped executable or executed; no socket can be made.
func vmmRules(pid int, p VMM) []rule {
	var rules []rule
	if len(p.Ioctls) > 0 {
		// First: KVM_RUN is the most frequent call of all.
		ioctl := rule{nr: unix.SYS_IOCTL}
		for _, req := range p.Ioctls {
			ioctl.alts = append(ioctl.alts, match{eq(1, uint64(req))})
		}
		rules = append(rules, ioctl)
	}
	rules = append(rules, runtimeRules(pid)...)
	rules = append(rules,
		// Disks: positioned and vectored I/O, flushes, discard and
		// write-zeroes (fallocate), size (lseek).
		anyArgs(unix.SYS_PREADV), anyArgs(unix.SYS_PWRITEV), anyArgs(unix.SYS_PWRITE64),
		anyArgs(unix.SYS_FDATASYNC), anyArgs(unix.SYS_FSYNC), anyArgs(unix.SYS_FALLOCATE), anyArgs(unix.SYS_LSEEK),
		// Metrics at exit; the CPU profiler's timers (--cpu-profile).
		anyArgs(unix.SYS_GETRUSAGE), anyArgs(unix.SYS_SETITIMER),
		anyArgs(unix.SYS_TIMER_CREATE), anyArgs(unix.SYS_TIMER_SETTIME), anyArgs(unix.SYS_TIMER_DELETE),
	)
	if p.UnixStreams || p.AcceptUnix {
		rules = append(rules, anyArgs(unix.SYS_ACCEPT4))
	}
	if p.UnixStreams {
		stream := uint64(unix.SOCK_STREAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC)
		rules = append(rules,
			rule{nr: unix.SYS_SOCKET, alts: []match{{eq(0, unix.AF_UNIX), eq(1, stream), eq(2, 0)}}},
			anyArgs(unix.SYS_CONNECT), anyArgs(unix.SYS_SHUTDOWN))
	}
	if p.Helpers {
		// Helpers are killed at exit (os.Process.Kill uses the pidfd the
		// Go runtime holds for each child) and reaped.
		rules = append(rules,
			rule{nr: unix.SYS_PIDFD_SEND_SIGNAL, alts: []match{{eq(1, uint64(unix.SIGKILL))}}},
			anyArgs(unix.SYS_WAITID), anyArgs(unix.SYS_WAIT4))
	}
	return rules
}

// VMMFilter builds the VMM's filter for p. It takes little time, but a
// VMM can still build it while it builds its VM, and install it after
// (Filter.Install): from then on a guest that takes over a device
// emulation finds no file to open, no program to run, no socket to make
// and no other process to touch.
func VMMFilter(p VMM) (*Filter, error) {
	return build(vmmRules(os.Getpid(), p), p.LogOnly)
}

// ConfineVMM builds the VMM's filter for p and installs it (see Install).
func ConfineVMM(p VMM) error {
	f, err := VMMFilter(p)
	if err != nil {
		return err
	}
	return f.Install()
}
