package sandbox

import (
	"fmt"
	"reflect"
	"runtime"

	"golang.org/x/sys/unix"
)

// A rule allows one system call, with any arguments (no alternatives) or
// when its arguments satisfy one of the alternatives.
type rule struct {
	nr   uintptr
	alts []match
}

// A match is a conjunction of conditions on a call's arguments.
type match []cond

// A cond holds when args[arg] & mask == value, over all 64 bits.
type cond struct {
	arg         int
	mask, value uint64
}

// anyArgs allows nr whatever its arguments.
func anyArgs(nr uintptr) rule { return rule{nr: nr} }

// eq is the condition args[arg] == v.
func eq(arg int, v uint64) cond { return cond{arg: arg, mask: ^uint64(0), value: v} }

// masked is the condition args[arg] & mask == v.
func masked(arg int, mask, v uint64) cond { return cond{arg: arg, mask: mask, value: v} }

// Offsets in struct seccomp_data (linux/seccomp.h): nr, arch, then the
// instruction pointer and the six arguments, each 64 bits, little-endian.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// x32SyscallBit marks the x32 ABI's system call numbers, which share
// AUDIT_ARCH_X86_64: a filter written for x86-64 numbers must refuse them.
const x32SyscallBit = 0x40000000

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	ldAbs  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	jgeK   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	andK   = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	retK   = unix.BPF_RET | unix.BPF_K
	maxJmp = 255 // classic BPF jump offsets are 8 bits
)

// program assembles a seccomp filter for x86-64: other architectures kill
// the process; the x32 ABI and every call no rule allows return deny
// (SECCOMP_RET_ERRNO with EPERM, or SECCOMP_RET_LOG); the calls in enosys
// fail with ENOSYS. Rules are tried in order, so the most frequent calls
// should come first. Every jump is local to one rule, so the program has
// no jump longer than one rule's body.
func program(rules []rule, enosys []uintptr, deny uint32) ([]unix.SockFilter, error) {
	p := []unix.SockFilter{
		stmt(ldAbs, offArch),
		jump(jeqK, unix.AUDIT_ARCH_X86_64, 1, 0),
		stmt(retK, unix.SECCOMP_RET_KILL_PROCESS),
		stmt(ldAbs, offNr),
		jump(jgeK, x32SyscallBit, 0, 1),
		stmt(retK, deny),
	}
	seen := map[uintptr]bool{}
	for _, r := range rules {
		if seen[r.nr] {
			return nil, fmt.Errorf("sandbox: system call %d has two rules", r.nr)
		}
		seen[r.nr] = true
		body, err := ruleBody(r, deny)
		if err != nil {
			return nil, err
		}
		if len(body) > maxJmp {
			return nil, fmt.Errorf("sandbox: the rule for system call %d is %d instructions, more than a jump spans", r.nr, len(body))
		}
		p = append(p, jump(jeqK, uint32(r.nr), 0, uint8(len(body))))
		p = append(p, body...)
	}
	for _, nr := range enosys {
		p = append(p, jump(jeqK, uint32(nr), 0, 1), stmt(retK, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)))
	}
	p = append(p, stmt(retK, deny))
	if len(p) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("sandbox: filter of %d instructions, more than the kernel takes", len(p))
	}
	return p, nil
}

// ruleBody is what runs once the call number matched: allow, or check
// each alternative in turn (allow at the first that holds), then deny.
// The accumulator is overwritten, but every path ends in a return.
func ruleBody(r rule, deny uint32) ([]unix.SockFilter, error) {
	allow := stmt(retK, unix.SECCOMP_RET_ALLOW)
	if len(r.alts) == 0 {
		return []unix.SockFilter{allow}, nil
	}
	var body []unix.SockFilter
	for _, m := range r.alts {
		var checks []unix.SockFilter
		for _, c := range m {
			if c.arg < 0 || c.arg > 5 {
				return nil, fmt.Errorf("sandbox: system call %d: no argument %d", r.nr, c.arg)
			}
			if c.value&^c.mask != 0 {
				return nil, fmt.Errorf("sandbox: system call %d: argument %d can never equal %#x under mask %#x", r.nr, c.arg, c.value, c.mask)
			}
			for half := 0; half < 2; half++ {
				mask, value := uint32(c.mask>>(32*half)), uint32(c.value>>(32*half))
				if mask == 0 {
					continue // nothing to check in this half
				}
				checks = append(checks, stmt(ldAbs, uint32(offArgs+8*c.arg+4*half)))
				if mask != ^uint32(0) {
					checks = append(checks, stmt(andK, mask))
				}
				// Jf is filled in below: to the next alternative.
				checks = append(checks, jump(jeqK, value, 0, 0))
			}
		}
		checks = append(checks, allow)
		// A failed check skips the rest of this alternative.
		for i := range checks {
			if checks[i].Code == jeqK {
				skip := len(checks) - 1 - i
				if skip > maxJmp {
					return nil, fmt.Errorf("sandbox: system call %d: an alternative too long for a jump", r.nr)
				}
				checks[i].Jf = uint8(skip)
			}
		}
		body = append(body, checks...)
	}
	return append(body, stmt(retK, deny)), nil
}

// install installs prog on every thread of the calling process (and the
// threads it creates later), after setting no_new_privs, which a process
// without CAP_SYS_ADMIN needs for a filter. Both are calls on the current
// thread, so it stays locked to one; SECCOMP_FILTER_FLAG_TSYNC then gives
// every other thread the filter and no_new_privs.
func install(prog []unix.SockFilter) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: set no_new_privs: %w", err)
	}
	fprog := &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	// reflect gives fprog's address without unsafe. fprog lives on the
	// heap (it escapes through reflect), which the garbage collector does
	// not move, and KeepAlive holds it and prog until the call returns.
	addr := reflect.ValueOf(fprog).Pointer()
	tid, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, addr)
	runtime.KeepAlive(fprog)
	runtime.KeepAlive(prog)
	switch {
	case errno != 0:
		return fmt.Errorf("sandbox: install seccomp filter: %w", errno)
	case tid != 0:
		return fmt.Errorf("sandbox: install seccomp filter: thread %d could not take it", tid)
	}
	return nil
}
