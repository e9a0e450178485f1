package pci

import (
	"encoding/binary"
	"testing"
)

// conf1 drives a HostBridge like Linux's pci_conf1_read/write.
type conf1 struct{ b *HostBridge }

func confAddr(bus, dev, fn, reg int) uint32 {
	return 1<<31 | uint32(bus)<<16 | uint32(dev)<<11 | uint32(fn)<<8 | uint32(reg&0xFC)
}

func (c conf1) setAddr(a uint32) {
	var p [4]byte
	binary.LittleEndian.PutUint32(p[:], a)
	c.b.Write(0, p[:])
}

func (c conf1) read(bus, dev, fn, reg, n int) uint32 {
	c.setAddr(confAddr(bus, dev, fn, reg))
	p := make([]byte, n)
	c.b.Read(4+uint64(reg&3), p)
	var v uint32
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint32(p[i])
	}
	return v
}

func (c conf1) write(bus, dev, fn, reg, n int, v uint32) {
	c.setAddr(confAddr(bus, dev, fn, reg))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(v >> (8 * i))
	}
	c.b.Write(4+uint64(reg&3), p)
}

// recorder is an Endpoint that remembers the last access.
type recorder struct {
	lastOff int
	lastLen int
	wrote   []byte
}

func (r *recorder) ConfigRead(off int, data []byte) {
	r.lastOff, r.lastLen = off, len(data)
	for i := range data {
		data[i] = byte(off + i)
	}
}

func (r *recorder) ConfigWrite(off int, data []byte) {
	r.lastOff, r.lastLen = off, len(data)
	r.wrote = append([]byte(nil), data...)
}

func TestConf1AddressRegister(t *testing.T) {
	b := NewHostBridge()
	c := conf1{b}
	// Linux pci_check_type1: a 32-bit write then read of 0xCF8.
	c.setAddr(0x80000000)
	p := make([]byte, 4)
	b.Read(0, p)
	if got := binary.LittleEndian.Uint32(p); got != 0x80000000 {
		t.Fatalf("CONFIG_ADDRESS = %#x", got)
	}
	// Reserved bits read as zero.
	c.setAddr(0xFFFFFFFF)
	b.Read(0, p)
	if got := binary.LittleEndian.Uint32(p); got != 0x80FFFFFC {
		t.Fatalf("CONFIG_ADDRESS reserved bits: %#x", got)
	}
	// Byte writes to 0xCF8-0xCFB do not touch the address register.
	b.Write(1, []byte{0x12})
	b.Write(3, []byte{0x01})
	b.Read(0, p)
	if got := binary.LittleEndian.Uint32(p); got != 0x80FFFFFC {
		t.Fatalf("narrow write changed CONFIG_ADDRESS: %#x", got)
	}
	// Narrow reads of the address register read as all ones.
	q := make([]byte, 2)
	b.Read(0, q)
	if q[0] != 0xFF || q[1] != 0xFF {
		t.Fatalf("narrow read of CONFIG_ADDRESS = %x", q)
	}
}

func TestHostBridgeIdentity(t *testing.T) {
	c := conf1{NewHostBridge()}
	if v := c.read(0, 0, 0, RegVendorID, 4); v != HostBridgeDeviceID<<16|HostBridgeVendorID {
		t.Fatalf("vendor/device = %#x", v)
	}
	if v := c.read(0, 0, 0, 0x08, 4) >> 8; v != HostBridgeClass {
		t.Fatalf("class = %#x", v)
	}
	if v := c.read(0, 0, 0, RegHeaderType, 1); v != 0 {
		t.Fatalf("header type = %#x", v)
	}
	// Byte and word reads at offsets within the dword.
	if v := c.read(0, 0, 0, 1, 1); v != HostBridgeVendorID>>8 {
		t.Fatalf("byte read at 1 = %#x", v)
	}
	if v := c.read(0, 0, 0, 2, 2); v != HostBridgeDeviceID {
		t.Fatalf("word read at 2 = %#x", v)
	}
}

func TestAbsentReadsAllOnes(t *testing.T) {
	b := NewHostBridge()
	c := conf1{b}
	cases := []struct{ bus, dev, fn int }{
		{0, 1, 0},  // empty slot
		{0, 31, 0}, // last slot
		{1, 0, 0},  // other bus
		{0, 0, 1},  // other function of the bridge
	}
	for _, tc := range cases {
		for _, n := range []int{1, 2, 4} {
			want := uint32(1)<<(8*n) - 1
			if v := c.read(tc.bus, tc.dev, tc.fn, 0, n); v != want {
				t.Errorf("%d:%d.%d read%d = %#x, want %#x", tc.bus, tc.dev, tc.fn, n, v, want)
			}
		}
		c.write(tc.bus, tc.dev, tc.fn, RegCommand, 2, 0xFFFF) // must not crash
	}
	// Enable bit clear: nothing is selected.
	c.setAddr(0)
	p := make([]byte, 4)
	b.Read(4, p)
	if binary.LittleEndian.Uint32(p) != 0xFFFFFFFF {
		t.Fatalf("disabled CONFIG_ADDRESS read %x", p)
	}
}

func TestConf1DecodesToEndpoint(t *testing.T) {
	b := NewHostBridge()
	r := &recorder{}
	slot, err := b.Add(r)
	if err != nil || slot != 1 {
		t.Fatalf("Add = %d, %v", slot, err)
	}
	c := conf1{b}
	if v := c.read(0, 1, 0, 0x44, 4); v != 0x47464544 || r.lastOff != 0x44 || r.lastLen != 4 {
		t.Fatalf("dword read: %#x off %#x len %d", v, r.lastOff, r.lastLen)
	}
	if v := c.read(0, 1, 0, 0x46, 2); v != 0x4746 || r.lastOff != 0x46 {
		t.Fatalf("word read: %#x off %#x", v, r.lastOff)
	}
	if v := c.read(0, 1, 0, 0x47, 1); v != 0x47 || r.lastOff != 0x47 {
		t.Fatalf("byte read: %#x off %#x", v, r.lastOff)
	}
	c.write(0, 1, 0, 0x3D, 1, 0xAB)
	if r.lastOff != 0x3D || len(r.wrote) != 1 || r.wrote[0] != 0xAB {
		t.Fatalf("byte write: off %#x %x", r.lastOff, r.wrote)
	}
	// Accesses crossing the end of the data window and 8-byte accesses are dropped.
	r.lastOff = -1
	c.setAddr(confAddr(0, 1, 0, 0x40))
	p := make([]byte, 4)
	b.Read(6, p)
	if binary.LittleEndian.Uint32(p) != 0xFFFFFFFF || r.lastOff != -1 {
		t.Fatalf("crossing read reached endpoint: %x", p)
	}
	b.Write(4, make([]byte, 8))
	if r.lastOff != -1 {
		t.Fatal("8-byte write reached endpoint")
	}
	// Out-of-window offsets.
	b.Read(8, p)
	b.Write(100, p)
}

func TestAddFillsSlots(t *testing.T) {
	b := NewHostBridge()
	for want := 1; want < NumSlots; want++ {
		s, err := b.Add(&recorder{})
		if err != nil || s != want {
			t.Fatalf("Add #%d = %d, %v", want, s, err)
		}
	}
	if _, err := b.Add(&recorder{}); err == nil {
		t.Fatal("Add on a full bus succeeded")
	}
	if _, err := b.Add(nil); err == nil {
		t.Fatal("Add(nil) succeeded")
	}
}
