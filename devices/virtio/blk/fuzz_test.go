package blk

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// fuzzChain turns layout into a chain over content placed at 0x1000: each
// 3-byte record is a buffer length (u16, mod 4096) and a flags byte (bit 0:
// device-writable, bit 1: place the buffer out of guest RAM). Buffers are
// cut consecutively from content, wrapping around.
func fuzzChain(layout []byte, contentLen int) *queue.Chain {
	c := &queue.Chain{}
	var off uint64
	for i := 0; i+3 <= len(layout) && len(c.Descs) < 64; i += 3 {
		n := uint64(binary.LittleEndian.Uint16(layout[i:]) % 4096)
		if contentLen > 0 {
			off %= uint64(contentLen)
		}
		addr := 0x1000 + off
		if layout[i+2]&2 != 0 {
			addr = 1 << 40
		}
		c.Descs = append(c.Descs, queue.Desc{Addr: addr, Len: uint32(n), Write: layout[i+2]&1 != 0})
		off += n
	}
	return c
}

// FuzzParseRequest checks that ParseRequest never panics and that whatever
// it accepts is in range.
func FuzzParseRequest(f *testing.F) {
	seed := func(layout []byte, content []byte, capacity uint64) { f.Add(layout, content, capacity) }
	rec := func(n uint16, flags byte) []byte { return []byte{byte(n), byte(n >> 8), flags} }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	seed(cat(rec(16, 0), rec(512, 1), rec(1, 1)), header(TypeIn, 3), 8)
	seed(cat(rec(16, 0), rec(1024, 0), rec(1, 1)), header(TypeOut, 6), 8)
	seed(cat(rec(4, 0), rec(12, 0), rec(513, 1)), header(TypeIn, 7), 8)
	seed(cat(rec(16, 0), rec(1, 1)), header(TypeFlush, 0), 8)
	seed(cat(rec(16, 0), rec(21, 1)), header(TypeGetID, 0), 8)
	seed(cat(rec(48, 0), rec(1, 1)), cat(header(TypeDiscard, 0), segments(Segment{Sector: 1, Sectors: 2}, Segment{Sector: 4, Sectors: 4})), 8)
	seed(cat(rec(32, 0), rec(1, 1)), cat(header(TypeWriteZeroes, 0), segments(Segment{Sector: 0, Sectors: 8, Unmap: true})), 8)
	seed(cat(rec(16, 0), rec(512, 3), rec(1, 1)), header(TypeIn, 0), 8)
	seed(cat(rec(16, 0), rec(1, 1)), header(TypeIn, 1<<63), 1<<63)

	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 1 << 16}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { mem.Close() })
	f.Fuzz(func(t *testing.T, layout, content []byte, capacity uint64) {
		if len(content) > 0x8000 {
			content = content[:0x8000]
		}
		if err := mem.Zero(0, 1<<16); err != nil {
			t.Fatal(err)
		}
		if err := mem.WriteAt(content, 0x1000); err != nil {
			t.Fatal(err)
		}
		c := fuzzChain(layout, len(content))
		r, err := ParseRequest(mem, c, capacity)
		if errors.Is(err, ErrNoStatus) {
			if c.WritableLen() != 0 {
				t.Fatalf("ErrNoStatus with %d writable bytes", c.WritableLen())
			}
			return
		}
		if r.StatusOffset+1 != c.WritableLen() {
			t.Fatalf("status offset %d, writable %d", r.StatusOffset, c.WritableLen())
		}
		if err != nil {
			if !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		switch r.Type {
		case TypeIn, TypeOut:
			if r.Len%SectorSize != 0 || !inRange(r.Sector, uint64(r.Len/SectorSize), capacity) {
				t.Fatalf("accepted %+v with capacity %d", r, capacity)
			}
			part := c.WritableLen() - 1
			if r.Type == TypeOut {
				part = c.ReadableLen() - headerSize
			}
			if uint64(r.Len) != part {
				t.Fatalf("len %d, data part %d", r.Len, part)
			}
		case TypeFlush:
		case TypeGetID:
			if r.Len > IDBytes || uint64(r.Len) > c.WritableLen()-1 {
				t.Fatalf("get id len %d", r.Len)
			}
		case TypeDiscard, TypeWriteZeroes:
			if len(r.Segments) == 0 || len(r.Segments) > MaxDiscardSeg {
				t.Fatalf("%d segments", len(r.Segments))
			}
			for _, s := range r.Segments {
				if !inRange(s.Sector, uint64(s.Sectors), capacity) || (r.Type == TypeDiscard && s.Unmap) {
					t.Fatalf("accepted segment %+v, capacity %d", s, capacity)
				}
			}
		default:
			t.Fatalf("accepted type %d", r.Type)
		}
	})
}
