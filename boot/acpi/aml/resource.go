package aml

import (
	"encoding/binary"
	"fmt"
)

// Resource is one resource descriptor of a ResourceTemplate (ACPI 6.5,
// 6.4 "Resource Data Types for ACPI").
type Resource interface {
	appendResource(b []byte) ([]byte, error)
}

// Resource descriptor tags.
const (
	tagIRQ           = 0x22 // small, type 0x04, length 2 (no flags byte)
	tagIO            = 0x47 // small, type 0x08, length 7
	tagEnd           = 0x79 // small, type 0x0F, length 1
	tagMemory32Fixed = 0x86
	tagDWordAddr     = 0x87
	tagWordAddr      = 0x88
	tagExtIRQ        = 0x89
	tagQWordAddr     = 0x8a

	spaceMemory = 0
	spaceIO     = 1
	spaceBus    = 2

	// General flags of address space descriptors: producer (bit 0 clear),
	// positive decode (bit 1 clear), minimum and maximum fixed.
	addrMinFixed = 1 << 2
	addrMaxFixed = 1 << 3
)

// ResourceTemplateOf is a resource template: a buffer of descriptors closed
// by an end tag.
type ResourceTemplateOf []Resource

// ResourceTemplate returns the template of descs, for a _CRS.
func ResourceTemplate(descs ...Resource) ResourceTemplateOf { return ResourceTemplateOf(descs) }

// Bytes returns the encoded descriptors and end tag, without the buffer
// around them.
func (t ResourceTemplateOf) Bytes() ([]byte, error) {
	var b []byte
	var err error
	for _, d := range t {
		if d == nil {
			return nil, fmt.Errorf("%w: nil resource", ErrInvalid)
		}
		if b, err = d.appendResource(b); err != nil {
			return nil, err
		}
	}
	// Checksum 0: "the checksum is ignored" (6.4.2.9).
	return append(b, tagEnd, 0), nil
}

func (t ResourceTemplateOf) appendAML(b []byte) ([]byte, error) {
	body, err := t.Bytes()
	if err != nil {
		return nil, err
	}
	return Buffer(body).appendAML(b)
}

// IO is a 16-bit decoded I/O port range: IO(Decode16, Min, Max, Align, Len).
type IO struct {
	Min, Max uint16
	Align    uint8
	Len      uint8
}

func (r IO) appendResource(b []byte) ([]byte, error) {
	if r.Max < r.Min {
		return nil, fmt.Errorf("%w: IO max %#x below min %#x", ErrInvalid, r.Max, r.Min)
	}
	b = append(b, tagIO, 1) // decodes 16 bits
	b = binary.LittleEndian.AppendUint16(b, r.Min)
	b = binary.LittleEndian.AppendUint16(b, r.Max)
	return append(b, r.Align, r.Len), nil
}

// IRQNoFlags is an ISA IRQ descriptor without flags byte: edge-triggered,
// active-high, exclusive. IRQs are 0..15.
type IRQNoFlags struct {
	IRQs []uint8
}

func (r IRQNoFlags) appendResource(b []byte) ([]byte, error) {
	var mask uint16
	for _, irq := range r.IRQs {
		if irq > 15 {
			return nil, fmt.Errorf("%w: ISA IRQ %d", ErrInvalid, irq)
		}
		mask |= 1 << irq
	}
	return append(b, tagIRQ, byte(mask), byte(mask>>8)), nil
}

// Memory32Fixed is a fixed 32-bit memory range: Memory32Fixed(ReadWrite or
// ReadOnly, Base, Len).
type Memory32Fixed struct {
	ReadWrite bool
	Base, Len uint32
}

func (r Memory32Fixed) appendResource(b []byte) ([]byte, error) {
	if r.Len > 0 && r.Base+r.Len-1 < r.Base {
		return nil, fmt.Errorf("%w: Memory32Fixed [%#x+%#x) overflows", ErrInvalid, r.Base, r.Len)
	}
	var info byte
	if r.ReadWrite {
		info = 1
	}
	b = append(b, tagMemory32Fixed, 9, 0, info)
	b = binary.LittleEndian.AppendUint32(b, r.Base)
	return binary.LittleEndian.AppendUint32(b, r.Len), nil
}

// Interrupt is an extended interrupt descriptor for a device consuming
// GSIs: Interrupt(ResourceConsumer, Edge/Level, ActiveHigh/Low,
// Exclusive/Shared) {GSIs}.
type Interrupt struct {
	Edge      bool // edge- rather than level-triggered
	ActiveLow bool
	Shared    bool
	GSIs      []uint32
}

func (r Interrupt) appendResource(b []byte) ([]byte, error) {
	if len(r.GSIs) == 0 || len(r.GSIs) > 255 {
		return nil, fmt.Errorf("%w: Interrupt with %d GSIs", ErrInvalid, len(r.GSIs))
	}
	flags := byte(1) // consumer
	if r.Edge {
		flags |= 1 << 1
	}
	if r.ActiveLow {
		flags |= 1 << 2
	}
	if r.Shared {
		flags |= 1 << 3
	}
	b = append(b, tagExtIRQ)
	b = binary.LittleEndian.AppendUint16(b, uint16(2+4*len(r.GSIs)))
	b = append(b, flags, byte(len(r.GSIs)))
	for _, g := range r.GSIs {
		b = binary.LittleEndian.AppendUint32(b, g)
	}
	return b, nil
}

// WordBusNumber is a bus number range a host bridge produces:
// WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, Min,
// Max, 0, Max-Min+1).
type WordBusNumber struct {
	Min, Max uint16
}

func (r WordBusNumber) appendResource(b []byte) ([]byte, error) {
	return appendWordAddr(b, spaceBus, 0, r.Min, r.Max)
}

// WordIO is an I/O window a host bridge produces: WordIO(ResourceProducer,
// MinFixed, MaxFixed, PosDecode, EntireRange, 0, Min, Max, 0, Max-Min+1).
type WordIO struct {
	Min, Max uint16
}

func (r WordIO) appendResource(b []byte) ([]byte, error) {
	const entireRange = 3
	return appendWordAddr(b, spaceIO, entireRange, r.Min, r.Max)
}

func appendWordAddr(b []byte, space, typeFlags byte, lo, hi uint16) ([]byte, error) {
	if hi < lo || hi == 0xffff && lo == 0 {
		return nil, fmt.Errorf("%w: word range [%#x, %#x]", ErrInvalid, lo, hi)
	}
	le := binary.LittleEndian
	b = append(b, tagWordAddr)
	b = le.AppendUint16(b, 13)
	b = append(b, space, addrMinFixed|addrMaxFixed, typeFlags)
	b = le.AppendUint16(b, 0) // granularity
	b = le.AppendUint16(b, lo)
	b = le.AppendUint16(b, hi)
	b = le.AppendUint16(b, 0) // translation offset
	return le.AppendUint16(b, hi-lo+1), nil
}

// DWordMemory is a 32-bit memory window a host bridge produces:
// DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable
// or NonCacheable, ReadWrite, 0, Min, Max, 0, Max-Min+1).
type DWordMemory struct {
	Cacheable bool
	Min, Max  uint32
}

func (r DWordMemory) appendResource(b []byte) ([]byte, error) {
	if r.Max < r.Min || r.Max == 0xffff_ffff && r.Min == 0 {
		return nil, fmt.Errorf("%w: DWordMemory [%#x, %#x]", ErrInvalid, r.Min, r.Max)
	}
	le := binary.LittleEndian
	b = append(b, tagDWordAddr)
	b = le.AppendUint16(b, 23)
	b = append(b, spaceMemory, addrMinFixed|addrMaxFixed, memTypeFlags(r.Cacheable))
	for _, v := range []uint32{0, r.Min, r.Max, 0, r.Max - r.Min + 1} {
		b = le.AppendUint32(b, v)
	}
	return b, nil
}

// QWordMemory is a 64-bit memory window a host bridge produces, like
// DWordMemory.
type QWordMemory struct {
	Cacheable bool
	Min, Max  uint64
}

func (r QWordMemory) appendResource(b []byte) ([]byte, error) {
	if r.Max < r.Min || r.Max == ^uint64(0) && r.Min == 0 {
		return nil, fmt.Errorf("%w: QWordMemory [%#x, %#x]", ErrInvalid, r.Min, r.Max)
	}
	le := binary.LittleEndian
	b = append(b, tagQWordAddr)
	b = le.AppendUint16(b, 43)
	b = append(b, spaceMemory, addrMinFixed|addrMaxFixed, memTypeFlags(r.Cacheable))
	for _, v := range []uint64{0, r.Min, r.Max, 0, r.Max - r.Min + 1} {
		b = le.AppendUint64(b, v)
	}
	return b, nil
}

// memTypeFlags: read/write (bit 0), cacheable (_MEM = 1) or not (0) in
// bits 1..2, AddressRangeMemory.
func memTypeFlags(cacheable bool) byte {
	f := byte(1)
	if cacheable {
		f |= 1 << 1
	}
	return f
}
