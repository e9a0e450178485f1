package balloon

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
	"github.com/vmm-dev/vmm/memory"
)

const memSize = 16 << 20

// fakeDriver drives the device's queues in memSize bytes of guest memory:
// the rings and their buffers live in the first 2 MiB, the rest is "guest
// RAM" to report.
type fakeDriver struct {
	t     *testing.T
	dev   *Device
	mem   *memory.Guest
	drv   []*queuetest.Driver
	kicks []*virtio.ChanKick
	irq   *queuetest.IRQ
}

func newFakeDriver(t *testing.T, feat uint64) *fakeDriver {
	t.Helper()
	f := &fakeDriver{t: t, dev: New()}
	var err error
	if f.mem, err = memory.New([]memory.RegionSpec{{Base: 0, Size: memSize}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.mem.Close() })
	n := 2
	for _, f := range []uint64{FStatsVQ, FReporting} {
		if feat&f != 0 {
			n++
		}
	}
	queues := make([]*queue.Queue, maxQueues)
	kicks := make([]virtio.Kick, maxQueues)
	for i := range maxQueues {
		k := virtio.NewChanKick()
		kicks[i] = k
		if i >= n {
			continue
		}
		d, err := queuetest.New(f.mem, 64, uint64(i)*0x80000, 0x80000)
		if err != nil {
			t.Fatal(err)
		}
		q := d.Queue()
		if err := q.Activate(f.mem, QueueSize, feat&virtio.FRingEventIdx != 0); err != nil {
			t.Fatal(err)
		}
		f.drv = append(f.drv, d)
		f.kicks = append(f.kicks, k)
		queues[i] = q
	}
	f.irq = queuetest.NewIRQ()
	if err := f.dev.Activate(f.mem, feat, queues, kicks, f.irq); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.dev.Reset)
	return f
}

// submit adds a chain to queue q, kicks and waits for it to be used.
func (f *fakeDriver) submit(q int, bufs []queuetest.Buf) {
	f.t.Helper()
	if _, err := f.drv[q].AddChain(bufs); err != nil {
		f.t.Fatal(err)
	}
	f.kicks[q].Signal()
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := f.drv[q].Used()
		if err != nil {
			f.t.Fatal(err)
		}
		if len(u) == 1 {
			if u[0].Len != 0 {
				f.t.Fatalf("used length %d, want 0", u[0].Len)
			}
			return
		}
		if len(u) > 1 || time.Now().After(deadline) {
			f.t.Fatalf("queue %d: used %v, want one entry", q, u)
		}
		time.Sleep(time.Millisecond)
	}
}

// fill writes v over guest RAM beyond the rings.
func (f *fakeDriver) fill(v byte) {
	host := f.mem.Regions()[0].Host()
	for i := 2 << 20; i < len(host); i++ {
		host[i] = v
	}
}

// zeroed reports which of [lo, hi) reads as zero: all, none or mixed.
func (f *fakeDriver) check(lo, hi uint64, zero bool) {
	f.t.Helper()
	host := f.mem.Regions()[0].Host()
	for i := lo; i < hi; i++ {
		if (host[i] == 0) != zero {
			f.t.Fatalf("byte %#x is %#x, want zero %v", i, host[i], zero)
		}
	}
}

// allFeatures are the offered features but statistics: the reporting
// queue is then the third (reportingQueue).
const allFeatures = virtio.FVersion1 | virtio.FRingEventIdx | FDeflateOnOOM | FReporting

const reportingQueue = 2

func TestFreePageReportGivesMemoryBack(t *testing.T) {
	f := newFakeDriver(t, allFeatures)
	f.fill(0xa5)
	// Two blocks, as Linux reports them: device-writable, 2 MiB each.
	f.submit(reportingQueue, []queuetest.Buf{{Addr: 4 << 20, Len: 2 << 20, Write: true}, {Addr: 8 << 20, Len: 2 << 20, Write: true}})
	f.check(2<<20, 4<<20, false)
	f.check(4<<20, 6<<20, true)
	f.check(6<<20, 8<<20, false)
	f.check(8<<20, 10<<20, true)
	f.check(10<<20, memSize, false)
	s := f.dev.Stats()
	if s.Reports != 1 || s.ReportedBytes != 4<<20 || s.DiscardedBytes != 4<<20 || s.BadChains != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The guest uses the memory again: it is ordinary memory.
	if err := f.mem.PutUint64(4<<20, 42); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.mem.Uint64(4 << 20); v != 42 {
		t.Fatalf("read back %d", v)
	}
}

func TestReportOutsideRAMIsMalformed(t *testing.T) {
	f := newFakeDriver(t, allFeatures)
	f.fill(0xa5)
	f.submit(reportingQueue, []queuetest.Buf{{Addr: memSize - 4096, Len: 8192, Write: true}})
	f.check(2<<20, memSize, false)
	if s := f.dev.Stats(); s.BadChains != 1 || s.DiscardedBytes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func pfns(t *testing.T, f *fakeDriver, q int, list ...uint32) uint64 {
	t.Helper()
	a, err := f.drv[q].Alloc(uint64(4 * len(list)))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4*len(list))
	for i, p := range list {
		binary.LittleEndian.PutUint32(b[4*i:], p)
	}
	if err := f.mem.WriteAt(b, a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestInflateAndDeflate(t *testing.T) {
	f := newFakeDriver(t, allFeatures)
	f.fill(0xa5)
	base := uint32(4 << 20 >> pageShift)
	a := pfns(t, f, inflateQueue, base+2, base+10, base, base+1, base+10) // any order, repeats

	f.submit(inflateQueue, []queuetest.Buf{{Addr: a, Len: 16}})
	f.check(4<<20, 4<<20+3*4096, true)
	f.check(4<<20+3*4096, 4<<20+10*4096, false)
	f.check(4<<20+10*4096, 4<<20+11*4096, true)
	d := pfns(t, f, deflateQueue, base, base+1)
	f.submit(deflateQueue, []queuetest.Buf{{Addr: d, Len: 8}})
	s := f.dev.Stats()
	if s.InflatedPages != 4 || s.DeflatedPages != 2 || s.DiscardedBytes != 4*4096 || s.BadChains != 0 {
		t.Fatalf("stats %+v", s)
	}
	// PFNs outside RAM, a partial PFN, a writable buffer: malformed, skipped.
	bad := pfns(t, f, inflateQueue, 0xfffffff0)
	f.submit(inflateQueue, []queuetest.Buf{{Addr: bad, Len: 4}})
	f.submit(inflateQueue, []queuetest.Buf{{Addr: a, Len: 6}})
	f.submit(inflateQueue, []queuetest.Buf{{Addr: a, Len: 4}, {Addr: a + 4, Len: 4, Write: true}})
	if s := f.dev.Stats(); s.BadChains != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWithoutReporting(t *testing.T) {
	f := newFakeDriver(t, virtio.FVersion1)
	f.fill(0xa5)
	base := uint32(4 << 20 >> pageShift)
	a := pfns(t, f, inflateQueue, base)
	f.submit(inflateQueue, []queuetest.Buf{{Addr: a, Len: 4}})
	f.check(4<<20, 4<<20+4096, true)
}

func TestConfigSpace(t *testing.T) {
	d := New()
	b := make([]byte, 16)
	d.ReadConfig(0, b)
	if binary.LittleEndian.Uint32(b) != 0 {
		t.Fatalf("num_pages %d, want 0", binary.LittleEndian.Uint32(b))
	}
	d.WriteConfig(4, []byte{1, 2, 3, 4})
	d.WriteConfig(0, []byte{9, 9, 9, 9}) // num_pages is the device's
	if d.Actual() != 0x04030201 {
		t.Fatalf("actual %#x", d.Actual())
	}
	d.WriteConfig(6, []byte{0xff})
	d.ReadConfig(0, b)
	if binary.LittleEndian.Uint32(b) != 0 || binary.LittleEndian.Uint32(b[4:]) != 0x04ff0201 {
		t.Fatalf("config %x", b)
	}
	d.ReadConfig(14, b[:4])
	if b[2] != 0 || b[3] != 0 {
		t.Fatalf("beyond the config %x", b[:4])
	}
}

func TestSetTarget(t *testing.T) {
	d := New()
	// Before the driver is there: only the configuration changes.
	if err := d.SetTarget(100); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	d.ReadConfig(0, b)
	if binary.LittleEndian.Uint32(b) != 100 || d.Target() != 100 {
		t.Fatalf("num_pages %d", binary.LittleEndian.Uint32(b))
	}
	// An active driver is told.
	f := newFakeDriver(t, allFeatures)
	if err := f.dev.SetTarget(65536); err != nil {
		t.Fatal(err)
	}
	f.dev.ReadConfig(0, b)
	if binary.LittleEndian.Uint32(b) != 65536 || f.irq.ConfigChanges() != 1 {
		t.Fatalf("num_pages %d, %d config changes", binary.LittleEndian.Uint32(b), f.irq.ConfigChanges())
	}
}

func TestBrokenRingFailsTheDevice(t *testing.T) {
	f := newFakeDriver(t, allFeatures)
	if err := f.drv[reportingQueue].SetAvailIdx(1000); err != nil {
		t.Fatal(err)
	}
	f.kicks[reportingQueue].Signal()
	select {
	case err := <-f.irq.Failures:
		if err == nil {
			t.Fatal("nil failure")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no failure reported")
	}
	if s := f.dev.Stats(); s.Failures != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestGuestStatistics(t *testing.T) {
	f := newFakeDriver(t, allFeatures|FStatsVQ) // statistics 2, reporting 3
	if g, err := f.dev.GuestStats(); g != nil || err != nil {
		t.Fatalf("before any report: %+v, %v", g, err)
	}
	// The driver primes the queue with its statistics.
	buf, err := f.drv[2].Alloc(statEntry * 3)
	if err != nil {
		t.Fatal(err)
	}
	put := func(free uint64) {
		b := make([]byte, statEntry*3)
		for i, e := range []struct {
			tag uint16
			v   uint64
		}{{4, free}, {5, 1 << 30}, {99, 7}} { // 99: a tag this device does not know
			binary.LittleEndian.PutUint16(b[statEntry*i:], e.tag)
			binary.LittleEndian.PutUint64(b[statEntry*i+2:], e.v)
		}
		if err := f.mem.WriteAt(b, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := f.drv[2].AddChain([]queuetest.Buf{{Addr: buf, Len: statEntry * 3}}); err != nil {
			t.Fatal(err)
		}
		f.kicks[2].Signal()
	}
	waitStats := func(free uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			g, err := f.dev.GuestStats()
			if err != nil {
				t.Fatal(err)
			}
			if g != nil && g.Free == free {
				if g.Total != 1<<30 {
					t.Fatalf("stats %+v", g)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v, want free %d", g, free)
			}
			time.Sleep(time.Millisecond)
		}
	}
	put(100 << 20)
	waitStats(100 << 20)
	// Asking returned the buffer to the driver, which refills it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := f.drv[2].Used()
		if err != nil {
			t.Fatal(err)
		}
		if len(u) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the statistics buffer never came back")
		}
		f.dev.GuestStats()
		time.Sleep(time.Millisecond)
	}
	put(50 << 20)
	waitStats(50 << 20)
	// Reporting moved to the fourth queue.
	f.fill(0xa5)
	f.submit(3, []queuetest.Buf{{Addr: 4 << 20, Len: 2 << 20, Write: true}})
	f.check(4<<20, 6<<20, true)
}
