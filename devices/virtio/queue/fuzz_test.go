package queue_test

import (
	"errors"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
	"github.com/vmm-dev/vmm/memory"
)

// Fuzzed guest layout: 8 KiB of RAM with the rings at address 0. The input
// is one byte of queue parameters (size 1<<(b&15%8), event idx if b&0x80)
// followed by the first bytes of RAM; the rest of RAM is zero. Seeds keep
// rings and indirect tables in the first few hundred bytes so inputs stay
// small (minimizing large inputs would eat the fuzzing time).
const (
	fuzzRAM   = 0x2000
	fuzzTable = 0x180 // seeds' indirect table, after the rings of size <= 8
	fuzzBuf   = 0x1000
)

// fuzzSeed lays out a size-8 queue with a direct chain, an indirect chain
// and a one-descriptor chain, lets hostile modify it, and returns the input.
func fuzzSeed(t testing.TB, eventIdx bool, hostile func(d *queuetest.Driver)) []byte {
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: fuzzRAM}})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	d, err := queuetest.New(mem, 8, 0, fuzzRAM)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = d.AddChain([]queuetest.Buf{{Addr: fuzzBuf, Len: 16}, {Addr: fuzzBuf + 16, Len: 512, Write: true}, {Addr: fuzzBuf + 528, Len: 1, Write: true}})
	must(err)
	must(d.WriteTable(fuzzTable, []queuetest.RawDesc{
		{Addr: fuzzBuf, Len: 8, Flags: queue.DescFNext, Next: 1},
		{Addr: fuzzBuf + 8, Len: 8, Flags: queue.DescFNext, Next: 2},
		{Addr: fuzzBuf + 16, Len: 512, Flags: queue.DescFWrite | queue.DescFNext, Next: 3},
		{Addr: fuzzBuf + 528, Len: 1, Flags: queue.DescFWrite},
	}))
	head := d.Reserve(1)
	must(d.SetDesc(head, fuzzTable, 64, queue.DescFIndirect, 0))
	must(d.Publish(head))
	_, err = d.AddChain([]queuetest.Buf{{Addr: fuzzBuf, Len: 1, Write: true}})
	must(err)
	if hostile != nil {
		hostile(d)
	}
	img := make([]byte, fuzzTable+64)
	must(mem.ReadAt(img, 0))
	var flags byte = 3 // size 8
	if eventIdx {
		flags |= 0x80
	}
	return append([]byte{flags}, img...)
}

// FuzzPop drives Pop/Push/notification over fuzzed ring contents. Invariants:
// no panic or hang, every returned chain is well-formed, ring faults are
// sticky and wrap ErrGuest.
func FuzzPop(f *testing.F) {
	f.Add(fuzzSeed(f, false, nil))
	f.Add(fuzzSeed(f, true, nil))
	f.Add(fuzzSeed(f, false, func(d *queuetest.Driver) { d.SetDesc(0, fuzzBuf, 1, queue.DescFNext, 0) }))
	f.Add(fuzzSeed(f, true, func(d *queuetest.Driver) { d.SetAvailIdx(200) }))
	f.Add(fuzzSeed(f, false, func(d *queuetest.Driver) {
		d.WriteTable(fuzzTable+16, []queuetest.RawDesc{{Addr: fuzzTable, Len: 16, Flags: queue.DescFIndirect}})
	}))
	// One guest per worker process, rewritten in full by every run: mapping
	// and first-touching fresh pages each run would dominate the run time.
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: fuzzRAM}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { mem.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		size := uint16(1) << (data[0] & 0x0f % 8)
		eventIdx := data[0]&0x80 != 0
		img := data[1:]
		if len(img) > fuzzRAM {
			img = img[:fuzzRAM]
		}
		if err := mem.Zero(0, fuzzRAM); err != nil {
			t.Fatal(err)
		}
		if err := mem.WriteAt(img, 0); err != nil {
			t.Fatal(err)
		}
		n := uint64(size)
		availAddr := 16 * n
		q := &queue.Queue{
			Size:       size,
			DescAddr:   0,
			DriverAddr: availAddr,
			DeviceAddr: (availAddr + 4 + 2*n + 2 + 3) &^ 3,
			Ready:      true,
		}
		if err := q.Activate(mem, 256, eventIdx); err != nil {
			t.Fatalf("activate: %v", err)
		}
		for i := 0; i < 2*int(size)+2; i++ {
			c, err := q.Pop()
			var ce *queue.ChainError
			switch {
			case errors.As(err, &ce):
				if !errors.Is(err, queue.ErrGuest) || ce.Head >= size {
					t.Fatalf("bad chain error %v", err)
				}
				if err := q.Push(ce.Head, 0); err != nil {
					t.Fatalf("push after chain error: %v", err)
				}
				continue
			case err != nil:
				if !errors.Is(err, queue.ErrGuest) {
					t.Fatalf("ring error without ErrGuest: %v", err)
				}
				if _, err2 := q.Pop(); err2 == nil {
					t.Fatal("ring error not sticky")
				}
				return
			case c == nil:
				if _, err := q.EnableNotification(); err != nil {
					t.Fatalf("enable: %v", err)
				}
				return
			}
			checkChain(t, mem, c, size)
			if err := q.Push(c.Head, uint32(c.WritableLen())); err != nil {
				t.Fatalf("push: %v", err)
			}
			if _, err := q.NeedsNotification(); err != nil {
				t.Fatalf("needs notification: %v", err)
			}
		}
	})
}

func checkChain(t *testing.T, mem *memory.Guest, c *queue.Chain, size uint16) {
	t.Helper()
	if c.Head >= size {
		t.Fatalf("head %d >= size %d", c.Head, size)
	}
	if len(c.Descs) > int(size)+queue.MaxIndirectDescs {
		t.Fatalf("%d descriptors", len(c.Descs))
	}
	var total uint64
	seenW := false
	for _, d := range c.Descs {
		if seenW && !d.Write {
			t.Fatal("readable after writable")
		}
		seenW = seenW || d.Write
		total += uint64(d.Len)
		if !mem.Contains(d.Addr, uint64(d.Len)) {
			t.Fatalf("buffer %+v outside RAM", d)
		}
	}
	if total > queue.MaxChainBytes {
		t.Fatalf("total %d", total)
	}
	if err := c.ReadAt(mem, make([]byte, c.ReadableLen()), 0); err != nil {
		t.Fatalf("read whole readable part: %v", err)
	}
	if err := c.WriteAt(mem, make([]byte, c.WritableLen()), 0); err != nil {
		t.Fatalf("write whole writable part: %v", err)
	}
}
