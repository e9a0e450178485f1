package kvm

import (
	_ "unsafe" // go:linkname

	"golang.org/x/sys/unix"
)

// The Go runtime's own entry and exit for a system call that is expected to
// block: entersyscallblock hands the goroutine's P (its scheduler slot) back
// at once, where entersyscall leaves it attached for the sysmon thread to
// take away later. Both are exported by the runtime for linkname (see
// go.dev/issue/67401); gVisor's rawfile.BlockingPoll uses the same pair.
//
//go:linkname entersyscallblock runtime.entersyscallblock
func entersyscallblock()

//go:linkname exitsyscall runtime.exitsyscall
func exitsyscall()

// ioctlBlocking issues an ioctl with an integer argument that may stay in
// the kernel for a long time: KVM_RUN, which keeps a vCPU in the guest and
// in its in-kernel HLT for as long as the guest needs no VMM.
//
// With unix.Syscall the P stays attached to the blocked thread. The runtime's
// sysmon thread then retakes it once the call has lasted 10 ms (or one of its
// own ticks when no P is idle), and every retake resets sysmon's sleep to
// 20 µs. With vCPUs that stay in KVM_RUN that happened over and over:
// thousands of sysmon wake-ups per second, each a context switch on the
// host (measured in the nested lane, docs/benchmarks.md). Handing the P back
// up front, as the runtime does for its own long sleeps, leaves nothing to
// retake.
//
// It is nosplit and norace like syscall.Syscall, which it mirrors: between
// the two runtime calls the goroutine's stack must not grow or move, and
// nothing may be called that could.
//
//go:nosplit
//go:norace
func ioctlBlocking(fd int, req, val uintptr) (uintptr, unix.Errno) {
	entersyscallblock()
	r, _, errno := unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), req, val)
	exitsyscall()
	return r, errno
}
