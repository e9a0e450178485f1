// Package pci owns PCI bus 0: the host bridge that the guest reaches through
// configuration mechanism #1 (ports 0xCF8-0xCFF), the configuration space of
// endpoint functions (type-0 header, BAR sizing, capability list) and the
// allocation of BAR addresses in the 32-bit PCI window.
//
// Only bus 0, function 0 of each slot and the conventional 256-byte space are
// emulated. Endpoints own their configuration state and their locking; the
// bridge only decodes addresses.
package pci

import (
	"encoding/binary"
	"errors"
	"sync"
)

// Configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2).
const (
	ConfigAddressPort = 0xCF8 // 32-bit CONFIG_ADDRESS register
	ConfigDataPort    = 0xCFC // CONFIG_DATA window, 4 bytes
	ConfigPortsSize   = 8     // ports 0xCF8..0xCFF, the bridge's window on the I/O bus

	addrEnable   = 1 << 31
	addrReadMask = addrEnable | 0x00FFFFFC // reserved bits 30:24 and 1:0 read as zero
)

// NumSlots is the number of device numbers on a bus.
const NumSlots = 32

// Host bridge identity (slot 0): an Intel host bridge ID that Linux knows
// needs no quirks, class "host bridge".
const (
	HostBridgeVendorID = 0x8086
	HostBridgeDeviceID = 0x0d57
	HostBridgeClass    = 0x060000
)

// ErrNoSlot is returned by Add when all 31 endpoint slots are taken.
var ErrNoSlot = errors.New("pci: no free slot on bus 0")

// Endpoint is one PCI function on bus 0. offset is in [0, ConfigSize) and
// the access (len(data) is 1, 2 or 4) does not cross a dword boundary.
// Endpoints are called from vCPU threads concurrently and lock themselves.
type Endpoint interface {
	ConfigRead(offset int, data []byte)
	ConfigWrite(offset int, data []byte)
}

// HostBridge is PCI bus 0 behind configuration mechanism #1. Register it on
// the I/O port bus at ConfigAddressPort with size ConfigPortsSize. Slot 0
// is the bridge itself; endpoints are added to slots 1-31. Absent slots,
// other buses and functions 1-7 read as all ones.
type HostBridge struct {
	mu sync.Mutex
	// mu protects addr and slots. It is not held while an endpoint is
	// called, so endpoints may block briefly without stalling the bus.
	addr  uint32
	slots [NumSlots]Endpoint
}

// NewHostBridge returns bus 0 with only the host bridge at slot 0.
func NewHostBridge() *HostBridge {
	b := &HostBridge{}
	b.slots[0] = &bridgeFunction{cs: NewConfigSpace(Header{
		VendorID: HostBridgeVendorID,
		DeviceID: HostBridgeDeviceID,
		Class:    HostBridgeClass,
	})}
	return b
}

// Add places ep in the lowest free slot and returns its device number.
func (b *HostBridge) Add(ep Endpoint) (slot int, err error) {
	if ep == nil {
		return 0, errors.New("pci: nil endpoint")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := 1; s < NumSlots; s++ {
		if b.slots[s] == nil {
			b.slots[s] = ep
			return s, nil
		}
	}
	return 0, ErrNoSlot
}

// Read serves an I/O read at offset (0..7) from ConfigAddressPort.
func (b *HostBridge) Read(offset uint64, data []byte) {
	if offset < 4 {
		fill(data, 0xFF)
		if offset == 0 && len(data) == 4 {
			b.mu.Lock()
			binary.LittleEndian.PutUint32(data, b.addr)
			b.mu.Unlock()
		}
		return
	}
	ep, reg, ok := b.target(offset, len(data))
	if !ok {
		fill(data, 0xFF)
		return
	}
	ep.ConfigRead(reg, data)
}

// Write serves an I/O write at offset (0..7) from ConfigAddressPort.
// CONFIG_ADDRESS only takes 32-bit writes; narrower writes to 0xCF8-0xCFB
// (such as the chipset reset port 0xCF9) are ignored.
func (b *HostBridge) Write(offset uint64, data []byte) {
	if offset < 4 {
		if offset == 0 && len(data) == 4 {
			b.mu.Lock()
			b.addr = binary.LittleEndian.Uint32(data) & addrReadMask
			b.mu.Unlock()
		}
		return
	}
	ep, reg, ok := b.target(offset, len(data))
	if !ok {
		return
	}
	ep.ConfigWrite(reg, data)
}

// target decodes CONFIG_ADDRESS for a data-window access of n bytes at
// offset (4..7): the endpoint and the configuration register offset.
func (b *HostBridge) target(offset uint64, n int) (Endpoint, int, bool) {
	if offset < 4 || offset >= ConfigPortsSize {
		return nil, 0, false
	}
	k := int(offset - 4)
	if (n != 1 && n != 2 && n != 4) || k+n > 4 {
		return nil, 0, false
	}
	b.mu.Lock()
	addr := b.addr
	var ep Endpoint
	bus, dev, fn := (addr>>16)&0xFF, (addr>>11)&0x1F, (addr>>8)&0x7
	if addr&addrEnable != 0 && bus == 0 && fn == 0 {
		ep = b.slots[dev]
	}
	b.mu.Unlock()
	if ep == nil {
		return nil, 0, false
	}
	return ep, int(addr&0xFC) + k, true
}

func fill(p []byte, v byte) {
	for i := range p {
		p[i] = v
	}
}

// bridgeFunction is the host bridge's own configuration space.
type bridgeFunction struct {
	mu sync.Mutex // protects cs
	cs *ConfigSpace
}

func (f *bridgeFunction) ConfigRead(offset int, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cs.Read(offset, data)
}

func (f *bridgeFunction) ConfigWrite(offset int, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cs.Write(offset, data)
}
