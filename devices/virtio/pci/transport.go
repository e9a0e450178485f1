// Package pci owns the virtio 1.2 modern PCI transport (virtio 1.2, 4.1) for
// one virtio.Device: its PCI configuration space (identity, one 64-bit
// memory BAR, the virtio vendor capabilities and MSI-X), the registers in
// that BAR (common configuration, ISR, device configuration, queue notify,
// MSI-X table and PBA), feature negotiation, the device status state machine
// and the delivery of interrupts through MSI-X vectors the machine routes
// with KVM irqfds. Queue notifications reach the device through eventfds the
// machine registers as KVM ioeventfds, so a guest notify never exits to user
// space.
//
// Interrupts are MSI-X only: there is no INTx pin.
//
// Locking: mu serializes guest register accesses (configuration space and
// BAR) and every call into the device; the interrupt state (MSI-X table,
// vector assignments, ISR, NEEDS_RESET) has its own lock, irq.mu, which is
// taken after mu and is never held while calling the device. Device workers
// only ever take irq.mu, so a device Reset that waits for its workers cannot
// deadlock with a worker raising an interrupt.
//
// Guest misbehaviour (virtio 1.2, 2.1.2): a driver that negotiates features
// that were not offered does not get FEATURES_OK; a DRIVER_OK without
// FEATURES_OK, a queue setup that queue.Queue.Activate rejects, a failing
// Device.Activate or a later failure the device reports set
// DEVICE_NEEDS_RESET and raise a configuration change interrupt. The VMM
// keeps running; the driver can reset the device.
package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// MSIVector is one MSI-X vector as routed by the machine: a KVM GSI with an
// MSI route and an irqfd.
type MSIVector interface {
	// Update changes the MSI message the vector sends (a GSI route change).
	Update(addr uint64, data uint32) error
	// Trigger sends the message (an irqfd write). It is called from device
	// worker goroutines and must be safe for concurrent use.
	Trigger() error
}

// InterruptRouter allocates MSI vectors for a transport.
type InterruptRouter interface {
	AllocateVectors(n int) ([]MSIVector, error)
}

// IOEventRegistrar registers eventfds to be signalled by guest MMIO writes
// (KVM ioeventfds, any value written). length is the access width matched.
type IOEventRegistrar interface {
	RegisterIOEvent(addr uint64, length uint32, fd int) error
	UnregisterIOEvent(addr uint64, length uint32, fd int) error
}

// PCI identity (virtio 1.2, 4.1.2).
const (
	VendorID     = 0x1AF4
	DeviceIDBase = 0x1040 // + virtio device ID
	Revision     = 1      // modern (non-transitional) device
	// SubsystemIDBase + virtio device ID is the subsystem device ID
	// (non-transitional devices use 0x40 or higher).
	SubsystemIDBase = 0x40
)

// NoVector is VIRTIO_MSI_NO_VECTOR (virtio 1.2, 4.1.4.3).
const NoVector = 0xFFFF

// Layout of BAR 0, a 64-bit non-prefetchable memory BAR. Each region has its
// own 4 KiB page.
const (
	BARSize = 0x8000

	commonOffset    = 0x0000
	commonLength    = 0x38 // struct virtio_pci_common_cfg without the 1.2 notify_data/queue_reset fields
	isrOffset       = 0x1000
	isrLength       = 1
	deviceOffset    = 0x2000
	deviceLength    = 0x1000
	notifyOffset    = 0x3000
	notifyLength    = 0x1000
	msixTableOffset = 0x4000
	msixTableLength = 0x1000
	msixPBAOffset   = 0x5000
	msixPBALength   = 0x1000

	// NotifyMultiplier is notify_off_multiplier: queue q is notified at
	// notifyOffset + q*NotifyMultiplier (queue_notify_off = q).
	NotifyMultiplier = 4
	// NotifyIOEventLength is the write width the notify ioeventfds match:
	// drivers write the 16-bit queue index (VIRTIO_F_NOTIFICATION_DATA is
	// not offered). Other widths exit to user space and are handled there.
	NotifyIOEventLength = 2

	msixEntrySize = 16
	// MaxQueues bounds the queues of one device so that one vector per
	// queue plus the configuration vector fit the 4 KiB MSI-X table.
	MaxQueues = msixTableLength/msixEntrySize - 1
)

// Virtio PCI capability types (virtio 1.2, 4.1.4).
const (
	capCommonCfg = 1
	capNotifyCfg = 2
	capISRCfg    = 3
	capDeviceCfg = 4
	capPCICfg    = 5

	virtioCapLen = 16 // struct virtio_pci_cap
)

// unsupportedFeatures are transport features this implementation never
// offers, whatever the device says: split rings only, no notification data,
// no IOMMU, no SR-IOV, no queue reset (bit 40), no admin queues (bit 41),
// no notification config data (bit 39).
const unsupportedFeatures = virtio.FAccessPlatform | virtio.FRingPacked | virtio.FSRIOV |
	virtio.FNotificationData | 1<<39 | 1<<40 | 1<<41

// Transport exposes one virtio.Device on the PCI bus. It is a pci.Endpoint
// (ConfigRead, ConfigWrite) and, for the BAR region the machine registers on
// the MMIO bus at BAR(), a devices.Device (Read, Write).
type Transport struct {
	dev      virtio.Device
	mem      *memory.Guest
	ioev     IOEventRegistrar
	barAddr  uint64
	maxSizes []uint16
	offered  uint64

	mu sync.Mutex
	// mu serializes register accesses and calls into dev; it protects
	// everything below.
	cs          *pcibus.ConfigSpace
	msixCap     int // offset of the MSI-X capability
	pciCfgCap   int // offset of the VIRTIO_PCI_CAP_PCI_CFG capability
	devFeatSel  uint32
	drvFeatSel  uint32
	drvFeatures uint64
	status      uint8 // driver-set bits; NEEDS_RESET lives in irq
	queueSel    uint16
	queues      []queueRegs
	hostErr     error // first host-side failure (ioeventfd bookkeeping)

	irq irqState
}

// queueRegs is the driver's setup of one queue before DRIVER_OK.
type queueRegs struct {
	size                 uint16
	enabled              bool
	desc, driver, device uint64
	// kick is created when the driver enables the queue; the device owns
	// it once handed to Activate (handed is then true).
	kick   *virtio.EventFDKick
	handed bool
	// notifyFD is a dup of kick's eventfd owned by the transport: it is
	// what KVM knows (registered), stays valid even after the device
	// closes the kick, and serves notify writes that reach user space.
	notifyFD   int
	registered bool
	setupErr   error // the kick could not be set up; fails DRIVER_OK
}

// New builds the transport for dev with BAR 0 at barAddr (BARSize bytes,
// aligned to BARSize, normally from a pci.Allocator), allocating one MSI-X
// vector per queue plus one for configuration changes from router.
func New(dev virtio.Device, mem *memory.Guest, router InterruptRouter, ioev IOEventRegistrar, barAddr uint64) (*Transport, error) {
	if dev == nil || mem == nil || router == nil || ioev == nil {
		return nil, errors.New("virtio-pci: nil device, memory, router or ioevent registrar")
	}
	if barAddr == 0 || barAddr%BARSize != 0 || barAddr+BARSize < barAddr {
		return nil, fmt.Errorf("virtio-pci: BAR address %#x not aligned to %#x", barAddr, BARSize)
	}
	id := dev.DeviceID()
	if id == 0 || id > 0x3F {
		return nil, fmt.Errorf("virtio-pci: device ID %d outside 1..63 (PCI IDs 0x1041..0x107f)", id)
	}
	sizes := append([]uint16(nil), dev.QueueMaxSizes()...)
	if len(sizes) == 0 || len(sizes) > MaxQueues {
		return nil, fmt.Errorf("virtio-pci: device %d has %d queues, want 1..%d", dev.DeviceID(), len(sizes), MaxQueues)
	}
	for i, s := range sizes {
		if s == 0 || s&(s-1) != 0 || s > queue.MaxSize {
			return nil, fmt.Errorf("virtio-pci: queue %d maximum size %d not a power of two <= %d", i, s, queue.MaxSize)
		}
	}
	nvec := len(sizes) + 1
	vectors, err := router.AllocateVectors(nvec)
	if err != nil {
		return nil, fmt.Errorf("virtio-pci: allocate %d MSI-X vectors: %w", nvec, err)
	}
	if len(vectors) != nvec {
		return nil, fmt.Errorf("virtio-pci: router returned %d vectors, want %d", len(vectors), nvec)
	}
	for i, v := range vectors {
		if v == nil {
			return nil, fmt.Errorf("virtio-pci: router returned no vector %d", i)
		}
	}
	t := &Transport{
		dev:      dev,
		mem:      mem,
		ioev:     ioev,
		barAddr:  barAddr,
		maxSizes: sizes,
		offered:  dev.Features()&^unsupportedFeatures | virtio.FVersion1,
		cs: pcibus.NewConfigSpace(pcibus.Header{
			VendorID:          VendorID,
			DeviceID:          DeviceIDBase + id,
			Revision:          Revision,
			Class:             classFor(id),
			SubsystemVendorID: VendorID,
			SubsystemID:       SubsystemIDBase + id,
		}),
	}
	t.irq.init(vectors, len(sizes))
	t.resetQueueRegs()
	if err := t.buildConfigSpace(); err != nil {
		return nil, err
	}
	return t, nil
}

// classFor returns the PCI class code for a virtio device type.
func classFor(id uint16) uint32 {
	switch id {
	case virtio.IDNet:
		return 0x020000 // network, Ethernet
	case virtio.IDBlock:
		return 0x018000 // mass storage, other
	case 3: // console
		return 0x078000 // simple communication, other
	case 8: // SCSI host
		return 0x010000 // mass storage, SCSI
	case 16: // GPU
		return 0x038000 // display, other
	case 18: // input
		return 0x098000 // input, other
	default:
		return 0xFF0000 // no defined class
	}
}

func (t *Transport) buildConfigSpace() error {
	if err := t.cs.SetBAR(0, pcibus.BAR{Kind: pcibus.BARMem64, Addr: t.barAddr, Size: BARSize}); err != nil {
		return fmt.Errorf("virtio-pci: %w", err)
	}
	nq := uint32(len(t.maxSizes))
	caps := []struct {
		typ          uint8
		offset, size uint32
		extra        []byte
	}{
		{capCommonCfg, commonOffset, commonLength, nil},
		{capNotifyCfg, notifyOffset, nq * NotifyMultiplier, le32(NotifyMultiplier)},
		{capISRCfg, isrOffset, isrLength, nil},
		{capDeviceCfg, deviceOffset, deviceLength, nil},
		{capPCICfg, 0, 0, make([]byte, 4)}, // pci_cfg_data
	}
	for _, c := range caps {
		body := make([]byte, virtioCapLen-2, virtioCapLen-2+len(c.extra))
		body[0] = byte(virtioCapLen + len(c.extra)) // cap_len
		body[1] = c.typ                             // cfg_type
		body[2] = 0                                 // bar
		binary.LittleEndian.PutUint32(body[6:], c.offset)
		binary.LittleEndian.PutUint32(body[10:], c.size)
		body = append(body, c.extra...)
		off, err := t.cs.AddCapability(pcibus.CapIDVendor, body)
		if err != nil {
			return fmt.Errorf("virtio-pci: %w", err)
		}
		if c.typ == capPCICfg {
			t.pciCfgCap = off
			// bar, offset, length and pci_cfg_data are the driver's.
			if err := t.cs.SetWritable(off+4, []byte{0xFF}); err != nil {
				return fmt.Errorf("virtio-pci: %w", err)
			}
			ones := []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
			if err := t.cs.SetWritable(off+8, ones); err != nil {
				return fmt.Errorf("virtio-pci: %w", err)
			}
		}
	}
	msix := make([]byte, 10)
	binary.LittleEndian.PutUint16(msix[0:], uint16(len(t.irq.table)-1)) // table size - 1
	binary.LittleEndian.PutUint32(msix[2:], msixTableOffset|0)          // BIR 0
	binary.LittleEndian.PutUint32(msix[6:], msixPBAOffset|0)
	off, err := t.cs.AddCapability(pcibus.CapIDMSIX, msix)
	if err != nil {
		return fmt.Errorf("virtio-pci: %w", err)
	}
	t.msixCap = off
	// Message Control: MSI-X Enable (bit 15) and Function Mask (bit 14).
	if err := t.cs.SetWritable(off+3, []byte{0xC0}); err != nil {
		return fmt.Errorf("virtio-pci: %w", err)
	}
	return nil
}

func le32(v uint32) []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, v)
	return b
}

// BAR returns the guest-physical address and size of BAR 0, for registering
// the transport on the MMIO bus.
func (t *Transport) BAR() (addr, size uint64) { return t.barAddr, BARSize }

// NotifyAddr returns the guest-physical address the driver writes to notify
// queue q.
func (t *Transport) NotifyAddr(q int) uint64 {
	return t.barAddr + notifyOffset + uint64(q)*NotifyMultiplier
}

// Err returns the first host-side failure the guest could not be told about
// directly (interrupt routing, ioeventfd registration), for the machine to
// report. Guest mistakes are not errors here.
func (t *Transport) Err() error {
	t.mu.Lock()
	herr := t.hostErr
	t.mu.Unlock()
	t.irq.mu.Lock()
	ierr := t.irq.hostErr
	t.irq.mu.Unlock()
	return errors.Join(herr, ierr)
}

func (t *Transport) noteHostErr(err error) {
	if err != nil && t.hostErr == nil {
		t.hostErr = err
	}
}

// Close resets the device, unregisters the ioeventfds and closes the
// eventfds. The transport must not be used afterwards.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.resetLocked()
}

// ConfigRead implements pci.Endpoint.
func (t *Transport) ConfigRead(offset int, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if overlaps(offset, len(data), t.pciCfgCap+16, 4) {
		t.pciCfgAccess(false)
	}
	t.cs.Read(offset, data)
}

// ConfigWrite implements pci.Endpoint.
func (t *Transport) ConfigWrite(offset int, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cs.Write(offset, data)
	if overlaps(offset, len(data), t.msixCap+2, 2) {
		var ctl [2]byte
		t.cs.Read(t.msixCap+2, ctl[:])
		t.irq.setControl(ctl[1]&0x80 != 0, ctl[1]&0x40 != 0)
	}
	if overlaps(offset, len(data), t.pciCfgCap+16, 4) {
		t.pciCfgAccess(true)
	}
}

func overlaps(off, n, start, size int) bool {
	return off < start+size && start < off+n
}

// pciCfgAccess performs the BAR access the VIRTIO_PCI_CAP_PCI_CFG window
// describes (virtio 1.2, 4.1.4.9): ignored unless cap.bar is 0, cap.length
// is 1, 2 or 4 and cap.offset is aligned to it and inside the BAR.
func (t *Transport) pciCfgAccess(write bool) {
	var regs [16]byte
	t.cs.Read(t.pciCfgCap+4, regs[:])
	bar := regs[0]
	off := uint64(binary.LittleEndian.Uint32(regs[4:]))
	n := uint64(binary.LittleEndian.Uint32(regs[8:]))
	if bar != 0 || (n != 1 && n != 2 && n != 4) || off%n != 0 || off+n > BARSize {
		return
	}
	buf := regs[12 : 12+n]
	if write {
		t.barWriteLocked(off, buf)
		return
	}
	t.barReadLocked(off, buf)
	// The data window is the driver's: the device stores into it directly.
	if err := t.cs.RawWrite(t.pciCfgCap+16, buf); err != nil {
		t.noteHostErr(err)
	}
}

// Read implements devices.Device for the BAR: offset is relative to BAR().
func (t *Transport) Read(offset uint64, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.barReadLocked(offset, data)
}

// Write implements devices.Device for the BAR: offset is relative to BAR().
func (t *Transport) Write(offset uint64, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.barWriteLocked(offset, data)
}

// region returns which BAR region holds [off, off+n) and the offset in it;
// an access must lie inside one region.
func region(off uint64, n int) (base uint64, rel uint64, ok bool) {
	if n <= 0 || n > 8 || off >= BARSize || off+uint64(n) > BARSize {
		return 0, 0, false
	}
	base = off &^ 0xFFF
	rel = off - base
	if rel+uint64(n) > 0x1000 {
		return 0, 0, false
	}
	return base, rel, true
}

func (t *Transport) barReadLocked(off uint64, data []byte) {
	clear(data)
	base, rel, ok := region(off, len(data))
	if !ok {
		return
	}
	switch base {
	case commonOffset:
		t.commonRead(rel, data)
	case isrOffset:
		if rel == 0 {
			data[0] = t.irq.readISR()
		}
	case deviceOffset:
		t.dev.ReadConfig(rel, data)
	case msixTableOffset:
		t.irq.tableRead(rel, data)
	case msixPBAOffset:
		t.irq.pbaRead(rel, data)
	}
}

func (t *Transport) barWriteLocked(off uint64, data []byte) {
	base, rel, ok := region(off, len(data))
	if !ok {
		return
	}
	switch base {
	case commonOffset:
		t.commonWrite(rel, data)
	case deviceOffset:
		t.dev.WriteConfig(rel, data)
	case notifyOffset:
		t.notifyWrite(rel)
	case msixTableOffset:
		t.irq.tableWrite(rel, data)
	}
}

// notifyWrite handles a queue notification that reached user space (a
// width the ioeventfd does not match, or no ioeventfd): it signals the
// queue's eventfd the way KVM would.
func (t *Transport) notifyWrite(rel uint64) {
	if rel%NotifyMultiplier != 0 {
		return
	}
	q := rel / NotifyMultiplier
	if q >= uint64(len(t.queues)) {
		return
	}
	qr := &t.queues[q]
	if !qr.enabled || qr.notifyFD < 0 {
		return
	}
	if err := signalFD(qr.notifyFD); err != nil {
		t.noteHostErr(fmt.Errorf("virtio-pci: notify queue %d: %w", q, err))
	}
}
