// Package acpi owns the guest's ACPI tables: it builds the RSDP, XSDT, FADT,
// MADT and DSDT for a hardware-reduced ACPI platform (ACPI 6.5, 4.1) and
// writes them into the area boot.ACPIStart..boot.ACPIEnd, the RSDP first at
// boot.RSDPAddr. One file per table; the DSDT's AML comes from package aml.
//
// The platform described: one Processor Local APIC per vCPU (APIC ID =
// index), the in-kernel IOAPIC, no PIC (hardware-reduced: Linux then uses
// no legacy PIC and no PIT timer), poweroff through the sleep control
// register and S5, reboot through the reset register, COM1 and pvpanic in
// the DSDT, and optionally virtio-mmio devices and a PCI host bridge.
package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/memory"
)

// ErrInvalidConfig reports a Config the tables cannot describe.
var ErrInvalidConfig = errors.New("acpi: invalid configuration")

// ErrNoRoom reports tables that do not fit between boot.ACPIStart and
// boot.ACPIEnd.
var ErrNoRoom = errors.New("acpi: tables do not fit in the ACPI area")

// MaxCPUs is the largest NumCPUs: xAPIC IDs are 8 bits and 0xFF is the
// broadcast ID.
const MaxCPUs = 255

// IOAPICID is the MADT's ID for the IOAPIC: 0, the value KVM's in-kernel
// IOAPIC has in its ID register after reset. On x86-64 Linux does not
// require IOAPIC IDs to differ from local APIC IDs (they are separate
// namespaces since the serial APIC bus went away).
const IOAPICID = 0

// IOAPICPins is the number of redirection entries of KVM's IOAPIC: valid
// GSIs are 0..IOAPICPins-1.
const IOAPICPins = 24

// Config describes the machine to the ACPI tables.
type Config struct {
	// NumCPUs is the number of vCPUs, 1..MaxCPUs; vCPU i has APIC ID i.
	NumCPUs int
	// VirtioMMIO lists virtio-mmio devices (_HID LNRO0005), at most 256.
	// The Debian kernel finds virtio-mmio devices only through ACPI.
	VirtioMMIO []MMIODevice
	// PCI adds a PCI host bridge when not nil.
	PCI *PCIWindow
}

// MMIODevice is a device with one MMIO range and one edge-triggered,
// active-high interrupt.
type MMIODevice struct {
	Base uint64 // inside the MMIO hole, below 4 GiB
	Size uint32
	GSI  uint32 // 0..IOAPICPins-1
}

// PCIWindow describes a PCI host bridge (_HID PNP0A08, _CID PNP0A03) on
// segment 0, configured through ports 0xCF8..0xCFF. There is no MCFG:
// configuration space beyond 256 bytes is not reachable.
type PCIWindow struct {
	// BusStart and BusEnd bound the bus numbers decoded (inclusive).
	BusStart, BusEnd uint8
	// IOBase and IOSize give the I/O port window forwarded to the bus;
	// IOSize 0: none. It must not include the configuration ports.
	IOBase uint16
	IOSize uint32
	// Mem32Base and Mem32Size give the 32-bit MMIO window; it must lie in
	// [boot.PCIMMIOStart, boot.PCIMMIOEnd). Mem32Size 0: none.
	Mem32Base, Mem32Size uint32
}

func (c *Config) validate() error {
	if c.NumCPUs < 1 || c.NumCPUs > MaxCPUs {
		return fmt.Errorf("%w: %d CPUs (1..%d)", ErrInvalidConfig, c.NumCPUs, MaxCPUs)
	}
	if len(c.VirtioMMIO) > 256 {
		return fmt.Errorf("%w: %d virtio-mmio devices (at most 256)", ErrInvalidConfig, len(c.VirtioMMIO))
	}
	for i, d := range c.VirtioMMIO {
		end := d.Base + uint64(d.Size)
		if d.Size == 0 || d.Base < boot.LowRAMEnd || end > boot.MMIOHoleEnd || end < d.Base {
			return fmt.Errorf("%w: virtio-mmio device %d at [%#x+%#x) is not in the MMIO hole", ErrInvalidConfig, i, d.Base, d.Size)
		}
		if d.GSI >= IOAPICPins {
			return fmt.Errorf("%w: virtio-mmio device %d: GSI %d (0..%d)", ErrInvalidConfig, i, d.GSI, IOAPICPins-1)
		}
	}
	if p := c.PCI; p != nil {
		if p.BusEnd < p.BusStart {
			return fmt.Errorf("%w: PCI buses %d..%d", ErrInvalidConfig, p.BusStart, p.BusEnd)
		}
		ioEnd := uint32(p.IOBase) + p.IOSize
		if p.IOSize > 0 && (ioEnd > 0x10000 || p.IOSize == 0x10000 ||
			uint32(p.IOBase) < boot.PCIConfigAddressPort+boot.PCIConfigPortLen && ioEnd > boot.PCIConfigAddressPort) {
			return fmt.Errorf("%w: PCI I/O window [%#x+%#x) overflows or covers the configuration ports", ErrInvalidConfig, p.IOBase, p.IOSize)
		}
		memEnd := uint64(p.Mem32Base) + uint64(p.Mem32Size)
		if p.Mem32Size > 0 && (p.Mem32Base < boot.PCIMMIOStart || memEnd > boot.PCIMMIOEnd) {
			return fmt.Errorf("%w: PCI memory window [%#x+%#x) is outside [%#x, %#x)", ErrInvalidConfig,
				p.Mem32Base, p.Mem32Size, boot.PCIMMIOStart, boot.PCIMMIOEnd)
		}
	}
	return nil
}

// Write builds the tables for cfg and writes them to guest memory from
// boot.ACPIStart, zeroing the rest of the area, and returns the RSDP's
// address (for the zero page's acpi_rsdp_addr or the PVH rsdp_paddr).
func Write(mem *memory.Guest, cfg Config) (rsdpAddr uint64, err error) {
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	a := &area{next: boot.RSDPAddr + rsdpSize}
	dsdt, err := buildDSDT(&cfg)
	if err != nil {
		return 0, err
	}
	dsdtAddr, err := a.place("DSDT", dsdt)
	if err != nil {
		return 0, err
	}
	fadtAddr, err := a.place("FADT", buildFADT(dsdtAddr))
	if err != nil {
		return 0, err
	}
	madtAddr, err := a.place("APIC", buildMADT(&cfg))
	if err != nil {
		return 0, err
	}
	xsdtAddr, err := a.place("XSDT", buildXSDT(fadtAddr, madtAddr))
	if err != nil {
		return 0, err
	}
	a.tables = append(a.tables, placed{boot.RSDPAddr, buildRSDP(xsdtAddr)})

	if err := mem.Zero(boot.ACPIStart, boot.ACPIEnd-boot.ACPIStart); err != nil {
		return 0, fmt.Errorf("acpi: clear table area: %w", err)
	}
	for _, t := range a.tables {
		if err := mem.WriteAt(t.b, t.addr); err != nil {
			return 0, fmt.Errorf("acpi: write table at %#x: %w", t.addr, err)
		}
	}
	return boot.RSDPAddr, nil
}

// tableAlign aligns each table; 16 keeps 64-bit fields naturally aligned.
const tableAlign = 16

type placed struct {
	addr uint64
	b    []byte
}

// area hands out addresses in [boot.ACPIStart, boot.ACPIEnd).
type area struct {
	next   uint64
	tables []placed
}

func (a *area) place(sig string, b []byte) (uint64, error) {
	addr := (a.next + tableAlign - 1) &^ (tableAlign - 1)
	if uint64(len(b)) > boot.ACPIEnd-addr {
		return 0, fmt.Errorf("%w: %s of %d bytes at %#x", ErrNoRoom, sig, len(b), addr)
	}
	a.next = addr + uint64(len(b))
	a.tables = append(a.tables, placed{addr, b})
	return addr, nil
}

// System description table header (ACPI 6.5, 5.2.6).
const (
	headerSize  = 36
	oemID       = "VMMDEV"
	oemTableID  = "VMMDEVTB"
	oemRevision = 1
	creatorID   = "VMMG"
	creatorRev  = 1
)

// newTable returns a table of size bytes with its header filled in except
// the checksum; finish sets that once the body is written.
func newTable(sig string, size int, revision uint8) []byte {
	le := binary.LittleEndian
	t := make([]byte, size)
	copy(t[0:4], sig)
	le.PutUint32(t[4:], uint32(size))
	t[8] = revision
	copy(t[10:16], oemID)
	copy(t[16:24], oemTableID)
	le.PutUint32(t[24:], oemRevision)
	copy(t[28:32], creatorID)
	le.PutUint32(t[32:], creatorRev)
	return t
}

// finish sets the header checksum so that all bytes of t sum to zero.
func finish(t []byte) []byte {
	t[9] = 0
	t[9] = checksum(t)
	return t
}

// checksum returns the byte that makes b sum to zero (mod 256).
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// Generic Address Structure (ACPI 6.5, 5.2.3.2).
const (
	gasSize        = 12
	gasSystemIO    = 1
	gasAccessByte  = 1
	gasBitWidthOne = 8
)

// putGAS writes a GAS for a one-byte register at an I/O port.
func putGAS(b []byte, port uint16) {
	le := binary.LittleEndian
	b[0] = gasSystemIO
	b[1] = gasBitWidthOne
	b[2] = 0 // bit offset
	b[3] = gasAccessByte
	le.PutUint64(b[4:], uint64(port))
}
