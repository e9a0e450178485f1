package machine

import (
	"fmt"
	"sync"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/boot/acpi"
	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/balloon"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	virtiopci "github.com/vmm-dev/vmm/devices/virtio/pci"
	"github.com/vmm-dev/vmm/devices/virtio/rng"
	"github.com/vmm-dev/vmm/devices/virtio/vsock"
	"github.com/vmm-dev/vmm/kvm"
)

// GSI numbering: the in-kernel IOAPIC has pins 0..23; MSI routes start
// above them.
const (
	ioapicPins  = 24
	firstMSIGSI = ioapicPins
	maxGSI      = 1024 // KVM_MAX_IRQ_ROUTES is larger; this bounds our table
)

// msiRouter hands out MSI-X vectors backed by KVM GSI routes and irqfds, so
// a device raises an interrupt with one eventfd write and no vCPU exit.
type msiRouter struct {
	vm *kvm.VM

	mu      sync.Mutex // protects the fields below
	msi     map[uint32]kvm.IRQRoute
	nextGSI uint32
	fds     []*eventFD
}

func newMSIRouter(vm *kvm.VM) *msiRouter {
	return &msiRouter{vm: vm, msi: map[uint32]kvm.IRQRoute{}, nextGSI: firstMSIGSI}
}

// AllocateVectors implements virtiopci.InterruptRouter.
func (r *msiRouter) AllocateVectors(n int) ([]virtiopci.MSIVector, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if int(r.nextGSI)+n > maxGSI {
		return nil, fmt.Errorf("out of interrupt routes (%d in use)", r.nextGSI)
	}
	out := make([]virtiopci.MSIVector, 0, n)
	for range n {
		fd, err := newEventFD()
		if err != nil {
			return nil, err
		}
		gsi := r.nextGSI
		if err := r.vm.RegisterIRQFD(fd.fd, gsi); err != nil {
			fd.Close()
			return nil, fmt.Errorf("irqfd for gsi %d: %w", gsi, err)
		}
		r.nextGSI++
		r.fds = append(r.fds, fd)
		out = append(out, &msiVector{router: r, gsi: gsi, fd: fd})
	}
	return out, nil
}

// commitLocked installs the full routing table: KVM replaces it whole, so
// the default routes of the IOAPIC pins (and the PIC's, for GSIs below 16)
// are included each time.
func (r *msiRouter) commitLocked() error {
	routes := make([]kvm.IRQRoute, 0, ioapicPins+16+len(r.msi))
	for gsi := uint32(0); gsi < ioapicPins; gsi++ {
		if gsi < 16 {
			chip, pin := uint32(kvm.IRQChipPICMaster), gsi
			if gsi >= 8 {
				chip, pin = kvm.IRQChipPICSlave, gsi-8
			}
			routes = append(routes, kvm.IRQRoute{GSI: gsi, Kind: kvm.RouteIRQChip, IRQChip: chip, Pin: pin})
		}
		routes = append(routes, kvm.IRQRoute{GSI: gsi, Kind: kvm.RouteIRQChip, IRQChip: kvm.IRQChipIOAPIC, Pin: gsi})
	}
	for _, rt := range r.msi {
		routes = append(routes, rt)
	}
	return r.vm.SetGSIRouting(routes)
}

func (r *msiRouter) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, fd := range r.fds {
		fd.Close()
	}
	r.fds = nil
	return nil
}

type msiVector struct {
	router *msiRouter
	gsi    uint32
	fd     *eventFD
}

// Update points the vector's GSI at a new MSI address/data pair.
func (v *msiVector) Update(addr uint64, data uint32) error {
	r := v.router
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msi[v.gsi] = kvm.IRQRoute{GSI: v.gsi, Kind: kvm.RouteMSI, MSIAddr: addr, MSIData: data}
	return r.commitLocked()
}

func (v *msiVector) Trigger() error { return v.fd.Trigger() }

// ioeventRegistrar binds queue-notify addresses to eventfds in KVM, so a
// guest notify costs no exit to userspace.
type ioeventRegistrar struct{ vm *kvm.VM }

func (r ioeventRegistrar) RegisterIOEvent(addr uint64, length uint32, fd int) error {
	return r.vm.RegisterIOEventFD(fd, addr, length, false)
}

func (r ioeventRegistrar) UnregisterIOEvent(addr uint64, length uint32, fd int) error {
	return r.vm.UnregisterIOEventFD(fd, addr, length, false)
}

// setupPCI creates the PCI host bridge (always: the guest probes for it
// either way) and one virtio-pci function per disk, per network device and
// for the entropy device.
func (m *Machine) setupPCI() error {
	bridge := pcibus.NewHostBridge()
	if err := m.pio.Register(boot.PCIConfigAddressPort, boot.PCIConfigPortLen, bridge); err != nil {
		return fmt.Errorf("pci: %w", err)
	}
	alloc, err := pcibus.NewAllocator(boot.PCIMMIOStart, boot.PCIMMIOEnd)
	if err != nil {
		return fmt.Errorf("pci: %w", err)
	}
	router := newMSIRouter(m.vm)
	m.closers = append(m.closers, router)
	ioev := ioeventRegistrar{m.vm}
	add := func(name string, dev virtio.Device) error {
		bar, err := alloc.Allocate(virtiopci.BARSize)
		if err != nil {
			return fmt.Errorf("%s: BAR: %w", name, err)
		}
		t, err := virtiopci.New(dev, m.mem, router, ioev, bar)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		m.closers = append(m.closers, t)
		if _, err := bridge.Add(t); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		addr, size := t.BAR()
		if err := m.mmio.Register(addr, size, t); err != nil {
			return fmt.Errorf("%s: BAR: %w", name, err)
		}
		return nil
	}
	for i, d := range m.cfg.Disks {
		disk, err := blk.OpenDisk(d.Path, d.ReadOnly)
		if err != nil {
			return fmt.Errorf("--disk %s: %w", d.Path, err)
		}
		m.closers = append(m.closers, disk)
		dev := blk.New(disk)
		m.disks = append(m.disks, dev)
		if err := add(fmt.Sprintf("disk %d (%s)", i, d.Path), dev); err != nil {
			return err
		}
	}
	if err := m.setupNets(add); err != nil {
		return err
	}
	if m.cfg.RNG {
		m.rng = rng.New()
		if err := add("rng", m.rng); err != nil {
			return err
		}
	}
	if m.cfg.Balloon {
		m.balloon = balloon.New()
		if err := add("balloon", m.balloon); err != nil {
			return err
		}
	}
	if m.cfg.Vsock != nil {
		dev, err := vsock.New(*m.cfg.Vsock)
		if err != nil {
			return fmt.Errorf("--vsock: %w", err)
		}
		m.closers = append(m.closers, dev)
		m.vsock = dev
		if err := add("vsock", dev); err != nil {
			return err
		}
	}
	m.pciWindow = &acpi.PCIWindow{
		BusStart: 0, BusEnd: 0,
		Mem32Base: boot.PCIMMIOStart, Mem32Size: boot.PCIMMIOEnd - boot.PCIMMIOStart,
	}
	return nil
}
