package pci

import (
	"encoding/binary"
	"testing"
)

// FuzzHostBridge feeds random port accesses to a bus with one endpoint
// whose configuration space has BARs and capabilities: nothing may panic,
// identity registers must not change, BARs must stay where they were put.
func FuzzHostBridge(f *testing.F) {
	f.Add([]byte{0, 4, 0x00, 0x08, 0x00, 0x80, 4, 4, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{0, 4, 0x10, 0x08, 0x00, 0x80, 4, 4, 0xFF, 0xFF, 0xFF, 0xFF, 0x84, 4})
	f.Add([]byte{0, 4, 0x40, 0x08, 0x00, 0x80, 7, 1, 0xFF, 0x86, 2})
	f.Fuzz(func(t *testing.T, prog []byte) {
		b := NewHostBridge()
		cs := NewConfigSpace(testHeader())
		if err := cs.SetBAR(0, BAR{Kind: BARMem64, Addr: 0xC000_0000, Size: 0x8000}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.AddCapability(CapIDMSIX, make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		if err := cs.SetWritable(0x43, []byte{0xC0}); err != nil {
			t.Fatal(err)
		}
		ep := &bridgeFunction{cs: cs}
		if _, err := b.Add(ep); err != nil {
			t.Fatal(err)
		}
		// Each op: [offset|0x80 for read] [size] [data...].
		for len(prog) >= 2 {
			off := uint64(prog[0] & 0x7F % 12)
			read := prog[0]&0x80 != 0
			n := int(prog[1]%9) + 0
			prog = prog[2:]
			if n > len(prog) {
				n = len(prog)
			}
			data := append([]byte(nil), prog[:n]...)
			prog = prog[n:]
			if read {
				b.Read(off, data)
			} else {
				b.Write(off, data)
			}
		}
		var p [4]byte
		cs.Read(0, p[:])
		if binary.LittleEndian.Uint32(p[:]) != 0x10421AF4 {
			t.Fatalf("identity changed: %x", p)
		}
		if bar, ok := cs.BAR(0); !ok || bar.Addr != 0xC000_0000 {
			t.Fatalf("BAR moved: %+v", bar)
		}
	})
}
