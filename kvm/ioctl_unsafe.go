package kvm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl is the single place where a KVM ioctl with a pointer argument is
// issued; ioctlVal below is its twin for integer arguments.
//
// Safety: arg is converted to uintptr inside the argument list of
// unix.Syscall, so the object it points to stays alive and in place until the
// call returns (unsafe.Pointer rule 4); no uintptr of a Go pointer is held
// anywhere else. Callers reach this only through ioctlR/W/WR and ioctlFlex,
// which size the request from the argument's type, so the kernel never
// reads or writes more bytes than the object has.
func ioctl(fd int, req uintptr, arg unsafe.Pointer) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// ioctlVal issues a KVM ioctl whose argument is an integer (or unused).
func ioctlVal(fd int, req, val uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, val)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// sizeOf returns the size of T as the kernel sees it (T mirrors a C struct).
func sizeOf[T any]() uintptr {
	var t T
	return unsafe.Sizeof(t)
}

// ioctlR issues _IOR(KVMIO, nr, T): the kernel fills *arg.
//
// Safety: the request's size field is unsafe.Sizeof(*arg), so the kernel
// writes exactly the object arg points to.
func ioctlR[T any](fd int, nr uintptr, arg *T) (uintptr, error) {
	return ioctl(fd, ior(nr, unsafe.Sizeof(*arg)), unsafe.Pointer(arg))
}

// ioctlW issues _IOW(KVMIO, nr, T): the kernel reads *arg.
//
// Safety: as for ioctlR, the size comes from *arg's type.
func ioctlW[T any](fd int, nr uintptr, arg *T) (uintptr, error) {
	return ioctl(fd, iow(nr, unsafe.Sizeof(*arg)), unsafe.Pointer(arg))
}

// ioctlWR issues _IOWR(KVMIO, nr, T): the kernel reads and updates *arg.
//
// Safety: as for ioctlR, the size comes from *arg's type.
func ioctlWR[T any](fd int, nr uintptr, arg *T) (uintptr, error) {
	return ioctl(fd, iowr(nr, unsafe.Sizeof(*arg)), unsafe.Pointer(arg))
}

// ioctlFlex issues a request whose argument is a header H followed by a
// flexible array (kvm_cpuid2, kvm_msrs, kvm_irq_routing). The request encodes
// the header's size, as the kernel's macros do; buf holds the encoded header
// and entries, and the kernel bounds its accesses by the count in the header,
// which the encoders in this package set from len(buf).
//
// Safety: buf is checked to hold at least the header; the pointer is to its
// first byte and lives on the Go heap or stack for the call's duration.
func ioctlFlex[H any](fd int, dir, nr uintptr, buf []byte) (uintptr, error) {
	var h H
	size := unsafe.Sizeof(h)
	if uintptr(len(buf)) < size {
		return 0, fmt.Errorf("kvm: ioctl %#x: buffer of %d bytes shorter than its %d-byte header", nr, len(buf), size)
	}
	return ioctl(fd, ioc(dir, nr, size), unsafe.Pointer(&buf[0]))
}

// RunningRequests returns the ioctl requests this package issues once a VM
// and its vCPUs are built: KVM_RUN, wiring and unwiring device interrupts
// and notifications (KVM_IRQ_LINE, KVM_IRQFD, KVM_IOEVENTFD,
// KVM_SET_GSI_ROUTING, KVM_SIGNAL_MSI), and reading a vCPU's registers for
// a crash report (KVM_GET_REGS, KVM_GET_SREGS). A seccomp filter for a
// running VMM allows these and no other KVM request, so nothing can create
// VMs or vCPUs or change guest memory slots, CPUID or registers.
func RunningRequests() []uintptr {
	return []uintptr{
		io(nrRun),
		iow(nrIRQLine, unsafe.Sizeof(irqLevel{})),
		iow(nrIRQFD, unsafe.Sizeof(irqfd{})),
		iow(nrIOEventFD, unsafe.Sizeof(ioeventfd{})),
		ioc(iocWrite, nrSetGSIRouting, unsafe.Sizeof(irqRoutingHeader{})),
		iow(nrSignalMSI, unsafe.Sizeof(msi{})),
		ior(nrGetRegs, unsafe.Sizeof(Regs{})),
		ior(nrGetSregs, unsafe.Sizeof(Sregs{})),
	}
}
