package queue_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
	"github.com/vmm-dev/vmm/memory"
)

const memSize = 1 << 20

func newMem(t testing.TB) *memory.Guest {
	t.Helper()
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: memSize}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	return mem
}

// setup returns a driver with a queue of size entries at 0x1000 and the
// activated device-side queue.
func setup(t testing.TB, size uint16, eventIdx bool) (*queuetest.Driver, *queue.Queue) {
	t.Helper()
	mem := newMem(t)
	drv, err := queuetest.New(mem, size, 0x1000, 0x80000)
	if err != nil {
		t.Fatal(err)
	}
	q := drv.Queue()
	if err := q.Activate(mem, 256, eventIdx); err != nil {
		t.Fatal(err)
	}
	return drv, q
}

func alloc(t testing.TB, d *queuetest.Driver, n uint64) uint64 {
	t.Helper()
	a, err := d.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustPublish(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestActivateChecks(t *testing.T) {
	mem := newMem(t)
	good := queue.Queue{Size: 16, DescAddr: 0x1000, DriverAddr: 0x2000, DeviceAddr: 0x3000, Ready: true}
	if err := good.Activate(mem, 256, true); err != nil {
		t.Fatalf("good queue: %v", err)
	}
	if !good.Active() || !good.EventIdx() {
		t.Fatal("not active after Activate")
	}
	cases := []struct {
		name    string
		mod     func(q *queue.Queue)
		max     uint16
		evt     bool
		isGuest bool
	}{
		{"not ready", func(q *queue.Queue) { q.Ready = false }, 256, false, true},
		{"size zero", func(q *queue.Queue) { q.Size = 0 }, 256, false, true},
		{"size not power of two", func(q *queue.Queue) { q.Size = 24 }, 256, false, true},
		{"size above max", func(q *queue.Queue) { q.Size = 512 }, 256, false, true},
		{"bad max", func(q *queue.Queue) {}, 100, false, false},
		{"max zero", func(q *queue.Queue) {}, 0, false, false},
		{"desc misaligned", func(q *queue.Queue) { q.DescAddr = 0x1008 }, 256, false, true},
		{"avail misaligned", func(q *queue.Queue) { q.DriverAddr = 0x2001 }, 256, false, true},
		{"used misaligned", func(q *queue.Queue) { q.DeviceAddr = 0x3002 }, 256, false, true},
		{"desc outside RAM", func(q *queue.Queue) { q.DescAddr = memSize - 16*8 }, 256, false, true},
		{"desc overflow", func(q *queue.Queue) { q.DescAddr = 1<<64 - 16 }, 256, false, true},
		{"avail outside RAM", func(q *queue.Queue) { q.DriverAddr = memSize - 2 }, 256, false, true},
		{"used outside RAM", func(q *queue.Queue) { q.DeviceAddr = memSize - 4 }, 256, false, true},
		// The rings fit exactly without the event fields, not with them.
		{"used_event outside RAM", func(q *queue.Queue) { q.DriverAddr = memSize - (4 + 2*16) }, 256, true, true},
		{"avail_event outside RAM", func(q *queue.Queue) { q.DeviceAddr = memSize - (4 + 8*16) }, 256, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := good
			c.mod(&q)
			err := q.Activate(mem, c.max, c.evt)
			if err == nil {
				t.Fatal("Activate succeeded")
			}
			if errors.Is(err, queue.ErrGuest) != c.isGuest {
				t.Fatalf("errors.Is(ErrGuest) = %v, want %v: %v", !c.isGuest, c.isGuest, err)
			}
			if q.Active() {
				t.Fatal("active after failed Activate")
			}
			if _, err := q.Pop(); !errors.Is(err, queue.ErrNotActive) {
				t.Fatalf("Pop on inactive queue: %v", err)
			}
		})
	}
	// The same rings without event fields fit.
	for _, mod := range []func(q *queue.Queue){
		func(q *queue.Queue) { q.DriverAddr = memSize - (4 + 2*16) },
		func(q *queue.Queue) { q.DeviceAddr = memSize - (4 + 8*16) },
	} {
		q := good
		mod(&q)
		if err := q.Activate(mem, 256, false); err != nil {
			t.Fatalf("exact fit without event idx: %v", err)
		}
	}
}

func TestInactiveQueue(t *testing.T) {
	var q queue.Queue
	if _, err := q.Pop(); !errors.Is(err, queue.ErrNotActive) {
		t.Fatal(err)
	}
	if err := q.Push(0, 0); !errors.Is(err, queue.ErrNotActive) {
		t.Fatal(err)
	}
	if _, err := q.NeedsNotification(); !errors.Is(err, queue.ErrNotActive) {
		t.Fatal(err)
	}
	if _, err := q.EnableNotification(); !errors.Is(err, queue.ErrNotActive) {
		t.Fatal(err)
	}
	if err := q.DisableNotification(); !errors.Is(err, queue.ErrNotActive) {
		t.Fatal(err)
	}
}

func TestPopPushRoundTrip(t *testing.T) {
	drv, q := setup(t, 8, false)
	if c, err := q.Pop(); c != nil || err != nil {
		t.Fatalf("empty queue: %v %v", c, err)
	}
	a, b, w := alloc(t, drv, 16), alloc(t, drv, 100), alloc(t, drv, 1)
	bufs := []queuetest.Buf{{Addr: a, Len: 16}, {Addr: b, Len: 100}, {Addr: w, Len: 1, Write: true}}
	for round := 0; round < 20; round++ { // wraps the 8-entry rings
		head, err := drv.AddChain(bufs)
		mustPublish(t, err)
		c, err := q.Pop()
		if err != nil || c == nil {
			t.Fatalf("round %d: Pop = %v, %v", round, c, err)
		}
		if c.Head != head || len(c.Descs) != 3 {
			t.Fatalf("round %d: head %d descs %+v", round, c.Head, c.Descs)
		}
		for i, d := range c.Descs {
			if d.Addr != bufs[i].Addr || d.Len != bufs[i].Len || d.Write != bufs[i].Write {
				t.Fatalf("desc %d = %+v, want %+v", i, d, bufs[i])
			}
		}
		if c.ReadableLen() != 116 || c.WritableLen() != 1 {
			t.Fatalf("lengths %d %d", c.ReadableLen(), c.WritableLen())
		}
		if c, err := q.Pop(); c != nil || err != nil {
			t.Fatalf("second Pop: %v %v", c, err)
		}
		if err := q.Push(head, 1); err != nil {
			t.Fatal(err)
		}
		used, err := drv.Used()
		if err != nil || len(used) != 1 || used[0] != (queuetest.Used{ID: uint32(head), Len: 1}) {
			t.Fatalf("used = %+v, %v", used, err)
		}
	}
	if err := q.Push(0, 0); err == nil || errors.Is(err, queue.ErrGuest) {
		t.Fatalf("Push with nothing in flight: %v", err)
	}
	if err := q.Push(8, 0); err == nil {
		t.Fatal("Push of head >= size succeeded")
	}
}

// TestAvailRingTwoAligned uses an available ring that is 2- but not
// 4-aligned, so avail.idx is read through the word holding idx and ring[0].
func TestAvailRingTwoAligned(t *testing.T) {
	mem := newMem(t)
	drv, err := queuetest.New(mem, 4, 0x1000, 0x10000)
	if err != nil {
		t.Fatal(err)
	}
	drv.AvailAddr = 0x5002
	drv.UsedAddr = 0x6000
	q := drv.Queue()
	if err := q.Activate(mem, 256, true); err != nil {
		t.Fatal(err)
	}
	buf := alloc(t, drv, 8)
	for i := 0; i < 10; i++ {
		head, err := drv.AddChain([]queuetest.Buf{{Addr: buf, Len: 8, Write: true}})
		mustPublish(t, err)
		c, err := q.Pop()
		if err != nil || c == nil || c.Head != head {
			t.Fatalf("iteration %d: %v %v", i, c, err)
		}
		if err := q.Push(c.Head, 8); err != nil {
			t.Fatal(err)
		}
	}
}

func TestImpossibleAvailIdx(t *testing.T) {
	drv, q := setup(t, 8, false)
	mustPublish(t, drv.SetAvailIdx(9))
	_, err := q.Pop()
	if !errors.Is(err, queue.ErrGuest) {
		t.Fatalf("avail.idx 9 past 0 with size 8: %v", err)
	}
	var ce *queue.ChainError
	if errors.As(err, &ce) {
		t.Fatal("ring fault reported as chain fault")
	}
	// Sticky: a repaired index does not revive the queue.
	mustPublish(t, drv.SetAvailIdx(1))
	if _, err := q.Pop(); !errors.Is(err, queue.ErrGuest) {
		t.Fatalf("not sticky: %v", err)
	}
	if q.Err() == nil {
		t.Fatal("Err() nil after fault")
	}
	if err := q.Push(0, 0); !errors.Is(err, queue.ErrGuest) {
		t.Fatalf("Push on broken queue: %v", err)
	}

	// Exactly Size pending is fine; a "negative" distance (wrapped) is not.
	drv, q = setup(t, 8, false)
	buf := alloc(t, drv, 1)
	for i := 0; i < 8; i++ {
		_, err := drv.AddChain([]queuetest.Buf{{Addr: buf, Len: 1}})
		mustPublish(t, err)
	}
	for i := 0; i < 8; i++ {
		if c, err := q.Pop(); c == nil || err != nil {
			t.Fatalf("pop %d: %v %v", i, c, err)
		}
	}
	mustPublish(t, drv.SetAvailIdx(7)) // moved backwards
	if _, err := q.Pop(); !errors.Is(err, queue.ErrGuest) {
		t.Fatalf("avail.idx moved backwards: %v", err)
	}
}

func TestHeadOutOfRange(t *testing.T) {
	drv, q := setup(t, 8, false)
	mustPublish(t, drv.Publish(8))
	if _, err := q.Pop(); !errors.Is(err, queue.ErrGuest) {
		t.Fatalf("head 8 of 8: %v", err)
	}
}

// chainFault pops and expects a *ChainError for head, then checks that the
// chain was consumed, can be completed and the queue keeps working.
func chainFault(t *testing.T, drv *queuetest.Driver, q *queue.Queue, head uint16) {
	t.Helper()
	c, err := q.Pop()
	var ce *queue.ChainError
	if !errors.As(err, &ce) || !errors.Is(err, queue.ErrGuest) || c != nil {
		t.Fatalf("Pop = %v, %v; want ChainError", c, err)
	}
	if ce.Head != head {
		t.Fatalf("ChainError.Head = %d, want %d", ce.Head, head)
	}
	if err := q.Push(ce.Head, 0); err != nil {
		t.Fatalf("completing bad chain: %v", err)
	}
	if c, err := q.Pop(); c != nil || err != nil {
		t.Fatalf("bad chain not consumed: %v %v", c, err)
	}
	buf, err := drv.Alloc(4)
	if err != nil {
		t.Fatal(err)
	}
	h, err := drv.AddChain([]queuetest.Buf{{Addr: buf, Len: 4}})
	mustPublish(t, err)
	if c, err := q.Pop(); err != nil || c == nil || c.Head != h {
		t.Fatalf("queue dead after chain fault: %v %v", c, err)
	}
	t.Logf("rejected: %v", ce)
}

func TestHostileChains(t *testing.T) {
	const F, W, I = queue.DescFNext, queue.DescFWrite, queue.DescFIndirect
	type desc struct {
		i           uint16
		addr        uint64
		len         uint32
		flags, next uint16
	}
	buf := uint64(0x40000)
	cases := []struct {
		name  string
		descs []desc
	}{
		{"self loop", []desc{{0, buf, 1, F, 0}}},
		{"two-cycle", []desc{{0, buf, 1, F, 1}, {1, buf, 1, F, 0}}},
		{"cycle after prefix", []desc{{0, buf, 1, F, 1}, {1, buf, 1, F, 2}, {2, buf, 1, F, 1}}},
		{"next out of range", []desc{{0, buf, 1, F, 8}}},
		{"buffer outside RAM", []desc{{0, memSize - 1, 2, 0, 0}}},
		{"buffer address overflow", []desc{{0, 1<<64 - 1, 2, 0, 0}}},
		{"readable after writable", []desc{{0, buf, 1, W | F, 1}, {1, buf, 1, 0, 0}}},
		{"indirect with next", []desc{{0, buf, 16, I | F, 1}, {1, buf, 1, 0, 0}}},
		{"indirect length zero", []desc{{0, buf, 0, I, 0}}},
		{"indirect length not multiple of 16", []desc{{0, buf, 24, I, 0}}},
		{"indirect too large", []desc{{0, buf, 16 * (queue.MaxIndirectDescs + 1), I, 0}}},
		{"indirect table outside RAM", []desc{{0, memSize - 16, 32, I, 0}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			drv, q := setup(t, 8, false)
			drv.Reserve(len(c.descs))
			for _, d := range c.descs {
				mustPublish(t, drv.SetDesc(d.i, d.addr, d.len, d.flags, d.next))
			}
			mustPublish(t, drv.Publish(0))
			chainFault(t, drv, q, 0)
		})
	}
}

func TestMaxLengthChain(t *testing.T) {
	// A chain of exactly Size descriptors is legal.
	drv, q := setup(t, 8, false)
	buf := alloc(t, drv, 8)
	bufs := make([]queuetest.Buf, 8)
	for i := range bufs {
		bufs[i] = queuetest.Buf{Addr: buf + uint64(i), Len: 1, Write: i >= 4}
	}
	head, err := drv.AddChain(bufs)
	mustPublish(t, err)
	c, err := q.Pop()
	if err != nil || c == nil || c.Head != head || len(c.Descs) != 8 {
		t.Fatalf("Pop = %+v, %v", c, err)
	}
}

func TestHostileIndirect(t *testing.T) {
	const F, W, I = queue.DescFNext, queue.DescFWrite, queue.DescFIndirect
	cases := []struct {
		name  string
		table []queuetest.RawDesc
	}{
		{"nested indirect", []queuetest.RawDesc{{Addr: 0x40000, Len: 16, Flags: I}}},
		{"next outside table", []queuetest.RawDesc{{Addr: 0x40000, Len: 1, Flags: F, Next: 2}, {Addr: 0x40000, Len: 1}}},
		{"loop inside table", []queuetest.RawDesc{{Addr: 0x40000, Len: 1, Flags: F, Next: 1}, {Addr: 0x40000, Len: 1, Flags: F, Next: 0}}},
		{"buffer outside RAM", []queuetest.RawDesc{{Addr: memSize, Len: 1}}},
		{"readable after writable", []queuetest.RawDesc{{Addr: 0x40000, Len: 1, Flags: W | F, Next: 1}, {Addr: 0x40000, Len: 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			drv, q := setup(t, 8, false)
			table := alloc(t, drv, uint64(16*len(c.table)))
			mustPublish(t, drv.WriteTable(table, c.table))
			drv.Reserve(1)
			mustPublish(t, drv.SetDesc(0, table, uint32(16*len(c.table)), I, 0))
			mustPublish(t, drv.Publish(0))
			chainFault(t, drv, q, 0)
		})
	}
	// Writable direct descriptor followed by an indirect table that starts
	// with a readable buffer: ordering holds across the two levels.
	t.Run("readable in table after writable direct", func(t *testing.T) {
		drv, q := setup(t, 8, false)
		table := alloc(t, drv, 16)
		mustPublish(t, drv.WriteTable(table, []queuetest.RawDesc{{Addr: 0x40000, Len: 1}}))
		drv.Reserve(2)
		mustPublish(t, drv.SetDesc(0, 0x40000, 1, W|F, 1))
		mustPublish(t, drv.SetDesc(1, table, 16, I, 0))
		mustPublish(t, drv.Publish(0))
		chainFault(t, drv, q, 0)
	})
}

func TestIndirectChain(t *testing.T) {
	drv, q := setup(t, 4, false)
	hdr, data, status := alloc(t, drv, 16), alloc(t, drv, 4096), alloc(t, drv, 1)
	bufs := []queuetest.Buf{{Addr: hdr, Len: 16}, {Addr: data, Len: 4096, Write: true}, {Addr: status, Len: 1, Write: true}}
	head, err := drv.AddIndirect(bufs)
	mustPublish(t, err)
	c, err := q.Pop()
	if err != nil || c == nil || c.Head != head || len(c.Descs) != 3 {
		t.Fatalf("Pop = %+v, %v", c, err)
	}
	for i, d := range c.Descs {
		if d.Addr != bufs[i].Addr || d.Len != bufs[i].Len || d.Write != bufs[i].Write {
			t.Fatalf("desc %d = %+v, want %+v", i, d, bufs[i])
		}
	}
	// A direct readable descriptor followed by an indirect table.
	mustPublish(t, drv.SetDesc(1, hdr, 16, queue.DescFNext, 2))
	table := alloc(t, drv, 32)
	mustPublish(t, drv.WriteTable(table, []queuetest.RawDesc{
		{Addr: data, Len: 512, Flags: queue.DescFWrite | queue.DescFNext, Next: 1},
		{Addr: status, Len: 1, Flags: queue.DescFWrite},
	}))
	mustPublish(t, drv.SetDesc(2, table, 32, queue.DescFIndirect|queue.DescFWrite, 0)) // WRITE on the indirect desc is ignored
	mustPublish(t, drv.Publish(1))
	c, err = q.Pop()
	if err != nil || c == nil || len(c.Descs) != 3 || c.ReadableLen() != 16 || c.WritableLen() != 513 {
		t.Fatalf("mixed chain: %+v, %v", c, err)
	}
	// An indirect table of the maximum size is accepted.
	big := make([]queuetest.RawDesc, queue.MaxIndirectDescs)
	for i := range big {
		big[i] = queuetest.RawDesc{Addr: data, Len: 1, Flags: queue.DescFNext, Next: uint16(i + 1)}
	}
	big[len(big)-1].Flags = 0
	tbl := alloc(t, drv, 16*uint64(len(big)))
	mustPublish(t, drv.WriteTable(tbl, big))
	mustPublish(t, drv.SetDesc(3, tbl, uint32(16*len(big)), queue.DescFIndirect, 0))
	mustPublish(t, drv.Publish(3))
	c, err = q.Pop()
	if err != nil || c == nil || len(c.Descs) != queue.MaxIndirectDescs {
		t.Fatalf("max indirect: %v", err)
	}
}

func TestChainTotalLengthCap(t *testing.T) {
	// Two 2 GiB buffers inside (lazily mapped) RAM exceed 2^32-1 bytes.
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 1<<32 + 1<<20}})
	if err != nil {
		t.Skipf("cannot map 4 GiB of address space: %v", err)
	}
	defer mem.Close()
	drv, err := queuetest.New(mem, 4, 0x1000, 0x10000)
	if err != nil {
		t.Fatal(err)
	}
	q := drv.Queue()
	if err := q.Activate(mem, 4, false); err != nil {
		t.Fatal(err)
	}
	_, err = drv.AddChain([]queuetest.Buf{{Addr: 1 << 20, Len: 1 << 31}, {Addr: 1 << 20, Len: 1 << 31}})
	mustPublish(t, err)
	chainFault(t, drv, q, 0)
	// Exactly 2^32-1 is fine.
	_, err = drv.AddChain([]queuetest.Buf{{Addr: 1 << 20, Len: 1 << 31}, {Addr: 1 << 20, Len: 1<<31 - 1}})
	mustPublish(t, err)
	if c, err := q.Pop(); err != nil || c == nil {
		t.Fatalf("2^32-1 byte chain: %v", err)
	}
}

func TestChainCopyHelpers(t *testing.T) {
	drv, q := setup(t, 8, false)
	r1, r2, w1, w2 := alloc(t, drv, 3), alloc(t, drv, 5), alloc(t, drv, 4), alloc(t, drv, 4)
	mustPublish(t, drv.Mem.WriteAt([]byte("abc"), r1))
	mustPublish(t, drv.Mem.WriteAt([]byte("defgh"), r2))
	_, err := drv.AddChain([]queuetest.Buf{{Addr: r1, Len: 3}, {Addr: r2, Len: 5}, {Addr: w1, Len: 4, Write: true}, {Addr: w2, Len: 4, Write: true}})
	mustPublish(t, err)
	c, err := q.Pop()
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 6)
	if err := c.ReadAt(drv.Mem, p, 1); err != nil || string(p) != "bcdefg" {
		t.Fatalf("ReadAt = %q, %v", p, err)
	}
	if err := c.ReadAt(drv.Mem, make([]byte, 2), 7); !errors.Is(err, queue.ErrGuest) {
		t.Fatalf("ReadAt past end: %v", err)
	}
	if err := c.ReadAt(drv.Mem, nil, 100); err != nil {
		t.Fatalf("empty ReadAt: %v", err)
	}
	if err := c.WriteAt(drv.Mem, []byte("WXYZ"), 2); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8)
	mustPublish(t, drv.Mem.ReadAt(got[:4], w1))
	mustPublish(t, drv.Mem.ReadAt(got[4:], w2))
	if !bytes.Equal(got, []byte{0, 0, 'W', 'X', 'Y', 'Z', 0, 0}) {
		t.Fatalf("WriteAt result %q", got)
	}
	if err := c.WriteAt(drv.Mem, make([]byte, 9), 0); !errors.Is(err, queue.ErrGuest) {
		t.Fatalf("WriteAt past end: %v", err)
	}
	s, err := c.ReadableSlices(drv.Mem, 2, 4, nil)
	if err != nil || len(s) != 2 || string(s[0]) != "c" || string(s[1]) != "def" {
		t.Fatalf("ReadableSlices = %q, %v", s, err)
	}
	s, err = c.WritableSlices(drv.Mem, 4, 4, nil)
	if err != nil || len(s) != 1 || len(s[0]) != 4 {
		t.Fatalf("WritableSlices = %q, %v", s, err)
	}
	// A hand-made chain whose buffer is not in RAM is rejected on use.
	bad := &queue.Chain{Descs: []queue.Desc{{Addr: memSize, Len: 4}}}
	if err := bad.ReadAt(drv.Mem, make([]byte, 4), 0); !errors.Is(err, queue.ErrGuest) {
		t.Fatalf("unchecked buffer: %v", err)
	}
}

func TestNeedEvent(t *testing.T) {
	cases := []struct {
		event, new, old uint16
		want            bool
	}{
		{0, 1, 0, true},
		{1, 1, 0, false},
		{5, 10, 0, true},
		{10, 10, 0, false},
		{9, 10, 0, true},
		{10, 11, 10, true},
		{0, 0, 0, false},
		{0xffff, 0, 0xffff, true},  // crossing the wrap
		{0xfffe, 1, 0xfffd, true},  // event inside a wrapped window
		{2, 1, 0xfffd, false},      // event beyond new
		{0xfffc, 1, 0xfffd, false}, // event before old
		{0xffff, 0xffff, 0xfffe, false},
	}
	for _, c := range cases {
		if got := queue.NeedEvent(c.event, c.new, c.old); got != c.want {
			t.Errorf("NeedEvent(%#x, %#x, %#x) = %v, want %v", c.event, c.new, c.old, got, c.want)
		}
	}
}

func cycle(t *testing.T, drv *queuetest.Driver, q *queue.Queue, buf uint64) {
	t.Helper()
	_, err := drv.AddChain([]queuetest.Buf{{Addr: buf, Len: 1, Write: true}})
	mustPublish(t, err)
	c, err := q.Pop()
	if err != nil || c == nil {
		t.Fatalf("Pop: %v %v", c, err)
	}
	if err := q.Push(c.Head, 1); err != nil {
		t.Fatal(err)
	}
}

func TestNotificationFlags(t *testing.T) {
	drv, q := setup(t, 4, false)
	buf := alloc(t, drv, 1)
	if need, err := q.NeedsNotification(); need || err != nil {
		t.Fatalf("nothing pushed: %v %v", need, err)
	}
	cycle(t, drv, q, buf)
	if need, err := q.NeedsNotification(); !need || err != nil {
		t.Fatalf("after push: %v %v", need, err)
	}
	if need, _ := q.NeedsNotification(); need {
		t.Fatal("second call without new pushes wants notification")
	}
	mustPublish(t, drv.SetAvailFlags(queue.AvailFNoInterrupt))
	cycle(t, drv, q, buf)
	if need, _ := q.NeedsNotification(); need {
		t.Fatal("NO_INTERRUPT ignored")
	}

	// used.flags NO_NOTIFY follows Disable/Enable, and used.idx is kept.
	if err := q.DisableNotification(); err != nil {
		t.Fatal(err)
	}
	if f, _ := drv.UsedFlags(); f != queue.UsedFNoNotify {
		t.Fatalf("used.flags = %d after disable", f)
	}
	if idx, _ := drv.UsedIdx(); idx != 2 {
		t.Fatalf("used.idx = %d", idx)
	}
	more, err := q.EnableNotification()
	if err != nil || more {
		t.Fatalf("enable on empty ring: %v %v", more, err)
	}
	if f, _ := drv.UsedFlags(); f != 0 {
		t.Fatalf("used.flags = %d after enable", f)
	}
	// A buffer added while notifications were off is reported by Enable.
	mustPublish(t, q.DisableNotification())
	_, err = drv.AddChain([]queuetest.Buf{{Addr: buf, Len: 1}})
	mustPublish(t, err)
	if more, err := q.EnableNotification(); !more || err != nil {
		t.Fatalf("lost kick: more=%v err=%v", more, err)
	}
}

func TestEventIdx(t *testing.T) {
	drv, q := setup(t, 4, true)
	buf := alloc(t, drv, 1)

	// used_event = 0: the first used entry (idx 0 -> 1) crosses it.
	cycle(t, drv, q, buf)
	if need, _ := q.NeedsNotification(); !need {
		t.Fatal("used_event 0 not honoured")
	}
	// used_event = 3: entries 1->2 and 2->3 do not cross, 3->4 does.
	mustPublish(t, drv.SetUsedEvent(3))
	cycle(t, drv, q, buf)
	if need, _ := q.NeedsNotification(); need {
		t.Fatal("notified before used_event")
	}
	cycle(t, drv, q, buf)
	cycle(t, drv, q, buf) // batch of two pushes crossing the event
	if need, _ := q.NeedsNotification(); !need {
		t.Fatal("batch crossing used_event not notified")
	}
	// Flags are ignored with event idx.
	mustPublish(t, drv.SetAvailFlags(queue.AvailFNoInterrupt))
	mustPublish(t, drv.SetUsedEvent(4))
	cycle(t, drv, q, buf)
	if need, _ := q.NeedsNotification(); !need {
		t.Fatal("event idx must ignore avail.flags")
	}

	// EnableNotification writes avail_event = next entry to consume and
	// never touches used.flags.
	if err := q.DisableNotification(); err != nil {
		t.Fatal(err)
	}
	if more, err := q.EnableNotification(); more || err != nil {
		t.Fatalf("enable: %v %v", more, err)
	}
	if ev, _ := drv.AvailEvent(); ev != q.LastAvail() || ev != 5 {
		t.Fatalf("avail_event = %d, last avail %d", ev, q.LastAvail())
	}
	if f, _ := drv.UsedFlags(); f != 0 {
		t.Fatalf("used.flags = %d with event idx", f)
	}
	_, err := drv.AddChain([]queuetest.Buf{{Addr: buf, Len: 1}})
	mustPublish(t, err)
	if more, _ := q.EnableNotification(); !more {
		t.Fatal("lost kick with event idx")
	}
}

// TestEventIdxWrap drives the 16-bit ring indices across 0xffff -> 0.
func TestEventIdxWrap(t *testing.T) {
	drv, q := setup(t, 4, true)
	buf := alloc(t, drv, 1)
	for i := 0; i < 0xfffe; i++ {
		cycle(t, drv, q, buf)
	}
	q.NeedsNotification() // reset the count
	if q.UsedIdx() != 0xfffe {
		t.Fatalf("used idx %#x", q.UsedIdx())
	}
	mustPublish(t, drv.SetUsedEvent(0x0000)) // wants an interrupt when idx passes 0 -> 1
	cycle(t, drv, q, buf)                    // 0xfffe -> 0xffff
	cycle(t, drv, q, buf)                    // 0xffff -> 0
	if need, _ := q.NeedsNotification(); need {
		t.Fatal("notified before crossing used_event across the wrap")
	}
	cycle(t, drv, q, buf) // 0 -> 1
	if need, _ := q.NeedsNotification(); !need {
		t.Fatal("crossing used_event after the wrap not notified")
	}
	mustPublish(t, drv.SetUsedEvent(0xfff0)) // stale event far behind
	cycle(t, drv, q, buf)
	if need, _ := q.NeedsNotification(); need {
		t.Fatal("stale used_event notified")
	}
	if idx, _ := drv.UsedIdx(); idx != 2 {
		t.Fatalf("guest-visible used.idx %#x", idx)
	}
}

// TestAddUsedPublishesTogether: elements added with AddUsed stay invisible
// to the driver until PublishUsed, which shows them all at once.
func TestAddUsedPublishesTogether(t *testing.T) {
	drv, q := setup(t, 8, false)
	var heads []uint16
	for range 3 {
		head, err := drv.AddChain([]queuetest.Buf{{Addr: alloc(t, drv, 64), Len: 64, Write: true}})
		mustPublish(t, err)
		c, err := q.Pop()
		if err != nil || c == nil {
			t.Fatalf("Pop = %v, %v", c, err)
		}
		heads = append(heads, head)
	}
	for i, h := range heads {
		if err := q.AddUsed(h, uint32(10+i)); err != nil {
			t.Fatal(err)
		}
		if used, err := drv.Used(); err != nil || len(used) != 0 {
			t.Fatalf("after AddUsed %d the driver sees %+v, %v", i, used, err)
		}
	}
	if err := q.PublishUsed(); err != nil {
		t.Fatal(err)
	}
	used, err := drv.Used()
	if err != nil || len(used) != 3 {
		t.Fatalf("after PublishUsed: %+v, %v", used, err)
	}
	for i, u := range used {
		if u != (queuetest.Used{ID: uint32(heads[i]), Len: uint32(10 + i)}) {
			t.Errorf("used[%d] = %+v", i, u)
		}
	}
}
