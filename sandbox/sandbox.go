// Package sandbox confines the VMM's helper processes with a seccomp filter
// on all of their threads: a network helper (vmm-usernet, which parses the
// guest's TCP/IP traffic) may use sockets and what the Go runtime needs,
// and every other system call fails with EPERM, so code that took over the
// helper cannot open files, run programs or trace processes.
package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/seccomp"
)

// errnoDenied is what a refused system call returns.
const errnoDenied = uint16(unix.EPERM)

// networkHelperRules are the system calls a network helper makes once it
// is serving: the Go runtime's (threads, memory, signals, timers, the
// netpoller) and sockets. Files already open (its packet socket, stderr)
// keep working; nothing new can be opened but sockets.
func networkHelperRules() seccomp.SyscallRules {
	allow := seccomp.MatchAll{}
	noExec := func(protArg int) seccomp.SyscallRule {
		var r seccomp.PerArg
		for i := range r {
			r[i] = seccomp.AnyValue{}
		}
		r[protArg] = seccomp.MaskedEqual(unix.PROT_EXEC, 0)
		return r
	}
	inet := seccomp.Or{
		seccomp.PerArg{seccomp.EqualTo(unix.AF_INET)},
		seccomp.PerArg{seccomp.EqualTo(unix.AF_INET6)},
	}
	return seccomp.MakeSyscallRules(map[uintptr]seccomp.SyscallRule{
		// I/O on descriptors it has.
		unix.SYS_READ: allow, unix.SYS_WRITE: allow, unix.SYS_READV: allow, unix.SYS_WRITEV: allow,
		unix.SYS_PREAD64: allow, unix.SYS_CLOSE: allow, unix.SYS_FCNTL: allow,
		unix.SYS_FSTAT: allow, unix.SYS_NEWFSTATAT: allow,
		// Go copies between two sockets with splice(2) through a pipe.
		unix.SYS_SPLICE: allow,
		// The netpoller and wake-ups.
		unix.SYS_EPOLL_CREATE1: allow, unix.SYS_EPOLL_CTL: allow, unix.SYS_EPOLL_PWAIT: allow,
		unix.SYS_EPOLL_WAIT: allow, unix.SYS_EVENTFD2: allow, unix.SYS_PIPE2: allow,
		// Sockets: the NAT's and the forwards' host sockets (IPv4/IPv6 only).
		unix.SYS_SOCKET: inet, unix.SYS_CONNECT: allow, unix.SYS_BIND: allow, unix.SYS_LISTEN: allow,
		unix.SYS_ACCEPT4: allow, unix.SYS_GETSOCKNAME: allow, unix.SYS_GETPEERNAME: allow,
		unix.SYS_SETSOCKOPT: allow, unix.SYS_GETSOCKOPT: allow, unix.SYS_SENDTO: allow,
		unix.SYS_RECVFROM: allow, unix.SYS_SENDMSG: allow, unix.SYS_RECVMSG: allow, unix.SYS_SHUTDOWN: allow,
		// Memory, never executable.
		unix.SYS_MMAP: noExec(2), unix.SYS_MPROTECT: noExec(2), unix.SYS_MUNMAP: allow, unix.SYS_MADVISE: allow,
		// Threads (clone only with CLONE_THREAD), scheduling, signals, time.
		unix.SYS_CLONE: seccomp.PerArg{seccomp.MaskedEqual(unix.CLONE_THREAD, unix.CLONE_THREAD)},
		unix.SYS_FUTEX: allow, unix.SYS_SCHED_YIELD: allow, unix.SYS_SCHED_GETAFFINITY: allow,
		unix.SYS_NANOSLEEP: allow, unix.SYS_CLOCK_NANOSLEEP: allow, unix.SYS_CLOCK_GETTIME: allow,
		unix.SYS_GETTIMEOFDAY: allow, unix.SYS_GETRANDOM: allow,
		unix.SYS_RT_SIGACTION: allow, unix.SYS_RT_SIGPROCMASK: allow, unix.SYS_RT_SIGRETURN: allow,
		unix.SYS_SIGALTSTACK: allow, unix.SYS_GETPID: allow, unix.SYS_GETTID: allow, unix.SYS_TGKILL: allow,
		unix.SYS_RESTART_SYSCALL: allow, unix.SYS_EXIT: allow, unix.SYS_EXIT_GROUP: allow,
		// New threads of a cgo build (glibc) register these.
		unix.SYS_RSEQ: allow, unix.SYS_SET_ROBUST_LIST: allow,
	})
}

// notImplemented are answered with ENOSYS instead of EPERM: clone3's flags
// sit behind a pointer the filter cannot read, and on ENOSYS glibc falls
// back to clone, whose flags it can.
func notImplemented() seccomp.SyscallRules {
	return seccomp.MakeSyscallRules(map[uintptr]seccomp.SyscallRule{
		unix.SYS_CLONE3: seccomp.MatchAll{},
	})
}

// ConfineNetworkHelper installs the network helper's filter on every thread
// of the calling process (and threads it creates later). It cannot be
// undone. Call it once the helper holds what it needs from the file system.
func ConfineNetworkHelper() error {
	p := seccomp.Program{
		RuleSets: []seccomp.RuleSet{
			{Rules: networkHelperRules(), Action: seccomp.Allow},
			{Rules: notImplemented(), Action: seccomp.ReturnError.Code(uint16(unix.ENOSYS))},
		},
		Options: seccomp.ProgramOptions{
			DefaultAction: seccomp.ReturnError.Code(errnoDenied),
			BadArchAction: seccomp.KillProcess,
		},
	}
	instrs, _, err := p.Build()
	if err != nil {
		return fmt.Errorf("sandbox: build seccomp filter: %w", err)
	}
	if err := seccomp.SetFilter(instrs); err != nil {
		return fmt.Errorf("sandbox: install seccomp filter: %w", err)
	}
	return nil
}
