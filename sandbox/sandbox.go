// Package sandbox confines vmm and its helper processes with seccomp filters
// on all of their threads. Each filter allows what one process still needs
// once it is set up, and every other system call fails with EPERM, so code
// that took it over cannot open files, run programs or trace processes:
//
//   - ConfineNetworkHelper: a network helper (vmm-usernet, which parses the
//     guest's TCP/IP traffic) keeps sockets and the Go runtime;
//   - ConfineVMM: a built VM keeps the descriptors it holds, the ioctl
//     requests it names and the Go runtime (vmm.go).
package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/bpf"
	"gvisor.dev/gvisor/pkg/seccomp"
)

// errnoDenied is what a refused system call returns.
const errnoDenied = uint16(unix.EPERM)

// retLog is SECCOMP_RET_LOG (linux/seccomp.h): allow the call and log it.
const retLog = 0x7ffc0000

// allow matches a system call whatever its arguments.
var allow = seccomp.MatchAll{}

// noExec allows a call whose protection argument (number protArg) does not
// ask for PROT_EXEC: memory is never executable.
func noExec(protArg int) seccomp.SyscallRule {
	var r seccomp.PerArg
	for i := range r {
		r[i] = seccomp.AnyValue{}
	}
	r[protArg] = seccomp.MaskedEqual(unix.PROT_EXEC, 0)
	return r
}

// runtimeRules are the system calls the Go runtime makes in a process that
// runs (threads, memory, signals, timers, the netpoller, exiting), plus
// I/O on descriptors the process already holds. pid is the process's own:
// signals go to its own threads only.
func runtimeRules(pid int) map[uintptr]seccomp.SyscallRule {
	return map[uintptr]seccomp.SyscallRule{
		// I/O on descriptors it has.
		unix.SYS_READ: allow, unix.SYS_WRITE: allow, unix.SYS_READV: allow, unix.SYS_WRITEV: allow,
		unix.SYS_PREAD64: allow, unix.SYS_CLOSE: allow, unix.SYS_FCNTL: allow,
		unix.SYS_FSTAT: allow, unix.SYS_NEWFSTATAT: allow,
		// The netpoller and wake-ups.
		unix.SYS_EPOLL_CREATE1: allow, unix.SYS_EPOLL_CTL: allow, unix.SYS_EPOLL_PWAIT: allow,
		unix.SYS_EPOLL_WAIT: allow, unix.SYS_EVENTFD2: allow, unix.SYS_PIPE2: allow,
		// Memory, never executable.
		unix.SYS_MMAP: noExec(2), unix.SYS_MPROTECT: noExec(2), unix.SYS_MUNMAP: allow, unix.SYS_MADVISE: allow,
		// Threads (clone only with CLONE_THREAD), scheduling, signals, time.
		unix.SYS_CLONE: seccomp.PerArg{seccomp.MaskedEqual(unix.CLONE_THREAD, unix.CLONE_THREAD)},
		unix.SYS_FUTEX: allow, unix.SYS_SCHED_YIELD: allow, unix.SYS_SCHED_GETAFFINITY: allow,
		unix.SYS_NANOSLEEP: allow, unix.SYS_CLOCK_NANOSLEEP: allow, unix.SYS_CLOCK_GETTIME: allow,
		unix.SYS_GETTIMEOFDAY: allow, unix.SYS_GETRANDOM: allow,
		unix.SYS_RT_SIGACTION: allow, unix.SYS_RT_SIGPROCMASK: allow, unix.SYS_RT_SIGRETURN: allow,
		unix.SYS_SIGALTSTACK: allow, unix.SYS_GETPID: allow, unix.SYS_GETTID: allow,
		unix.SYS_TGKILL:          seccomp.PerArg{seccomp.EqualTo(pid)},
		unix.SYS_RESTART_SYSCALL: allow, unix.SYS_EXIT: allow, unix.SYS_EXIT_GROUP: allow,
		// New threads of a cgo build (glibc) register these.
		unix.SYS_RSEQ: allow, unix.SYS_SET_ROBUST_LIST: allow,
	}
}

// notImplemented are answered with ENOSYS instead of EPERM: clone3's flags
// sit behind a pointer the filter cannot read, and on ENOSYS glibc falls
// back to clone, whose flags it can.
func notImplemented() seccomp.SyscallRules {
	return seccomp.MakeSyscallRules(map[uintptr]seccomp.SyscallRule{
		unix.SYS_CLONE3: seccomp.MatchAll{},
	})
}

// build builds a filter that allows rules, answers notImplemented with
// ENOSYS and refuses everything else with EPERM. With logOnly the refusals
// become SECCOMP_RET_LOG: the call goes through and the kernel logs it (an
// audit record, type 1326, with the call's number), which shows what a
// filter is missing without breaking the process.
func build(rules seccomp.SyscallRules, logOnly bool) ([]bpf.Instruction, error) {
	deny := seccomp.ReturnError.Code(errnoDenied)
	p := seccomp.Program{
		RuleSets: []seccomp.RuleSet{
			{Rules: rules, Action: seccomp.Allow},
			{Rules: notImplemented(), Action: seccomp.ReturnError.Code(uint16(unix.ENOSYS))},
		},
		Options: seccomp.ProgramOptions{
			DefaultAction: deny,
			BadArchAction: seccomp.KillProcess,
		},
	}
	instrs, _, err := p.Build()
	if err != nil {
		return nil, fmt.Errorf("sandbox: build seccomp filter: %w", err)
	}
	if logOnly {
		instrs = denialsLogged(instrs)
	}
	return instrs, nil
}

// denialsLogged turns every "return EPERM" of a built filter into "allow
// and log". gVisor's program builder has no log action; the EPERM return
// value is used by nothing but the default action.
func denialsLogged(instrs []bpf.Instruction) []bpf.Instruction {
	denied := uint32(linux.SECCOMP_RET_ERRNO.WithReturnCode(errnoDenied))
	out := append([]bpf.Instruction(nil), instrs...)
	for i, in := range out {
		if in.OpCode == bpf.Ret|bpf.K && in.K == denied {
			out[i].K = retLog
		}
	}
	return out
}
