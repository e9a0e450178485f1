// Package sandbox confines vmm and its helper processes with seccomp filters
// on all of their threads. Each filter allows what one process still needs
// once it is set up, and every other system call fails with EPERM, so code
// that took it over cannot open files, run programs or trace processes:
//
//   - ConfineNetworkHelper: a network helper (vmm-usernet, which parses the
//     guest's TCP/IP traffic) keeps sockets and the Go runtime;
//   - ConfineVMM: a built VM keeps the descriptors it holds, the ioctl
//     requests it names and the Go runtime (vmm.go).
//
// The filters are classic BPF programs assembled here (bpf.go): a list of
// allowed calls, some with conditions on their arguments. gVisor's seccomp
// package built them before, but linking it into vmm cost about 1.5 MiB of
// resident memory (its packages' pages and the optimizer's garbage)
// against a 5 MiB budget for the VMM's own memory (docs/benchmarks.md).
package sandbox

import (
	"golang.org/x/sys/unix"
)

// errnoDenied is what a refused system call returns.
const errnoDenied = uint16(unix.EPERM)

// noExec allows a call whose protection argument (number protArg) does not
// ask for PROT_EXEC: memory is never executable.
func noExec(nr uintptr, protArg int) rule {
	return rule{nr: nr, alts: []match{{masked(protArg, unix.PROT_EXEC, 0)}}}
}

// runtimeRules are the system calls the Go runtime makes in a process that
// runs (threads, memory, signals, timers, the netpoller, exiting), plus
// I/O on descriptors the process already holds, the most frequent first.
// pid is the process's own: signals go to its own threads only.
func runtimeRules(pid int) []rule {
	return []rule{
		anyArgs(unix.SYS_FUTEX), anyArgs(unix.SYS_READ), anyArgs(unix.SYS_WRITE),
		anyArgs(unix.SYS_EPOLL_PWAIT), anyArgs(unix.SYS_EPOLL_WAIT), anyArgs(unix.SYS_READV), anyArgs(unix.SYS_WRITEV),
		anyArgs(unix.SYS_NANOSLEEP), anyArgs(unix.SYS_SCHED_YIELD), anyArgs(unix.SYS_RT_SIGRETURN),
		anyArgs(unix.SYS_EPOLL_CTL), anyArgs(unix.SYS_PREAD64), anyArgs(unix.SYS_CLOSE), anyArgs(unix.SYS_FCNTL),
		anyArgs(unix.SYS_FSTAT), anyArgs(unix.SYS_NEWFSTATAT),
		anyArgs(unix.SYS_EPOLL_CREATE1), anyArgs(unix.SYS_EVENTFD2), anyArgs(unix.SYS_PIPE2),
		// Memory, never executable.
		noExec(unix.SYS_MMAP, 2), noExec(unix.SYS_MPROTECT, 2), anyArgs(unix.SYS_MUNMAP), anyArgs(unix.SYS_MADVISE),
		// Threads (clone only with CLONE_THREAD), scheduling, signals, time.
		{nr: unix.SYS_CLONE, alts: []match{{masked(0, unix.CLONE_THREAD, unix.CLONE_THREAD)}}},
		anyArgs(unix.SYS_SCHED_GETAFFINITY), anyArgs(unix.SYS_CLOCK_NANOSLEEP), anyArgs(unix.SYS_CLOCK_GETTIME),
		anyArgs(unix.SYS_GETTIMEOFDAY), anyArgs(unix.SYS_GETRANDOM),
		anyArgs(unix.SYS_RT_SIGACTION), anyArgs(unix.SYS_RT_SIGPROCMASK), anyArgs(unix.SYS_SIGALTSTACK),
		anyArgs(unix.SYS_GETPID), anyArgs(unix.SYS_GETTID),
		{nr: unix.SYS_TGKILL, alts: []match{{eq(0, uint64(pid))}}},
		anyArgs(unix.SYS_RESTART_SYSCALL), anyArgs(unix.SYS_EXIT), anyArgs(unix.SYS_EXIT_GROUP),
		// New threads of a cgo build (glibc) register these.
		anyArgs(unix.SYS_RSEQ), anyArgs(unix.SYS_SET_ROBUST_LIST),
	}
}

// notImplemented are answered with ENOSYS instead of EPERM: clone3's flags
// sit behind a pointer the filter cannot read, and on ENOSYS glibc falls
// back to clone, whose flags it can.
var notImplemented = []uintptr{unix.SYS_CLONE3}

// Filter is a seccomp filter built and ready to install.
type Filter struct {
	prog []unix.SockFilter
}

// build assembles a filter that allows rules, answers notImplemented with
// ENOSYS and refuses everything else with EPERM. With logOnly the refusals
// become SECCOMP_RET_LOG: the call goes through and the kernel logs it (an
// audit record, type 1326, with the call's number), which shows what a
// filter is missing without breaking the process.
func build(rules []rule, logOnly bool) (*Filter, error) {
	deny := uint32(unix.SECCOMP_RET_ERRNO) | uint32(errnoDenied)
	if logOnly {
		deny = unix.SECCOMP_RET_LOG
	}
	prog, err := program(rules, notImplemented, deny)
	if err != nil {
		return nil, err
	}
	return &Filter{prog: prog}, nil
}

// Install installs f on every thread of the calling process (and threads
// it creates later). It cannot be undone.
func (f *Filter) Install() error { return install(f.prog) }
