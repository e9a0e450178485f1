package kvm

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine. Its methods may be called from any goroutine
// (each is a single ioctl on the VM descriptor); Close must be the last call,
// after every vCPU is closed.
type VM struct {
	fd      int
	runSize int  // KVM_GET_VCPU_MMAP_SIZE, queried once by CreateVM
	hasXCRS bool // KVM_CAP_XCRS
}

// Close closes the VM descriptor.
func (vm *VM) Close() error {
	if vm.fd < 0 {
		return nil
	}
	err := unix.Close(vm.fd)
	vm.fd = -1
	if err != nil {
		return fmt.Errorf("kvm: close VM: %w", err)
	}
	return nil
}

// CheckExtension asks the VM rather than the system about cap
// (KVM_CAP_CHECK_EXTENSION_VM); some answers, such as CapNRMemslots, are
// per VM.
func (vm *VM) CheckExtension(cap Cap) (int, error) {
	return checkExtension(vm.fd, cap)
}

// SetUserMemoryRegion maps host at guestAddr in memory slot slot
// (KVM_SET_USER_MEMORY_REGION). flags may hold MemReadonly. An empty host
// deletes the slot. host must be a page-aligned mapping that is not managed
// by the Go heap (memory.Guest's regions are mmap'd) and must stay mapped
// until the slot is deleted or the VM closed.
func (vm *VM) SetUserMemoryRegion(slot uint32, guestAddr uint64, host []byte, flags uint32) error {
	if flags&^MemReadonly != 0 {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d: unsupported flags %#x", slot, flags)
	}
	r := userspaceMemoryRegion{Slot: slot, Flags: flags, GuestPhysAddr: guestAddr, MemorySize: uint64(len(host))}
	if len(host) > 0 {
		r.UserspaceAddr = hostAddr(host)
	}
	const page = 4096
	if guestAddr%page != 0 || r.MemorySize%page != 0 || r.UserspaceAddr%page != 0 {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d: guest %#x, size %#x, host %#x not page-aligned",
			slot, guestAddr, r.MemorySize, r.UserspaceAddr)
	}
	if guestAddr+r.MemorySize < guestAddr {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d: guest %#x+%#x overflows", slot, guestAddr, r.MemorySize)
	}
	if _, err := ioctlW(vm.fd, nrSetUserMemoryRegion, &r); err != nil {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d guest %#x size %#x: %w", slot, guestAddr, r.MemorySize, err)
	}
	return nil
}

// MemReadonly is the SetUserMemoryRegion flag for a slot the guest cannot
// write (writes exit as MMIO).
const MemReadonly = memReadonly

// SetTSSAddr places the three pages KVM needs for the real-mode TSS on Intel
// (KVM_SET_TSS_ADDR). addr must lie outside guest RAM, below 4 GiB.
func (vm *VM) SetTSSAddr(addr uint64) error {
	if addr > 1<<32-3*4096 {
		return fmt.Errorf("kvm: KVM_SET_TSS_ADDR %#x: must lie below 4 GiB", addr)
	}
	if _, err := ioctlVal(vm.fd, io(nrSetTSSAddr), uintptr(addr)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr places the page KVM uses for the real-mode identity
// page table on Intel (KVM_SET_IDENTITY_MAP_ADDR). Call before CreateVCPU.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if _, err := ioctlW(vm.fd, nrSetIdentityMapAddr, &addr); err != nil {
		return fmt.Errorf("kvm: KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and per-vCPU local
// APICs (KVM_CREATE_IRQCHIP), with the default GSI routing. Call before
// CreateVCPU.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctlVal(vm.fd, io(nrCreateIRQChip), 0); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel i8254 PIT (KVM_CREATE_PIT2) with a dummy
// PC speaker at port 0x61. Requires CreateIRQChip first.
func (vm *VM) CreatePIT2() error {
	cfg := pitConfig{Flags: pitSpeakerDummy}
	if _, err := ioctlW(vm.fd, nrCreatePIT2, &cfg); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// IRQLine sets the level of GSI irq (KVM_IRQ_LINE). For an edge-triggered
// interrupt call it with true then false. Prefer irqfds for device
// interrupts.
func (vm *VM) IRQLine(irq uint32, level bool) error {
	l := irqLevel{IRQ: irq}
	if level {
		l.Level = 1
	}
	if _, err := ioctlW(vm.fd, nrIRQLine, &l); err != nil {
		return fmt.Errorf("kvm: KVM_IRQ_LINE %d=%v: %w", irq, level, err)
	}
	return nil
}

// RegisterIRQFD makes every write to eventfd inject GSI gsi (KVM_IRQFD).
func (vm *VM) RegisterIRQFD(eventfd int, gsi uint32) error {
	return vm.irqfd(eventfd, gsi, 0)
}

// UnregisterIRQFD undoes RegisterIRQFD.
func (vm *VM) UnregisterIRQFD(eventfd int, gsi uint32) error {
	return vm.irqfd(eventfd, gsi, irqfdFlagDeassign)
}

func (vm *VM) irqfd(eventfd int, gsi, flags uint32) error {
	if eventfd < 0 || eventfd > 1<<31-1 {
		return fmt.Errorf("kvm: KVM_IRQFD: invalid eventfd %d", eventfd)
	}
	a := irqfd{FD: uint32(eventfd), GSI: gsi, Flags: flags}
	if _, err := ioctlW(vm.fd, nrIRQFD, &a); err != nil {
		return fmt.Errorf("kvm: KVM_IRQFD fd %d gsi %d flags %#x: %w", eventfd, gsi, flags, err)
	}
	return nil
}

// RegisterIOEventFD makes guest writes of length bytes to addr (a port if pio,
// else a guest-physical MMIO address) signal eventfd in the kernel instead of
// exiting to the VMM (KVM_IOEVENTFD, any value written). length is 1, 2, 4 or
// 8, or 0 for any width (MMIO only, needs CapIOEventFDAnyLength).
func (vm *VM) RegisterIOEventFD(eventfd int, addr uint64, length uint32, pio bool) error {
	return vm.ioeventfd(eventfd, addr, length, pio, false)
}

// UnregisterIOEventFD undoes RegisterIOEventFD with the same arguments.
func (vm *VM) UnregisterIOEventFD(eventfd int, addr uint64, length uint32, pio bool) error {
	return vm.ioeventfd(eventfd, addr, length, pio, true)
}

func (vm *VM) ioeventfd(eventfd int, addr uint64, length uint32, pio, deassign bool) error {
	if eventfd < 0 || eventfd > 1<<31-1 {
		return fmt.Errorf("kvm: KVM_IOEVENTFD: invalid eventfd %d", eventfd)
	}
	switch length {
	case 0, 1, 2, 4, 8:
	default:
		return fmt.Errorf("kvm: KVM_IOEVENTFD at %#x: invalid length %d", addr, length)
	}
	if pio && (addr > 0xFFFF || addr+uint64(length) > 0x10000) {
		return fmt.Errorf("kvm: KVM_IOEVENTFD: port %#x+%d outside the I/O space", addr, length)
	}
	a := ioeventfd{Addr: addr, Len: length, FD: int32(eventfd)}
	if pio {
		a.Flags |= ioeventfdFlagPIO
	}
	if deassign {
		a.Flags |= ioeventfdFlagDeassign
	}
	if _, err := ioctlW(vm.fd, nrIOEventFD, &a); err != nil {
		return fmt.Errorf("kvm: KVM_IOEVENTFD fd %d addr %#x len %d pio %v deassign %v: %w",
			eventfd, addr, length, pio, deassign, err)
	}
	return nil
}

// SetGSIRouting replaces the whole GSI routing table (KVM_SET_GSI_ROUTING):
// GSIs not listed stop being routed, so include the irqchip pins still in
// use along with any MSI routes.
func (vm *VM) SetGSIRouting(routes []IRQRoute) error {
	buf, err := encodeRouting(routes)
	if err != nil {
		return err
	}
	if _, err := ioctlFlex[irqRoutingHeader](vm.fd, iocWrite, nrSetGSIRouting, buf); err != nil {
		return fmt.Errorf("kvm: KVM_SET_GSI_ROUTING (%d routes): %w", len(routes), err)
	}
	return nil
}

// encodeRouting validates routes and builds a kvm_irq_routing argument.
func encodeRouting(routes []IRQRoute) ([]byte, error) {
	if len(routes) > maxIRQRoutes {
		return nil, fmt.Errorf("kvm: KVM_SET_GSI_ROUTING: %d routes, at most %d", len(routes), maxIRQRoutes)
	}
	buf := make([]byte, flexHeaderSize+len(routes)*irqRoutingEntrySize)
	binary.LittleEndian.PutUint32(buf[0:], uint32(len(routes)))
	for i, r := range routes {
		if r.GSI >= maxIRQRoutes {
			return nil, fmt.Errorf("kvm: route %d: GSI %d out of range", i, r.GSI)
		}
		e := buf[flexHeaderSize+i*irqRoutingEntrySize:]
		binary.LittleEndian.PutUint32(e[0:], r.GSI)
		binary.LittleEndian.PutUint32(e[irqRoutingTypeOffset:], uint32(r.Kind))
		u := e[irqRoutingUnion:]
		switch r.Kind {
		case RouteIRQChip:
			var pins uint32
			switch r.IRQChip {
			case IRQChipPICMaster, IRQChipPICSlave:
				pins = picPins
			case IRQChipIOAPIC:
				pins = ioapicPins
			default:
				return nil, fmt.Errorf("kvm: route %d (GSI %d): unknown irqchip %d", i, r.GSI, r.IRQChip)
			}
			if r.Pin >= pins {
				return nil, fmt.Errorf("kvm: route %d (GSI %d): pin %d out of range for irqchip %d", i, r.GSI, r.Pin, r.IRQChip)
			}
			binary.LittleEndian.PutUint32(u[0:], r.IRQChip)
			binary.LittleEndian.PutUint32(u[4:], r.Pin)
		case RouteMSI:
			binary.LittleEndian.PutUint32(u[0:], uint32(r.MSIAddr))
			binary.LittleEndian.PutUint32(u[4:], uint32(r.MSIAddr>>32))
			binary.LittleEndian.PutUint32(u[8:], r.MSIData)
		default:
			return nil, fmt.Errorf("kvm: route %d (GSI %d): unknown kind %d", i, r.GSI, r.Kind)
		}
	}
	return buf, nil
}

// SignalMSI injects one MSI message (KVM_SIGNAL_MSI). A message that no
// vCPU accepts (blocked or no destination) is not an error.
func (vm *VM) SignalMSI(addr uint64, data uint32) error {
	m := msi{AddressLo: uint32(addr), AddressHi: uint32(addr >> 32), Data: data}
	if _, err := ioctlW(vm.fd, nrSignalMSI, &m); err != nil {
		return fmt.Errorf("kvm: KVM_SIGNAL_MSI addr %#x data %#x: %w", addr, data, err)
	}
	return nil
}
