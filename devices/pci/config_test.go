package pci

import (
	"encoding/binary"
	"testing"
)

func rd32(c *ConfigSpace, off int) uint32 {
	var p [4]byte
	c.Read(off, p[:])
	return binary.LittleEndian.Uint32(p[:])
}

func wr32(c *ConfigSpace, off int, v uint32) {
	var p [4]byte
	binary.LittleEndian.PutUint32(p[:], v)
	c.Write(off, p[:])
}

func testHeader() Header {
	return Header{VendorID: 0x1AF4, DeviceID: 0x1042, Revision: 1, Class: 0x018000,
		SubsystemVendorID: 0x1AF4, SubsystemID: 0x42}
}

func TestHeaderRegisters(t *testing.T) {
	c := NewConfigSpace(testHeader())
	if v := rd32(c, 0); v != 0x10421AF4 {
		t.Fatalf("id = %#x", v)
	}
	if v := rd32(c, 8); v != 0x01800001 {
		t.Fatalf("class/rev = %#x", v)
	}
	if v := rd32(c, RegSubsystemVendorID); v != 0x00421AF4 {
		t.Fatalf("subsystem = %#x", v)
	}
	// Identity is read-only.
	wr32(c, 0, 0)
	wr32(c, 8, 0)
	if rd32(c, 0) != 0x10421AF4 || rd32(c, 8) != 0x01800001 {
		t.Fatal("identity registers writable")
	}
	// Command: only defined bits stick; Status read-only.
	wr32(c, RegCommand, 0xFFFFFFFF)
	if v := rd32(c, RegCommand); v != commandWritableMask {
		t.Fatalf("command/status after all-ones write = %#x", v)
	}
	// Interrupt line is scratch, pin is read-only zero (no INTx).
	wr32(c, RegInterruptLine, 0xFFFFFFFF)
	if v := rd32(c, RegInterruptLine); v != 0xFF {
		t.Fatalf("interrupt line/pin = %#x", v)
	}
	// Expansion ROM: absent.
	wr32(c, RegExpansionROM, 0xFFFFFFFF)
	if v := rd32(c, RegExpansionROM); v != 0 {
		t.Fatalf("ROM BAR = %#x", v)
	}
	// Outside configuration space.
	p := []byte{0, 0}
	c.Read(255, p)
	if p[1] != 0xFF {
		t.Fatalf("read past end = %x", p)
	}
	c.Write(-1, []byte{1, 2})
	c.Write(300, []byte{1})
}

// sizeBAR sizes a BAR register like Linux __pci_read_base.
func sizeBAR(c *ConfigSpace, off int) (orig, mask uint32) {
	orig = rd32(c, off)
	wr32(c, off, 0xFFFFFFFF)
	mask = rd32(c, off)
	wr32(c, off, orig)
	return orig, mask
}

func TestBARSizing(t *testing.T) {
	c := NewConfigSpace(testHeader())
	if err := c.SetBAR(0, BAR{Kind: BARMem64, Addr: 0xC000_8000, Size: 0x8000}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBAR(2, BAR{Kind: BARMem32, Addr: 0xC010_0000, Size: 0x1000, Prefetchable: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBAR(4, BAR{Kind: BARIO, Addr: 0x1000, Size: 0x20}); err != nil {
		t.Fatal(err)
	}
	lo, loMask := sizeBAR(c, 0x10)
	hi, hiMask := sizeBAR(c, 0x14)
	if lo != 0xC000_8004 || hi != 0 {
		t.Fatalf("64-bit BAR reads %#x %#x", lo, hi)
	}
	size := ^(uint64(hiMask)<<32 | uint64(loMask&^0xF)) + 1
	if loMask&0xF != 0x4 || size != 0x8000 {
		t.Fatalf("64-bit BAR mask %#x:%#x size %#x", hiMask, loMask, size)
	}
	if rd32(c, 0x10) != 0xC000_8004 || rd32(c, 0x14) != 0 {
		t.Fatal("64-bit BAR not restored after sizing")
	}
	orig, mask := sizeBAR(c, 0x18)
	if orig != 0xC010_0008 || mask != 0xFFFFF008 {
		t.Fatalf("32-bit prefetchable BAR %#x mask %#x", orig, mask)
	}
	orig, mask = sizeBAR(c, 0x20)
	if orig != 0x1001 || mask != 0xFFFFFFE1 {
		t.Fatalf("I/O BAR %#x mask %#x", orig, mask)
	}
	// Unused BARs are hardwired to zero.
	if _, mask := sizeBAR(c, 0x1C); mask != 0 {
		t.Fatalf("unused BAR 3 sizes to %#x", mask)
	}
	if _, mask := sizeBAR(c, 0x24); mask != 0 {
		t.Fatalf("unused BAR 5 sizes to %#x", mask)
	}
	// Relocation is ignored: the BAR keeps its assigned address.
	wr32(c, 0x10, 0xD000_0000)
	wr32(c, 0x14, 0x1)
	if rd32(c, 0x10) != 0xC000_8004 || rd32(c, 0x14) != 0 {
		t.Fatalf("BAR moved to %#x:%#x", rd32(c, 0x14), rd32(c, 0x10))
	}
	if b, ok := c.BAR(0); !ok || b.Addr != 0xC000_8000 {
		t.Fatalf("BAR(0) = %+v %v", b, ok)
	}
	if _, ok := c.BAR(1); ok {
		t.Fatal("BAR(1) reports the upper half of BAR 0")
	}
	// Byte-wise sizing of the lower register also works.
	c.Write(0x10, []byte{0xFF, 0xFF})
	c.Write(0x12, []byte{0xFF, 0xFF})
	if v := rd32(c, 0x10); v != 0xFFFF8004 {
		t.Fatalf("byte-wise sizing read %#x", v)
	}
}

func TestSetBARRejects(t *testing.T) {
	bad := []struct {
		i int
		b BAR
	}{
		{-1, BAR{Kind: BARMem32, Addr: 0, Size: 16}},
		{6, BAR{Kind: BARMem32, Addr: 0, Size: 16}},
		{5, BAR{Kind: BARMem64, Addr: 0, Size: 16}},
		{0, BAR{Kind: BARMem32, Addr: 0, Size: 24}},
		{0, BAR{Kind: BARMem32, Addr: 0x10, Size: 0x100}},
		{0, BAR{Kind: BARMem32, Addr: 0, Size: 8}},
		{0, BAR{Kind: BARMem32, Addr: 0xFFFF_F000, Size: 0x2000}},
		{0, BAR{Kind: BARMem64, Addr: 1 << 63, Size: 1 << 63}},
		{0, BAR{Kind: BARMem64, Addr: 0, Size: 0}},
		{0, BAR{Kind: BARIO, Addr: 0xFFF0, Size: 0x100}},
		{0, BAR{Kind: BARIO, Addr: 0, Size: 0x20, Prefetchable: true}},
		{0, BAR{Kind: 9, Addr: 0, Size: 0x20}},
	}
	for _, tc := range bad {
		c := NewConfigSpace(testHeader())
		if err := c.SetBAR(tc.i, tc.b); err == nil {
			t.Errorf("SetBAR(%d, %+v) accepted", tc.i, tc.b)
		}
	}
	c := NewConfigSpace(testHeader())
	if err := c.SetBAR(1, BAR{Kind: BARMem64, Addr: 0, Size: 16}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBAR(2, BAR{Kind: BARMem32, Addr: 0, Size: 16}); err == nil {
		t.Fatal("overlapping BAR accepted")
	}
}

func TestCapabilityList(t *testing.T) {
	c := NewConfigSpace(testHeader())
	if v := rd32(c, RegCommand) >> 16; v&StatusCapabilities != 0 {
		t.Fatal("capability bit set with no capabilities")
	}
	a, err := c.AddCapability(CapIDVendor, make([]byte, 14))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.AddCapability(CapIDMSIX, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.AddCapability(CapIDVendor, make([]byte, 1)) // odd length: next is realigned
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.AddCapability(CapIDVendor, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a != 0x40 || b != 0x50 || d != 0x5C || e != 0x60 {
		t.Fatalf("offsets %#x %#x %#x %#x", a, b, d, e)
	}
	if v := rd32(c, RegCommand) >> 16; v&StatusCapabilities == 0 {
		t.Fatal("capability bit clear")
	}
	var ids []byte
	var offs []int
	p := make([]byte, 2)
	c.Read(RegCapabilities, p[:1])
	for off, n := int(p[0]), 0; off != 0; n++ {
		if n > 48 || off < 0x40 || off&3 != 0 {
			t.Fatalf("bad capability pointer %#x", off)
		}
		c.Read(off, p)
		ids = append(ids, p[0])
		offs = append(offs, off)
		off = int(p[1])
	}
	if len(ids) != 4 || ids[1] != CapIDMSIX || offs[1] != 0x50 || offs[3] != 0x60 {
		t.Fatalf("walk: ids %x offs %x", ids, offs)
	}
	// Capabilities are read-only until made writable.
	c.Write(0x52, []byte{0xAA, 0xAA})
	if rd32(c, 0x50)>>16 != 0x0201 {
		t.Fatalf("read-only capability changed: %#x", rd32(c, 0x50))
	}
	if err := c.SetWritable(0x53, []byte{0xC0}); err != nil {
		t.Fatal(err)
	}
	c.Write(0x52, []byte{0xFF, 0xFF})
	if rd32(c, 0x50)>>16 != 0xC201 {
		t.Fatalf("writable mask not applied: %#x", rd32(c, 0x50))
	}
	// The list runs out of room.
	if _, err := c.AddCapability(CapIDVendor, make([]byte, 200)); err == nil {
		t.Fatal("oversized capability accepted")
	}
	if err := c.SetWritable(0x10, []byte{0xFF}); err == nil {
		t.Fatal("SetWritable on a BAR accepted")
	}
	if err := c.SetWritable(0xFF, []byte{0xFF, 0xFF}); err == nil {
		t.Fatal("SetWritable past the end accepted")
	}
	if err := c.RawWrite(0x54, []byte{9}); err != nil || rd32(c, 0x54)&0xFF != 9 {
		t.Fatalf("RawWrite: %v", err)
	}
	if err := c.RawWrite(0xFF, []byte{9, 9}); err == nil {
		t.Fatal("RawWrite past the end accepted")
	}
}
