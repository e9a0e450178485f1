package blk

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

const reqMem = 1 << 20

// chainBuilder lays buffers out consecutively in guest memory.
type chainBuilder struct {
	mem  *memory.Guest
	next uint64
	c    queue.Chain
}

func newChainBuilder(t testing.TB) *chainBuilder {
	t.Helper()
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: reqMem}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	return &chainBuilder{mem: mem, next: 0x1000}
}

// add appends a buffer holding data (readable) or of len(data) bytes (writable).
func (b *chainBuilder) add(data []byte, write bool) uint64 {
	a := b.next
	if err := b.mem.WriteAt(data, a); err != nil {
		panic(err)
	}
	b.next += uint64(len(data)) + 64
	b.c.Descs = append(b.c.Descs, queue.Desc{Addr: a, Len: uint32(len(data)), Write: write})
	return a
}

func header(typ uint32, sector uint64) []byte {
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h[0:], typ)
	binary.LittleEndian.PutUint32(h[4:], 0xdeadbeef) // reserved: ignored
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

func segments(segs ...Segment) []byte {
	out := make([]byte, 16*len(segs))
	for i, s := range segs {
		binary.LittleEndian.PutUint64(out[16*i:], s.Sector)
		binary.LittleEndian.PutUint32(out[16*i+8:], s.Sectors)
		if s.Unmap {
			binary.LittleEndian.PutUint32(out[16*i+12:], SegmentFlagUnmap)
		}
	}
	return out
}

func TestParseReadWrite(t *testing.T) {
	const capacity = 100
	// IN with the header split 5+11 and the status sharing the data buffer.
	b := newChainBuilder(t)
	h := header(TypeIn, 98)
	b.add(h[:5], false)
	b.add(h[5:], false)
	b.add(make([]byte, 512), true)
	b.add(make([]byte, 513), true)
	r, err := ParseRequest(b.mem, &b.c, capacity)
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != TypeIn || r.Sector != 98 || r.Len != 1024 || r.StatusOffset != 1024 {
		t.Fatalf("IN parsed as %+v", r)
	}

	// OUT with data split over three buffers, one of them with the header.
	b = newChainBuilder(t)
	b.add(append(header(TypeOut, 1), make([]byte, 100)...), false)
	b.add(make([]byte, 412), false)
	b.add(make([]byte, 512), false)
	b.add([]byte{0xff}, true)
	r, err = ParseRequest(b.mem, &b.c, capacity)
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != TypeOut || r.Sector != 1 || r.Len != 1024 || r.StatusOffset != 0 {
		t.Fatalf("OUT parsed as %+v", r)
	}
}

func TestParseErrors(t *testing.T) {
	const capacity = 100
	cases := []struct {
		name   string
		build  func(b *chainBuilder)
		status uint8
	}{
		{"short header", func(b *chainBuilder) {
			b.add(header(TypeIn, 0)[:15], false)
			b.add(make([]byte, 513), true)
		}, StatusIOErr},
		{"IN data not sector multiple", func(b *chainBuilder) {
			b.add(header(TypeIn, 0), false)
			b.add(make([]byte, 511), true)
		}, StatusIOErr},
		{"OUT data not sector multiple", func(b *chainBuilder) {
			b.add(append(header(TypeOut, 0), make([]byte, 100)...), false)
			b.add(make([]byte, 1), true)
		}, StatusIOErr},
		{"IN past end", func(b *chainBuilder) {
			b.add(header(TypeIn, 100), false)
			b.add(make([]byte, 513), true)
		}, StatusIOErr},
		{"OUT straddling end", func(b *chainBuilder) {
			b.add(append(header(TypeOut, 99), make([]byte, 1024)...), false)
			b.add(make([]byte, 1), true)
		}, StatusIOErr},
		{"sector overflow", func(b *chainBuilder) {
			b.add(header(TypeIn, 1<<64-1), false)
			b.add(make([]byte, 513), true)
		}, StatusIOErr},
		{"sector times 512 overflow", func(b *chainBuilder) {
			b.add(header(TypeIn, 1<<55), false)
			b.add(make([]byte, 1), true)
		}, StatusIOErr},
		{"unknown type", func(b *chainBuilder) {
			b.add(header(99, 0), false)
			b.add(make([]byte, 1), true)
		}, StatusUnsupp},
		{"get lifetime", func(b *chainBuilder) {
			b.add(header(TypeGetLifetime, 0), false)
			b.add(make([]byte, 9), true)
		}, StatusUnsupp},
		{"secure erase", func(b *chainBuilder) {
			b.add(append(header(TypeSecureErase, 0), segments(Segment{Sectors: 1})...), false)
			b.add(make([]byte, 1), true)
		}, StatusUnsupp},
		{"discard without segments", func(b *chainBuilder) {
			b.add(header(TypeDiscard, 0), false)
			b.add(make([]byte, 1), true)
		}, StatusIOErr},
		{"discard partial segment", func(b *chainBuilder) {
			b.add(append(header(TypeDiscard, 0), make([]byte, 24)...), false)
			b.add(make([]byte, 1), true)
		}, StatusIOErr},
		{"discard with unmap", func(b *chainBuilder) {
			b.add(append(header(TypeDiscard, 0), segments(Segment{Sectors: 1, Unmap: true})...), false)
			b.add(make([]byte, 1), true)
		}, StatusUnsupp},
		{"write zeroes unknown flag", func(b *chainBuilder) {
			seg := segments(Segment{Sectors: 1})
			seg[12] = 2
			b.add(append(header(TypeWriteZeroes, 0), seg...), false)
			b.add(make([]byte, 1), true)
		}, StatusUnsupp},
		{"discard too many segments", func(b *chainBuilder) {
			b.add(append(header(TypeDiscard, 0), make([]byte, 16*(MaxDiscardSeg+1))...), false)
			b.add(make([]byte, 1), true)
		}, StatusIOErr},
		{"discard segment past end", func(b *chainBuilder) {
			b.add(append(header(TypeDiscard, 0), segments(Segment{Sector: 1}, Segment{Sector: 90, Sectors: 11})...), false)
			b.add(make([]byte, 1), true)
		}, StatusIOErr},
		{"write zeroes segment overflow", func(b *chainBuilder) {
			b.add(append(header(TypeWriteZeroes, 0), segments(Segment{Sector: 1<<64 - 1, Sectors: 2})...), false)
			b.add(make([]byte, 1), true)
		}, StatusIOErr},
		{"write zeroes segment too large", func(b *chainBuilder) {
			b.add(append(header(TypeWriteZeroes, 0), segments(Segment{Sectors: MaxWriteZeroesSectors + 1})...), false)
			b.add(make([]byte, 1), true)
		}, StatusIOErr},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newChainBuilder(t)
			c.build(b)
			r, err := ParseRequest(b.mem, &b.c, capacity)
			if err == nil {
				t.Fatalf("parsed: %+v", r)
			}
			if got := Status(err); got != c.status {
				t.Fatalf("status %d, want %d (%v)", got, c.status, err)
			}
			if r.StatusOffset != b.c.WritableLen()-1 {
				t.Fatalf("status offset %d", r.StatusOffset)
			}
		})
	}
}

func TestParseNoStatus(t *testing.T) {
	b := newChainBuilder(t)
	b.add(append(header(TypeOut, 0), make([]byte, 512)...), false)
	if _, err := ParseRequest(b.mem, &b.c, 10); !errors.Is(err, ErrNoStatus) {
		t.Fatalf("no writable byte: %v", err)
	}
	b = newChainBuilder(t)
	if _, err := ParseRequest(b.mem, &b.c, 10); !errors.Is(err, ErrNoStatus) {
		t.Fatalf("empty chain: %v", err)
	}
}

func TestParseOthers(t *testing.T) {
	b := newChainBuilder(t)
	b.add(header(TypeFlush, 0), false)
	b.add([]byte{0}, true)
	if r, err := ParseRequest(b.mem, &b.c, 10); err != nil || r.Type != TypeFlush || r.Len != 0 {
		t.Fatalf("flush: %+v %v", r, err)
	}
	for _, n := range []int{0, 7, 20, 64} {
		b = newChainBuilder(t)
		b.add(header(TypeGetID, 0), false)
		b.add(make([]byte, n+1), true)
		r, err := ParseRequest(b.mem, &b.c, 10)
		if err != nil || r.Len != uint32(min(n, IDBytes)) || r.StatusOffset != uint64(n) {
			t.Fatalf("get id with %d bytes: %+v %v", n, r, err)
		}
	}
	b = newChainBuilder(t)
	want := []Segment{{Sector: 0, Sectors: 8, Unmap: true}, {Sector: 92, Sectors: 8}, {Sector: 100, Sectors: 0}}
	b.add(header(TypeWriteZeroes, 0), false)
	b.add(segments(want...), false)
	b.add([]byte{0}, true)
	r, err := ParseRequest(b.mem, &b.c, 100)
	if err != nil || len(r.Segments) != 3 {
		t.Fatalf("write zeroes: %+v %v", r, err)
	}
	for i := range want {
		if r.Segments[i] != want[i] {
			t.Fatalf("segment %d = %+v, want %+v", i, r.Segments[i], want[i])
		}
	}
}

func TestInRange(t *testing.T) {
	cases := []struct {
		sector, n, capacity uint64
		want                bool
	}{
		{0, 0, 0, true},
		{0, 10, 10, true},
		{1, 10, 10, false},
		{10, 0, 10, true},
		{11, 0, 10, false},
		{1<<64 - 1, 1, 1<<64 - 1, false},
		{1<<64 - 2, 1, 1<<64 - 1, true},
		{1, 1<<64 - 1, 1<<64 - 1, false},
	}
	for _, c := range cases {
		if got := inRange(c.sector, c.n, c.capacity); got != c.want {
			t.Errorf("inRange(%d, %d, %d) = %v", c.sector, c.n, c.capacity, got)
		}
	}
}
