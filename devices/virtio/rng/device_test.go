package rng

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
	"github.com/vmm-dev/vmm/memory"
)

type harness struct {
	t    *testing.T
	dev  *Device
	mem  *memory.Guest
	drv  *queuetest.Driver
	kick *virtio.ChanKick
	irq  *queuetest.IRQ
}

func newHarness(t *testing.T, eventIdx bool) *harness {
	t.Helper()
	h := &harness{t: t, dev: New()}
	var err error
	if h.mem, err = memory.New([]memory.RegionSpec{{Base: 0, Size: 4 << 20}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.mem.Close() })
	h.activate(eventIdx)
	t.Cleanup(h.dev.Reset)
	return h
}

func (h *harness) activate(eventIdx bool) {
	h.t.Helper()
	var err error
	if h.drv, err = queuetest.New(h.mem, 64, 0x10000, 4<<20-0x10000); err != nil {
		h.t.Fatal(err)
	}
	feat := h.dev.Features()
	if !eventIdx {
		feat &^= virtio.FRingEventIdx
	}
	q := h.drv.Queue()
	if err := q.Activate(h.mem, QueueSize, eventIdx); err != nil {
		h.t.Fatal(err)
	}
	h.kick = virtio.NewChanKick()
	h.irq = queuetest.NewIRQ()
	if err := h.dev.Activate(h.mem, feat, []*queue.Queue{q}, []virtio.Kick{h.kick}, h.irq); err != nil {
		h.t.Fatal(err)
	}
}

// submit adds one chain of bufs, kicks and returns its used length.
func (h *harness) submit(bufs []queuetest.Buf) uint32 {
	h.t.Helper()
	if _, err := h.drv.AddChain(bufs); err != nil {
		h.t.Fatal(err)
	}
	h.kick.Signal()
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := h.drv.Used()
		if err != nil {
			h.t.Fatal(err)
		}
		if len(u) == 1 {
			return u[0].Len
		}
		if len(u) > 1 || time.Now().After(deadline) {
			h.t.Fatalf("used entries %v, want one", u)
		}
		time.Sleep(time.Millisecond)
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

func (h *harness) read(addr, n uint64) []byte {
	h.t.Helper()
	b := make([]byte, n)
	if err := h.mem.ReadAt(b, addr); err != nil {
		h.t.Fatal(err)
	}
	return b
}

func TestFillsWritableBuffers(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		h := newHarness(t, eventIdx)
		a, b := h.alloc(64), h.alloc(4096)
		if n := h.submit([]queuetest.Buf{{Addr: a, Len: 64, Write: true}, {Addr: b, Len: 4096, Write: true}}); n != 64+4096 {
			t.Fatalf("eventIdx %v: used length %d, want %d", eventIdx, n, 64+4096)
		}
		// 4 KiB of zeros from getrandom is not going to happen.
		if bytes.Equal(h.read(b, 4096), make([]byte, 4096)) || bytes.Equal(h.read(a, 64), make([]byte, 64)) {
			t.Fatalf("eventIdx %v: buffers still zero", eventIdx)
		}
		if s := h.dev.Stats(); s.Requests != 1 || s.Bytes != 64+4096 || s.BadChains != 0 {
			t.Fatalf("eventIdx %v: stats %+v", eventIdx, s)
		}
	}
}

func TestCapsOneRequest(t *testing.T) {
	h := newHarness(t, true)
	big := uint64(MaxRequest + 4096)
	a := h.alloc(big)
	if n := h.submit([]queuetest.Buf{{Addr: a, Len: uint32(big), Write: true}}); n != MaxRequest {
		t.Fatalf("used length %d, want %d", n, MaxRequest)
	}
	if !bytes.Equal(h.read(a+MaxRequest, 4096), make([]byte, 4096)) {
		t.Fatal("wrote past MaxRequest")
	}
}

func TestRefusesReadableAndBadBuffers(t *testing.T) {
	h := newHarness(t, false)
	a := h.alloc(64)
	// A device-readable buffer: not a request of this device.
	if n := h.submit([]queuetest.Buf{{Addr: a, Len: 32}, {Addr: a + 32, Len: 32, Write: true}}); n != 0 {
		t.Fatalf("chain with a readable buffer: used length %d, want 0", n)
	}
	if !bytes.Equal(h.read(a, 64), make([]byte, 64)) {
		t.Fatal("wrote into a chain with a readable buffer")
	}
	// A buffer outside guest memory: nothing written, the device goes on.
	if n := h.submit([]queuetest.Buf{{Addr: 1 << 40, Len: 64, Write: true}}); n != 0 {
		t.Fatalf("buffer outside memory: used length %d, want 0", n)
	}
	if n := h.submit([]queuetest.Buf{{Addr: a, Len: 16, Write: true}}); n != 16 {
		t.Fatalf("after bad chains: used length %d, want 16", n)
	}
	if s := h.dev.Stats(); s.BadChains != 2 || s.Requests != 3 {
		t.Fatalf("stats %+v, want 2 bad chains of 3 requests", s)
	}
}

func TestRingFaultAndReset(t *testing.T) {
	h := newHarness(t, false)
	h.drv.SetAvailIdx(1000) // more than the queue size ahead: a broken ring
	h.kick.Signal()
	var err error
	select {
	case err = <-h.irq.Failures:
	case <-time.After(10 * time.Second):
		t.Fatal("ring fault not reported")
	}
	if !errors.Is(err, queue.ErrGuest) || h.dev.Stats().Failures != 1 {
		t.Fatalf("failure %v, stats %+v", err, h.dev.Stats())
	}
	// The transport resets the device; it works again after activation.
	h.dev.Reset()
	h.activate(false)
	a := h.alloc(32)
	if n := h.submit([]queuetest.Buf{{Addr: a, Len: 32, Write: true}}); n != 32 {
		t.Fatalf("after reset: used length %d", n)
	}
}

func TestActivateChecks(t *testing.T) {
	d := New()
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	k := virtio.NewChanKick()
	if err := d.Activate(mem, virtio.FVersion1, []*queue.Queue{nil}, []virtio.Kick{k}, queuetest.NewIRQ()); err == nil {
		t.Fatal("activated without a queue")
	}
	if err := k.Wait(); !errors.Is(err, virtio.ErrClosed) {
		t.Fatalf("kick after a failed Activate: %v, want closed", err)
	}
	d.Reset() // inactive: a no-op
	var cfg [8]byte
	cfg[0] = 0xff
	d.ReadConfig(0, cfg[:])
	if cfg != [8]byte{} {
		t.Fatalf("config space %x, want none", cfg)
	}
}
