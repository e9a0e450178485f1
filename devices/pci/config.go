package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// ConfigSize is the size of the conventional configuration space of one
// function (PCI Local Bus 3.0, 6.1). Extended (PCIe) space is not emulated.
const ConfigSize = 256

// Offsets of type-0 header registers (PCI Local Bus 3.0, 6.1).
const (
	RegVendorID          = 0x00
	RegDeviceID          = 0x02
	RegCommand           = 0x04
	RegStatus            = 0x06
	RegRevision          = 0x08
	RegClass             = 0x09 // programming interface, then sub-class, then base class
	RegCacheLineSize     = 0x0C
	RegLatencyTimer      = 0x0D
	RegHeaderType        = 0x0E
	RegBAR0              = 0x10
	RegSubsystemVendorID = 0x2C
	RegSubsystemID       = 0x2E
	RegExpansionROM      = 0x30
	RegCapabilities      = 0x34
	RegInterruptLine     = 0x3C
	RegInterruptPin      = 0x3D
)

// Command and Status register bits.
const (
	CommandIO           = 1 << 0
	CommandMemory       = 1 << 1
	CommandBusMaster    = 1 << 2
	CommandParity       = 1 << 6
	CommandSERR         = 1 << 8
	CommandINTxDisable  = 1 << 10
	StatusCapabilities  = 1 << 4
	commandWritableMask = CommandIO | CommandMemory | CommandBusMaster | CommandParity |
		CommandSERR | CommandINTxDisable
)

// Capability IDs used by this VMM (PCI Local Bus 3.0, appendix H).
const (
	CapIDVendor = 0x09
	CapIDMSIX   = 0x11
)

// NumBARs is the number of BAR registers in a type-0 header.
const NumBARs = 6

// capStart is where the capability list begins: right after the header.
const capStart = 0x40

// Header holds the identity registers of a type-0 header.
type Header struct {
	VendorID          uint16
	DeviceID          uint16
	Revision          uint8
	Class             uint32 // base<<16 | sub-class<<8 | programming interface
	SubsystemVendorID uint16
	SubsystemID       uint16
}

// BARKind says what a BAR decodes.
type BARKind uint8

// BAR kinds.
const (
	BARMem32 BARKind = iota // 32-bit memory BAR, one register
	BARMem64                // 64-bit memory BAR, two registers (index and index+1)
	BARIO                   // I/O port BAR
)

// BAR describes a region the VMM assigned to a function.
type BAR struct {
	Kind         BARKind
	Addr         uint64 // guest-physical address (or port), aligned to Size
	Size         uint64 // power of two; at least 16 for memory, 4 for I/O
	Prefetchable bool   // memory BARs only
}

// barReg is the state of one BAR register (a 64-bit BAR has two).
type barReg struct {
	bar    BAR
	used   bool   // register belongs to a BAR
	upper  bool   // upper half of a 64-bit BAR
	sizing bool   // the guest wrote all ones; reads return the size mask
	latch  uint32 // the guest's last value, merged byte by byte
}

// ConfigSpace is the 256-byte configuration space of one endpoint function
// with a type-0 header: registers the guest may write are selected by a
// per-bit mask, BAR registers implement sizing, and capabilities are added
// with AddCapability.
//
// BAR relocation policy: a BAR keeps decoding at the address the VMM
// assigned. Writing all ones to a BAR register makes it read back the size
// mask (sizing); any other value ends sizing and the register reads back the
// assigned address again, the written address is ignored. Linux keeps
// firmware-assigned BARs, so it never notices. The Command register's Memory
// Space bit is stored but does not stop decoding.
//
// A ConfigSpace is not safe for concurrent use; its owner serializes access.
type ConfigSpace struct {
	data    [ConfigSize]byte
	wmask   [ConfigSize]byte // bits the guest may change
	bars    [NumBARs]barReg
	capNext int // offset for the next capability
	capLast int // offset of the last capability's next pointer; 0 if none
}

// NewConfigSpace returns a type-0 configuration space with the given identity,
// single-function, no BARs, no capabilities and no interrupt pin.
func NewConfigSpace(h Header) *ConfigSpace {
	c := &ConfigSpace{capNext: capStart}
	binary.LittleEndian.PutUint16(c.data[RegVendorID:], h.VendorID)
	binary.LittleEndian.PutUint16(c.data[RegDeviceID:], h.DeviceID)
	c.data[RegRevision] = h.Revision
	c.data[RegClass] = byte(h.Class)
	c.data[RegClass+1] = byte(h.Class >> 8)
	c.data[RegClass+2] = byte(h.Class >> 16)
	c.data[RegHeaderType] = 0x00
	binary.LittleEndian.PutUint16(c.data[RegSubsystemVendorID:], h.SubsystemVendorID)
	binary.LittleEndian.PutUint16(c.data[RegSubsystemID:], h.SubsystemID)

	binary.LittleEndian.PutUint16(c.wmask[RegCommand:], commandWritableMask)
	c.wmask[RegCacheLineSize] = 0xFF
	c.wmask[RegLatencyTimer] = 0xFF
	c.wmask[RegInterruptLine] = 0xFF
	return c
}

// SetBAR assigns BAR index (a 64-bit memory BAR also takes index+1).
func (c *ConfigSpace) SetBAR(index int, b BAR) error {
	if err := checkBAR(index, b); err != nil {
		return fmt.Errorf("pci: BAR %d: %w", index, err)
	}
	if c.bars[index].used || (b.Kind == BARMem64 && c.bars[index+1].used) {
		return fmt.Errorf("pci: BAR %d already assigned", index)
	}
	c.bars[index] = barReg{bar: b, used: true}
	c.bars[index].latch = c.barValue(index)
	if b.Kind == BARMem64 {
		c.bars[index+1] = barReg{bar: b, used: true, upper: true}
		c.bars[index+1].latch = c.barValue(index + 1)
	}
	return nil
}

func checkBAR(index int, b BAR) error {
	if index < 0 || index >= NumBARs || (b.Kind == BARMem64 && index+1 >= NumBARs) {
		return errors.New("index out of range")
	}
	if b.Size == 0 || bits.OnesCount64(b.Size) != 1 {
		return fmt.Errorf("size %#x is not a power of two", b.Size)
	}
	if b.Addr%b.Size != 0 {
		return fmt.Errorf("address %#x not aligned to size %#x", b.Addr, b.Size)
	}
	end := b.Addr + b.Size
	if end < b.Addr {
		return fmt.Errorf("address %#x + size %#x overflows", b.Addr, b.Size)
	}
	switch b.Kind {
	case BARMem32:
		if b.Size < 16 || end > 1<<32 {
			return fmt.Errorf("32-bit memory BAR [%#x, %#x) invalid", b.Addr, end)
		}
	case BARMem64:
		if b.Size < 16 {
			return fmt.Errorf("memory BAR size %#x below 16", b.Size)
		}
	case BARIO:
		if b.Size < 4 || b.Size > 256 || end > 1<<16 || b.Prefetchable {
			return fmt.Errorf("I/O BAR [%#x, %#x) invalid", b.Addr, end)
		}
	default:
		return fmt.Errorf("unknown kind %d", b.Kind)
	}
	return nil
}

// BAR returns the BAR assigned at index, if any. For a 64-bit BAR only the
// lower index reports it.
func (c *ConfigSpace) BAR(index int) (BAR, bool) {
	if index < 0 || index >= NumBARs || !c.bars[index].used || c.bars[index].upper {
		return BAR{}, false
	}
	return c.bars[index].bar, true
}

// AddCapability appends a capability with the given ID to the list; body is
// what follows the two-byte header (ID, next pointer). The capability is
// read-only to the guest until SetWritable says otherwise. It returns the
// capability's offset in configuration space.
func (c *ConfigSpace) AddCapability(id uint8, body []byte) (int, error) {
	off := c.capNext
	n := 2 + len(body)
	if off+n > ConfigSize {
		return 0, fmt.Errorf("pci: capability %#x of %d bytes does not fit at %#x", id, n, off)
	}
	c.data[off] = id
	c.data[off+1] = 0
	copy(c.data[off+2:], body)
	if c.capLast == 0 {
		c.data[RegCapabilities] = byte(off)
		c.data[RegStatus] |= StatusCapabilities
	} else {
		c.data[c.capLast] = byte(off)
	}
	c.capLast = off + 1
	c.capNext = (off + n + 3) &^ 3
	return off, nil
}

// SetWritable lets the guest change the bits set in mask, starting at
// offset. Header registers and BARs cannot be made writable this way.
func (c *ConfigSpace) SetWritable(offset int, mask []byte) error {
	if offset < capStart || offset > ConfigSize || len(mask) > ConfigSize-offset {
		return fmt.Errorf("pci: writable mask at %#x+%d outside device-specific space", offset, len(mask))
	}
	copy(c.wmask[offset:], mask)
	return nil
}

// RawWrite stores p at offset ignoring the guest write masks: the device
// side uses it to update read-only state. BAR registers are not affected.
func (c *ConfigSpace) RawWrite(offset int, p []byte) error {
	if offset < 0 || offset > ConfigSize || len(p) > ConfigSize-offset {
		return fmt.Errorf("pci: raw write at %#x+%d outside configuration space", offset, len(p))
	}
	for i, v := range p {
		if barIndex(offset+i) < 0 {
			c.data[offset+i] = v
		}
	}
	return nil
}

// Read serves a guest configuration read of len(data) bytes at offset.
// Bytes outside configuration space read as 0xFF.
func (c *ConfigSpace) Read(offset int, data []byte) {
	for i := range data {
		data[i] = c.byteAt(offset + i)
	}
}

func (c *ConfigSpace) byteAt(off int) byte {
	if off < 0 || off >= ConfigSize {
		return 0xFF
	}
	if i := barIndex(off); i >= 0 {
		return byte(c.barValue(i) >> (8 * (off & 3)))
	}
	return c.data[off]
}

// Write serves a guest configuration write of len(data) bytes at offset:
// only bits allowed by the write mask change; BAR registers implement
// sizing. Bytes outside configuration space are ignored.
func (c *ConfigSpace) Write(offset int, data []byte) {
	barsTouched := [NumBARs]bool{}
	var barNew [NumBARs]uint32
	for i, v := range data {
		off := offset + i
		if off < 0 || off >= ConfigSize {
			continue
		}
		if b := barIndex(off); b >= 0 {
			if !barsTouched[b] {
				barsTouched[b] = true
				barNew[b] = c.bars[b].latch
			}
			shift := 8 * (off & 3)
			barNew[b] = barNew[b]&^(0xFF<<shift) | uint32(v)<<shift
			continue
		}
		m := c.wmask[off]
		c.data[off] = c.data[off]&^m | v&m
	}
	for b, touched := range barsTouched {
		if touched {
			c.barWrite(b, barNew[b])
		}
	}
}

// barIndex returns the BAR register covering off, or -1.
func barIndex(off int) int {
	if off >= RegBAR0 && off < RegBAR0+4*NumBARs {
		return (off - RegBAR0) / 4
	}
	return -1
}

// barFlags returns the read-only low bits of a BAR's lower register.
func barFlags(b BAR) uint32 {
	switch b.Kind {
	case BARIO:
		return 0x1
	case BARMem64:
		f := uint32(0x4)
		if b.Prefetchable {
			f |= 0x8
		}
		return f
	default:
		if b.Prefetchable {
			return 0x8
		}
		return 0
	}
}

// barAddrMask returns the address bits of a BAR's lower register.
func barAddrMask(b BAR) uint32 {
	if b.Kind == BARIO {
		return 0xFFFFFFFC
	}
	return 0xFFFFFFF0
}

// barValue is what the guest reads from BAR register i.
func (c *ConfigSpace) barValue(i int) uint32 {
	r := &c.bars[i]
	if !r.used {
		return 0
	}
	v := r.bar.Addr
	if r.sizing {
		v = ^(r.bar.Size - 1)
	}
	if r.upper {
		return uint32(v >> 32)
	}
	return uint32(v)&barAddrMask(r.bar) | barFlags(r.bar)
}

// barWrite applies the guest's dword v to BAR register i (see the policy in
// the ConfigSpace comment). Narrow writes are merged into the last value
// written, so sizing with byte or word writes works too.
func (c *ConfigSpace) barWrite(i int, v uint32) {
	r := &c.bars[i]
	if !r.used {
		return
	}
	r.latch = v
	if r.upper {
		r.sizing = v == 0xFFFFFFFF
		return
	}
	m := barAddrMask(r.bar)
	if r.bar.Kind == BARIO {
		// I/O BARs decode 16 bits; drivers commonly size with 0xFFFF.
		m &= 0xFFFF
	}
	r.sizing = v&m == m
}
