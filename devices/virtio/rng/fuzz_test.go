package rng

import (
	"encoding/binary"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// FuzzFill checks that fill never panics, never writes outside the chain's
// writable buffers in guest RAM, and reports at most what it may: nothing
// for a chain with a readable or out-of-RAM buffer, else the writable
// length capped at MaxRequest. Each 5-byte record of layout is a buffer:
// address (u16, times 16), length (u16) and flags
// (bit 0: device-writable, bit 1: outside guest RAM).
func FuzzFill(f *testing.F) {
	rec := func(off, n uint16, flags byte) []byte {
		b := make([]byte, 5)
		binary.LittleEndian.PutUint16(b, off)
		binary.LittleEndian.PutUint16(b[2:], n)
		b[4] = flags
		return b
	}
	f.Add(rec(0, 64, 1))
	f.Add(append(rec(0, 4096, 1), rec(8, 65535, 1)...))
	f.Add(append(rec(0, 16, 0), rec(1, 16, 1)...))
	f.Add(rec(0, 64, 3))
	f.Add(rec(65535, 65535, 1))

	const ram = 1 << 20
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: ram}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { mem.Close() })
	d := New()
	var bufs [][]byte
	f.Fuzz(func(t *testing.T, layout []byte) {
		c := &queue.Chain{}
		for i := 0; i+5 <= len(layout) && len(c.Descs) < 32; i += 5 {
			addr := uint64(binary.LittleEndian.Uint16(layout[i:])) * 16 % ram
			if layout[i+4]&2 != 0 {
				addr = 1 << 40
			}
			c.Descs = append(c.Descs, queue.Desc{Addr: addr, Len: uint32(binary.LittleEndian.Uint16(layout[i+2:])), Write: layout[i+4]&1 != 0})
		}
		inRAM := true
		for _, dsc := range c.Descs {
			if !mem.Contains(dsc.Addr, uint64(dsc.Len)) {
				inRAM = false
			}
		}
		n := d.fill(mem, c, &bufs)
		switch {
		case c.ReadableLen() != 0 && n != 0:
			t.Fatalf("wrote %d bytes into a chain with readable buffers", n)
		case uint64(n) > min(c.WritableLen(), MaxRequest):
			t.Fatalf("wrote %d bytes, more than %d writable (cap %d)", n, c.WritableLen(), MaxRequest)
		case c.ReadableLen() == 0 && inRAM && uint64(n) != min(c.WritableLen(), MaxRequest):
			t.Fatalf("wrote %d bytes of %d writable in RAM", n, c.WritableLen())
		}
	})
}
