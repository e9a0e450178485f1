package blk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
	"github.com/vmm-dev/vmm/memory"
)

type harness struct {
	t        *testing.T
	path     string
	disk     *Disk
	dev      *Device
	mem      *memory.Guest
	drv      *queuetest.Driver
	q        *queue.Queue
	kick     *virtio.ChanKick
	irq      *queuetest.IRQ
	features uint64
}

// newHarness makes a disk of content, a device on it, and activates it
// with all offered features (minus EVENT_IDX unless eventIdx).
func newHarness(t *testing.T, content []byte, readOnly, eventIdx bool) *harness {
	t.Helper()
	h := &harness{t: t, path: tempFile(t, "disk.img", content)}
	var err error
	if h.disk, err = OpenDisk(h.path, readOnly); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.disk.Close() })
	h.dev = New(h.disk)
	if h.mem, err = memory.New([]memory.RegionSpec{{Base: 0, Size: 4 << 20}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.mem.Close() })
	h.features = h.dev.Features()
	if !eventIdx {
		h.features &^= virtio.FRingEventIdx
	}
	h.activate()
	t.Cleanup(h.dev.Reset)
	return h
}

func (h *harness) activate() {
	h.t.Helper()
	var err error
	if h.drv, err = queuetest.New(h.mem, 64, 0x10000, 4<<20-0x10000); err != nil {
		h.t.Fatal(err)
	}
	h.q = h.drv.Queue()
	if err := h.q.Activate(h.mem, QueueSize, h.features&virtio.FRingEventIdx != 0); err != nil {
		h.t.Fatal(err)
	}
	h.kick = virtio.NewChanKick()
	h.irq = queuetest.NewIRQ()
	if err := h.dev.Activate(h.mem, h.features, []*queue.Queue{h.q}, []virtio.Kick{h.kick}, h.irq); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) alloc(n uint64) uint64 {
	h.t.Helper()
	a, err := h.drv.Alloc(n)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// waitUsed kicks the device and waits for n more used entries.
func (h *harness) waitUsed(n int) []queuetest.Used {
	h.t.Helper()
	h.kick.Signal()
	var got []queuetest.Used
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n {
		u, err := h.drv.Used()
		if err != nil {
			h.t.Fatal(err)
		}
		got = append(got, u...)
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %d used entries, have %d", n, len(got))
		}
		time.Sleep(time.Millisecond)
	}
	return got
}

type result struct {
	status  byte
	usedLen uint32
	data    []byte // writable data (IN, GET_ID)
}

// do submits one request: header, readable data split into split-byte
// buffers (0: one buffer), inLen writable data bytes and a status byte.
func (h *harness) do(typ uint32, sector uint64, out []byte, inLen uint32, split int) result {
	h.t.Helper()
	hdr := h.alloc(16)
	binary.LittleEndian.PutUint32(h.hdrBuf(hdr)[0:], typ)
	binary.LittleEndian.PutUint64(h.hdrBuf(hdr)[8:], sector)
	bufs := []queuetest.Buf{{Addr: hdr, Len: 16}}
	for len(out) > 0 {
		n := len(out)
		if split > 0 {
			n = min(n, split)
		}
		a := h.alloc(uint64(n))
		if err := h.mem.WriteAt(out[:n], a); err != nil {
			h.t.Fatal(err)
		}
		bufs = append(bufs, queuetest.Buf{Addr: a, Len: uint32(n)})
		out = out[n:]
	}
	var in uint64
	if inLen > 0 {
		in = h.alloc(uint64(inLen))
		bufs = append(bufs, queuetest.Buf{Addr: in, Len: inLen, Write: true})
	}
	st := h.alloc(1)
	if err := h.mem.PutUint8(st, 0xee); err != nil {
		h.t.Fatal(err)
	}
	bufs = append(bufs, queuetest.Buf{Addr: st, Len: 1, Write: true})
	head, err := h.drv.AddChain(bufs)
	if err != nil {
		h.t.Fatal(err)
	}
	u := h.waitUsed(1)
	if len(u) != 1 || u[0].ID != uint32(head) {
		h.t.Fatalf("used %+v, want head %d", u, head)
	}
	var r result
	r.usedLen = u[0].Len
	r.status, _ = h.mem.Uint8(st)
	if inLen > 0 {
		r.data = make([]byte, inLen)
		h.mem.ReadAt(r.data, in)
	}
	return r
}

func (h *harness) hdrBuf(a uint64) []byte {
	s, err := h.mem.Slice(a, 16)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) file() []byte {
	b, err := os.ReadFile(h.path)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func TestDeviceReadWrite(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		content := pattern(64 << 10)
		h := newHarness(t, content, false, eventIdx)
		data := pattern(4096)
		for i := range data {
			data[i] ^= 0x5a
		}
		if r := h.do(TypeOut, 8, data, 0, 1000); r.status != StatusOK || r.usedLen != 1 {
			t.Fatalf("write: %+v", r)
		}
		copy(content[8*512:], data)
		if !bytes.Equal(h.file(), content) {
			t.Fatal("file content wrong after write")
		}
		r := h.do(TypeIn, 4, nil, 8192, 0)
		if r.status != StatusOK || r.usedLen != 8193 || !bytes.Equal(r.data, content[4*512:4*512+8192]) {
			t.Fatalf("read: status %d len %d", r.status, r.usedLen)
		}
		if r := h.do(TypeFlush, 0, nil, 0, 0); r.status != StatusOK {
			t.Fatalf("flush: %+v", r)
		}
		r = h.do(TypeGetID, 0, nil, IDBytes, 0)
		if r.status != StatusOK || r.usedLen != IDBytes+1 || string(bytes.TrimRight(r.data, "\x00")) != "disk.img" {
			t.Fatalf("get id: %+v %q", r, r.data)
		}
		s := h.dev.Stats()
		if s.Requests != 4 || s.ReadBytes != 8192 || s.WrittenBytes != 4096 || s.Flushes != 1 || s.IOErrors != 0 {
			t.Fatalf("stats %+v", s)
		}
		if h.irq.Notified(0) == 0 {
			t.Fatal("no interrupt")
		}
	}
}

func TestDeviceDiscardWriteZeroes(t *testing.T) {
	content := pattern(64 << 10)
	h := newHarness(t, content, false, true)
	if r := h.do(TypeWriteZeroes, 0, segments(Segment{Sector: 2, Sectors: 3}, Segment{Sector: 20, Sectors: 8, Unmap: true}), 0, 0); r.status != StatusOK {
		t.Fatalf("write zeroes: %+v", r)
	}
	clear(content[2*512 : 5*512])
	clear(content[20*512 : 28*512])
	if !bytes.Equal(h.file(), content) {
		t.Fatal("write zeroes content")
	}
	r := h.do(TypeDiscard, 0, segments(Segment{Sector: 40, Sectors: 16}), 0, 0)
	if !h.disk.CanDiscard() {
		if h.features&FDiscard != 0 || r.status != StatusUnsupp {
			t.Fatalf("discard without support: %+v", r)
		}
		return
	}
	if r.status != StatusOK {
		t.Fatalf("discard: %+v", r)
	}
	clear(content[40*512 : 56*512])
	if !bytes.Equal(h.file(), content) {
		t.Fatal("discard content")
	}
	// Discard with the unmap flag is UNSUPP; nothing changes.
	if r := h.do(TypeDiscard, 0, segments(Segment{Sector: 60, Sectors: 1, Unmap: true}), 0, 0); r.status != StatusUnsupp {
		t.Fatalf("discard with unmap: %+v", r)
	}
	if !bytes.Equal(h.file(), content) {
		t.Fatal("rejected discard changed the file")
	}
}

func TestDeviceReadOnly(t *testing.T) {
	content := pattern(8192)
	h := newHarness(t, content, true, false)
	if h.dev.Features()&FRO == 0 || h.dev.Features()&(FDiscard|FWriteZeroes) != 0 {
		t.Fatalf("read-only features %#x", h.dev.Features())
	}
	if r := h.do(TypeOut, 0, make([]byte, 512), 0, 0); r.status != StatusIOErr {
		t.Fatalf("write to read-only disk: %+v", r)
	}
	if r := h.do(TypeWriteZeroes, 0, segments(Segment{Sector: 0, Sectors: 1}), 0, 0); r.status != StatusIOErr {
		t.Fatalf("write zeroes to read-only disk: %+v", r)
	}
	if r := h.do(TypeDiscard, 0, segments(Segment{Sector: 0, Sectors: 1}), 0, 0); r.status != StatusIOErr {
		t.Fatalf("discard on read-only disk: %+v", r)
	}
	if !bytes.Equal(h.file(), content) {
		t.Fatal("read-only file changed")
	}
	if r := h.do(TypeIn, 15, nil, 512, 0); r.status != StatusOK || !bytes.Equal(r.data, content[15*512:]) {
		t.Fatalf("read from read-only disk: %+v", r)
	}
}

func TestDeviceBadRequests(t *testing.T) {
	content := pattern(8192) // 16 sectors
	h := newHarness(t, content, false, false)
	if r := h.do(TypeIn, 16, nil, 512, 0); r.status != StatusIOErr || r.usedLen != 1 {
		t.Fatalf("read past end: %+v", r)
	}
	if r := h.do(TypeOut, 15, make([]byte, 1024), 0, 0); r.status != StatusIOErr {
		t.Fatalf("write straddling end: %+v", r)
	}
	if r := h.do(TypeIn, 0, nil, 100, 0); r.status != StatusIOErr {
		t.Fatalf("partial-sector read: %+v", r)
	}
	if r := h.do(77, 0, nil, 0, 0); r.status != StatusUnsupp {
		t.Fatalf("unknown type: %+v", r)
	}
	if !bytes.Equal(h.file(), content) {
		t.Fatal("rejected requests changed the file")
	}

	// No status byte: completed with zero bytes.
	hdr := h.alloc(16)
	data := h.alloc(512)
	head, err := h.drv.AddChain([]queuetest.Buf{{Addr: hdr, Len: 16}, {Addr: data, Len: 512}})
	if err != nil {
		t.Fatal(err)
	}
	if u := h.waitUsed(1); u[0] != (queuetest.Used{ID: uint32(head), Len: 0}) {
		t.Fatalf("no-status request: %+v", u)
	}
	// A looping chain: completed with zero bytes, device still works.
	first := h.drv.Reserve(2)
	h.drv.SetDesc(first, hdr, 16, queue.DescFNext, first+1)
	h.drv.SetDesc(first+1, data, 16, queue.DescFNext, first)
	h.drv.Publish(first)
	if u := h.waitUsed(1); u[0] != (queuetest.Used{ID: uint32(first), Len: 0}) {
		t.Fatalf("looping chain: %+v", u)
	}
	if r := h.do(TypeIn, 0, nil, 512, 0); r.status != StatusOK {
		t.Fatalf("device dead after bad chains: %+v", r)
	}
	s := h.dev.Stats()
	if s.BadChains != 2 || s.IOErrors != 3 || s.Unsupported != 1 || s.Failures != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDeviceRingFault(t *testing.T) {
	h := newHarness(t, pattern(8192), false, false)
	h.drv.SetAvailIdx(1000)
	h.kick.Signal()
	var err error
	select {
	case err = <-h.irq.Failures:
	case <-time.After(10 * time.Second):
		t.Fatal("ring fault not reported")
	}
	if !errors.Is(err, queue.ErrGuest) {
		t.Fatalf("failure %v", err)
	}
	if h.dev.Stats().Failures != 1 {
		t.Fatal("failure not counted")
	}
	// The transport resets the device; it can be activated again.
	h.dev.Reset()
	h.activate()
	if r := h.do(TypeIn, 0, nil, 512, 0); r.status != StatusOK {
		t.Fatalf("after reset: %+v", r)
	}
}

func TestDeviceBuffersBeforeActivate(t *testing.T) {
	// Buffers published before activation (and before any kick) are served.
	h := newHarness(t, pattern(8192), false, true)
	h.dev.Reset()
	drv, err := queuetest.New(h.mem, 8, 0x10000, 0x10000)
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := drv.Alloc(16)
	st, _ := drv.Alloc(1)
	h.mem.PutUint32(hdr, TypeFlush)
	if _, err := drv.AddChain([]queuetest.Buf{{Addr: hdr, Len: 16}, {Addr: st, Len: 1, Write: true}}); err != nil {
		t.Fatal(err)
	}
	q := drv.Queue()
	if err := q.Activate(h.mem, QueueSize, true); err != nil {
		t.Fatal(err)
	}
	irq := queuetest.NewIRQ()
	if err := h.dev.Activate(h.mem, h.features, []*queue.Queue{q}, []virtio.Kick{virtio.NewChanKick()}, irq); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if idx, _ := drv.UsedIdx(); idx == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pre-kick buffer not served")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDeviceManyRequests(t *testing.T) {
	// More requests than the queue holds, kicked in bursts, with event idx:
	// no completion is lost and interrupts keep coming.
	content := pattern(64 << 10)
	h := newHarness(t, content, false, true)
	for round := 0; round < 10; round++ {
		var heads []uint16
		var sts []uint64
		for i := 0; i < 20; i++ {
			hdr, st, buf := h.alloc(16), h.alloc(1), h.alloc(512)
			binary.LittleEndian.PutUint64(h.hdrBuf(hdr)[8:], uint64(i))
			head, err := h.drv.AddChain([]queuetest.Buf{{Addr: hdr, Len: 16}, {Addr: buf, Len: 512, Write: true}, {Addr: st, Len: 1, Write: true}})
			if err != nil {
				t.Fatal(err)
			}
			heads, sts = append(heads, head), append(sts, st)
			if i%7 == 0 {
				h.kick.Signal()
			}
		}
		u := h.waitUsed(len(heads))
		for i, e := range u {
			if e.ID != uint32(heads[i]) || e.Len != 513 {
				t.Fatalf("round %d entry %d: %+v", round, i, e)
			}
			if s, _ := h.mem.Uint8(sts[i]); s != StatusOK {
				t.Fatalf("status %d", s)
			}
		}
	}
	if h.irq.Notified(0) == 0 {
		t.Fatal("no interrupts")
	}
}

func TestDeviceConfigAndFeatures(t *testing.T) {
	h := newHarness(t, pattern(10*512+7), false, false)
	cfg := make([]byte, 64)
	h.dev.ReadConfig(0, cfg)
	le := binary.LittleEndian
	if le.Uint64(cfg[0:]) != 10 || le.Uint32(cfg[12:]) != SegMax || le.Uint32(cfg[20:]) != 512 {
		t.Fatalf("config %x", cfg)
	}
	if le.Uint32(cfg[36:]) != MaxDiscardSectors || le.Uint32(cfg[40:]) != MaxDiscardSeg ||
		le.Uint32(cfg[48:]) != MaxWriteZeroesSectors || le.Uint32(cfg[52:]) != MaxWriteZeroesSeg {
		t.Fatalf("discard/write zeroes config %x", cfg[36:56])
	}
	if le.Uint32(cfg[44:]) == 0 {
		t.Fatal("zero discard alignment")
	}
	if (cfg[56] == 1) != h.disk.CanDiscard() {
		t.Fatal("write_zeroes_may_unmap disagrees with discard support")
	}
	if !bytes.Equal(cfg[57:], make([]byte, 7)) {
		t.Fatalf("bytes past the layout not zero: %x", cfg[57:])
	}
	four := []byte{1, 2, 3, 4}
	h.dev.ReadConfig(1<<40, four)
	if !bytes.Equal(four, make([]byte, 4)) {
		t.Fatal("out-of-range config read not zero")
	}
	h.dev.ReadConfig(configSize-2, four)
	if !bytes.Equal(four, make([]byte, 4)) {
		t.Fatalf("straddling config read %x", four)
	}
	h.dev.WriteConfig(0, []byte{0xff})
	h.dev.ReadConfig(0, cfg[:1])
	if cfg[0] != 10 {
		t.Fatal("config write changed capacity")
	}
	f := h.dev.Features()
	want := virtio.FVersion1 | virtio.FRingEventIdx | virtio.FRingIndirectDesc | FFlush | FSegMax | FBlkSize | FWriteZeroes
	if f&want != want || f&FRO != 0 || h.dev.DeviceID() != virtio.IDBlock {
		t.Fatalf("features %#x", f)
	}
	if got := h.dev.QueueMaxSizes(); len(got) != 1 || got[0] != QueueSize {
		t.Fatalf("queue sizes %v", got)
	}
}

func TestDeviceActivateErrors(t *testing.T) {
	h := newHarness(t, pattern(4096), false, false)
	h.dev.Reset()
	q := h.drv.Queue()
	if err := q.Activate(h.mem, QueueSize, false); err != nil {
		t.Fatal(err)
	}
	ok := h.features
	cases := []struct {
		name     string
		features uint64
		queues   []*queue.Queue
	}{
		{"unoffered feature", ok | 1<<40, []*queue.Queue{q}},
		{"no VERSION_1", ok &^ virtio.FVersion1, []*queue.Queue{q}},
		{"no queue", ok, []*queue.Queue{nil}},
		{"two queues", ok, []*queue.Queue{q, q}},
		{"inactive queue", ok, []*queue.Queue{{}}},
		{"event idx mismatch", ok | virtio.FRingEventIdx, []*queue.Queue{q}},
	}
	for _, c := range cases {
		kicks := make([]virtio.Kick, len(c.queues))
		for i := range kicks {
			kicks[i] = virtio.NewChanKick()
		}
		if err := h.dev.Activate(h.mem, c.features, c.queues, kicks, queuetest.NewIRQ()); err == nil {
			t.Fatalf("%s: Activate succeeded", c.name)
		}
		if err := kicks[0].Wait(); !errors.Is(err, virtio.ErrClosed) {
			t.Fatalf("%s: kick not closed after failed Activate", c.name)
		}
	}
	k := virtio.NewChanKick()
	if err := h.dev.Activate(h.mem, ok, []*queue.Queue{q}, []virtio.Kick{k}, queuetest.NewIRQ()); err != nil {
		t.Fatal(err)
	}
	k2 := virtio.NewChanKick()
	if err := h.dev.Activate(h.mem, ok, []*queue.Queue{q}, []virtio.Kick{k2}, queuetest.NewIRQ()); err == nil {
		t.Fatal("double Activate succeeded")
	}
	h.dev.Reset()
	if err := k.Wait(); !errors.Is(err, virtio.ErrClosed) {
		t.Fatal("Reset did not close the kick")
	}
	h.dev.Reset() // idempotent
}

func TestDeviceEventFDKick(t *testing.T) {
	h := newHarness(t, pattern(4096), false, true)
	h.dev.Reset()
	k, err := virtio.NewEventFDKick()
	if err != nil {
		t.Fatal(err)
	}
	drv, err := queuetest.New(h.mem, 8, 0x10000, 0x10000)
	if err != nil {
		t.Fatal(err)
	}
	q := drv.Queue()
	if err := q.Activate(h.mem, QueueSize, true); err != nil {
		t.Fatal(err)
	}
	if err := h.dev.Activate(h.mem, h.features, []*queue.Queue{q}, []virtio.Kick{k}, queuetest.NewIRQ()); err != nil {
		t.Fatal(err)
	}
	hdr, _ := drv.Alloc(16)
	st, _ := drv.Alloc(1)
	if _, err := drv.AddChain([]queuetest.Buf{{Addr: hdr, Len: 16}, {Addr: st, Len: 1, Write: true}}); err != nil {
		t.Fatal(err)
	}
	if err := k.Signal(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if idx, _ := drv.UsedIdx(); idx == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("eventfd kick not served")
		}
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { h.dev.Reset(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Reset hung with an eventfd kick")
	}
}
