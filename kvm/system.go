package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// System is an open handle on /dev/kvm. Its methods are safe for concurrent
// use; Close must be the last call.
type System struct {
	fd int
}

// Open opens the KVM device at path (normally "/dev/kvm") and checks that it
// speaks the stable API (version 12). A missing device or missing permission
// is reported clearly; both wrap the underlying os error (os.ErrNotExist,
// os.ErrPermission).
func Open(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		perr := &os.PathError{Op: "open", Path: path, Err: err}
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("kvm: %s not present (is the kvm module loaded, is this host allowed to virtualise?): %w", path, perr)
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("kvm: permission denied on %s (run as root or join the group owning it): %w", path, perr)
		default:
			return nil, fmt.Errorf("kvm: %w", perr)
		}
	}
	s := &System{fd: fd}
	v, err := s.APIVersion()
	if err != nil {
		s.Close()
		return nil, err
	}
	if v != kvmAPIVersion {
		s.Close()
		return nil, fmt.Errorf("kvm: %s speaks API version %d, want %d", path, v, kvmAPIVersion)
	}
	return s, nil
}

// Close closes the handle. VMs created from it stay usable.
func (s *System) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	if err != nil {
		return fmt.Errorf("kvm: close /dev/kvm: %w", err)
	}
	return nil
}

// APIVersion returns KVM_GET_API_VERSION (12 on every supported kernel).
func (s *System) APIVersion() (int, error) {
	r, err := ioctlVal(s.fd, io(nrGetAPIVersion), 0)
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_GET_API_VERSION: %w", err)
	}
	return int(r), nil
}

// CheckExtension returns KVM_CHECK_EXTENSION for cap: 0 if unsupported,
// otherwise a positive, capability-specific value (often 1).
func (s *System) CheckExtension(cap Cap) (int, error) {
	return checkExtension(s.fd, cap)
}

func checkExtension(fd int, cap Cap) (int, error) {
	if cap < 0 {
		return 0, fmt.Errorf("kvm: KVM_CHECK_EXTENSION: invalid capability %d", int(cap))
	}
	r, err := ioctlVal(fd, io(nrCheckExtension), uintptr(cap))
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_CHECK_EXTENSION %v: %w", cap, err)
	}
	return int(r), nil
}

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: the CPUID leaves KVM can
// expose to a guest, as a starting point for SetCPUID2.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	for n := 64; n <= maxCPUIDs; n *= 2 {
		buf := make([]byte, flexHeaderSize+n*cpuidEntrySize)
		binary.LittleEndian.PutUint32(buf[0:], uint32(n))
		_, err := ioctlFlex[cpuid2Header](s.fd, iocRead|iocWrite, nrGetSupportedCPUID, buf)
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		return decodeCPUID(buf, n)
	}
	return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID: more than %d entries", maxCPUIDs)
}

// decodeCPUID decodes a kvm_cpuid2 buffer that has room for capacity entries.
func decodeCPUID(buf []byte, capacity int) ([]CPUIDEntry, error) {
	if len(buf) < flexHeaderSize || capacity < 0 {
		return nil, fmt.Errorf("kvm: kvm_cpuid2 buffer of %d bytes, capacity %d", len(buf), capacity)
	}
	nent := binary.LittleEndian.Uint32(buf[0:])
	if uint64(nent) > uint64(capacity) || uint64(len(buf)) < flexHeaderSize+uint64(nent)*cpuidEntrySize {
		return nil, fmt.Errorf("kvm: kvm_cpuid2 reports %d entries, room for %d", nent, capacity)
	}
	out := make([]CPUIDEntry, nent)
	for i := range out {
		e := buf[flexHeaderSize+i*cpuidEntrySize:]
		out[i] = CPUIDEntry{
			Function: binary.LittleEndian.Uint32(e[0:]),
			Index:    binary.LittleEndian.Uint32(e[4:]),
			Flags:    binary.LittleEndian.Uint32(e[8:]),
			EAX:      binary.LittleEndian.Uint32(e[12:]),
			EBX:      binary.LittleEndian.Uint32(e[16:]),
			ECX:      binary.LittleEndian.Uint32(e[20:]),
			EDX:      binary.LittleEndian.Uint32(e[24:]),
		}
	}
	return out, nil
}

// encodeCPUID builds a kvm_cpuid2 argument holding entries.
func encodeCPUID(entries []CPUIDEntry) []byte {
	buf := make([]byte, flexHeaderSize+len(entries)*cpuidEntrySize)
	binary.LittleEndian.PutUint32(buf[0:], uint32(len(entries)))
	for i, c := range entries {
		e := buf[flexHeaderSize+i*cpuidEntrySize:]
		binary.LittleEndian.PutUint32(e[0:], c.Function)
		binary.LittleEndian.PutUint32(e[4:], c.Index)
		binary.LittleEndian.PutUint32(e[8:], c.Flags)
		binary.LittleEndian.PutUint32(e[12:], c.EAX)
		binary.LittleEndian.PutUint32(e[16:], c.EBX)
		binary.LittleEndian.PutUint32(e[20:], c.ECX)
		binary.LittleEndian.PutUint32(e[24:], c.EDX)
	}
	return buf
}

// CreateVM creates a VM (KVM_CREATE_VM, default machine type). It maps
// nothing; it queries the vCPU mapping size and the capabilities the VM's
// methods depend on once, here.
func (s *System) CreateVM() (*VM, error) {
	size, err := ioctlVal(s.fd, io(nrGetVCPUMmapSize), 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	if size < runMinSize || size > 1<<20 {
		return nil, fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE returned implausible %d", size)
	}
	xcrs, err := s.CheckExtension(CapXCRS)
	if err != nil {
		return nil, err
	}
	fd, err := ioctlVal(s.fd, io(nrCreateVM), 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VM: %w", err)
	}
	// The kernel creates VM and vCPU descriptors close-on-exec.
	return &VM{fd: int(fd), runSize: int(size), hasXCRS: xcrs > 0}, nil
}
