package sandbox

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// seccompData is struct seccomp_data: what a filter reads.
type seccompData struct {
	nr   int32
	arch uint32
	args [6]uint64
}

func (d seccompData) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[offNr:], uint32(d.nr))
	binary.LittleEndian.PutUint32(b[offArch:], d.arch)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[offArgs+8*i:], a)
	}
	return b
}

// run interprets prog on d the way the kernel does, for the instructions
// program emits, and returns the action.
func run(t *testing.T, prog []unix.SockFilter, d seccompData) uint32 {
	t.Helper()
	data := d.bytes()
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case ldAbs:
			a = binary.LittleEndian.Uint32(data[in.K:])
		case andK:
			a &= in.K
		case jeqK:
			if a == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case jgeK:
			if a >= in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case retK:
			return in.K
		default:
			t.Fatalf("pc %d: unexpected opcode %#x", pc, in.Code)
		}
	}
	t.Fatal("ran off the end of the program")
	return 0
}

func TestProgramDecisions(t *testing.T) {
	const deny = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	const allow = unix.SECCOMP_RET_ALLOW
	rules := []rule{
		anyArgs(unix.SYS_READ),
		{nr: unix.SYS_IOCTL, alts: []match{{eq(1, 0xAE80)}, {eq(1, 0x8090AE81)}}},
		noExec(unix.SYS_MMAP, 2),
		{nr: unix.SYS_CLONE, alts: []match{{masked(0, unix.CLONE_THREAD, unix.CLONE_THREAD)}}},
		{nr: unix.SYS_KILL, alts: []match{{eq(0, 42), eq(1, 9)}}},
	}
	prog, err := program(rules, []uintptr{unix.SYS_CLONE3}, deny)
	if err != nil {
		t.Fatal(err)
	}
	x86 := uint32(unix.AUDIT_ARCH_X86_64)
	call := func(nr uintptr, args ...uint64) seccompData {
		d := seccompData{nr: int32(nr), arch: x86}
		copy(d.args[:], args)
		return d
	}
	for _, c := range []struct {
		name string
		d    seccompData
		want uint32
	}{
		{"read", call(unix.SYS_READ, 3, 0, 4096), allow},
		{"write: no rule", call(unix.SYS_WRITE, 1), deny},
		{"openat: no rule", call(unix.SYS_OPENAT), deny},
		{"another arch", seccompData{nr: unix.SYS_READ, arch: 0x40000003}, unix.SECCOMP_RET_KILL_PROCESS},
		{"x32 read", call(unix.SYS_READ | x32SyscallBit), deny},
		{"KVM_RUN", call(unix.SYS_IOCTL, 5, 0xAE80), allow},
		{"KVM_GET_REGS (bit 31)", call(unix.SYS_IOCTL, 5, 0x8090AE81), allow},
		{"TIOCSTI", call(unix.SYS_IOCTL, 0, unix.TIOCSTI), deny},
		{"KVM_RUN with high bits", call(unix.SYS_IOCTL, 5, 1<<32|0xAE80), deny},
		{"mmap read/write", call(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE), allow},
		{"mmap exec", call(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_EXEC), deny},
		{"mmap exec, high bits set", call(unix.SYS_MMAP, 0, 4096, 0xffffffff00000000|unix.PROT_READ), allow},
		{"clone thread", call(unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_THREAD|unix.CLONE_SIGHAND), allow},
		{"clone process", call(unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_VFORK), deny},
		{"kill 42 SIGKILL", call(unix.SYS_KILL, 42, 9), allow},
		{"kill 42 SIGTERM", call(unix.SYS_KILL, 42, 15), deny},
		{"kill 43 SIGKILL", call(unix.SYS_KILL, 43, 9), deny},
		{"kill 42+2^32 SIGKILL", call(unix.SYS_KILL, 1<<32|42, 9), deny},
		{"clone3", call(unix.SYS_CLONE3), unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
	} {
		if got := run(t, prog, c.d); got != c.want {
			t.Errorf("%s: action %#x, want %#x", c.name, got, c.want)
		}
	}
}

func TestProgramRejectsBadRules(t *testing.T) {
	for name, rules := range map[string][]rule{
		"duplicate":         {anyArgs(unix.SYS_READ), anyArgs(unix.SYS_READ)},
		"argument 6":        {{nr: unix.SYS_READ, alts: []match{{eq(6, 1)}}}},
		"value beyond mask": {{nr: unix.SYS_READ, alts: []match{{masked(0, 1, 2)}}}},
	} {
		if _, err := program(rules, nil, 0); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var many rule
	many.nr = unix.SYS_IOCTL
	for i := range 100 {
		many.alts = append(many.alts, match{eq(1, uint64(i))})
	}
	if _, err := program([]rule{many}, nil, 0); err == nil {
		t.Error("a rule too long for one jump was accepted")
	}
}

func TestRealFiltersAssemble(t *testing.T) {
	for name, rules := range map[string][]rule{
		"network helper": networkHelperRules(1),
		"vmm":            vmmRules(1, VMM{Ioctls: append(make([]uintptr, 0, 11), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), Helpers: true}),
	} {
		prog, err := program(rules, notImplemented, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d instructions", name, len(prog))
	}
}
