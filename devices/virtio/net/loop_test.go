package net

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
	"github.com/vmm-dev/vmm/memory"
	"github.com/vmm-dev/vmm/network"
)

// pollBackend is a fakeBackend that is also network.Pollable: a pipe holds
// one byte per queued frame, so its read end is readable exactly when a
// frame is queued.
type pollBackend struct {
	*fakeBackend
	r, w *os.File
}

func newPollBackend(t *testing.T) *pollBackend {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return &pollBackend{fakeBackend: newFakeBackend(0), r: r, w: w}
}

func (b *pollBackend) send(t *testing.T, frame []byte) {
	b.toGuest <- frame
	if _, err := b.w.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
}

func (b *pollBackend) TryReadFrame(buf []byte) (int, error) {
	n, err := b.fakeBackend.TryReadFrame(buf)
	if n > 0 {
		var one [1]byte
		b.r.Read(one[:])
	}
	return n, err
}

func (b *pollBackend) ReadFrame(buf []byte) (int, error) {
	n, err := b.fakeBackend.ReadFrame(buf)
	if n > 0 {
		var one [1]byte
		b.r.Read(one[:])
	}
	return n, err
}

func (b *pollBackend) SyscallConn() (syscall.RawConn, error) { return b.r.SyscallConn() }

// TestEventLoop: with a Pollable backend and eventfd kicks one goroutine
// serves both queues: receive, transmit, running out of receive buffers
// while transmit goes on, and Reset while the loop sleeps.
func TestEventLoop(t *testing.T) {
	t.Run("netpoller", func(t *testing.T) { testEventLoop(t, false) })
	t.Run("own thread", func(t *testing.T) { testEventLoop(t, true) })
}

func testEventLoop(t *testing.T, ownThread bool) {
	be := newPollBackend(t)
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 4 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	dev, err := New(Config{MAC: testMAC, Backend: be, OwnThread: ownThread})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	rx, _ := queuetest.New(mem, 16, 0x1000, 1<<20)
	tx, _ := queuetest.New(mem, 16, 0x200000, 1<<20)
	qs := []*queue.Queue{rx.Queue(), tx.Queue()}
	for _, q := range qs {
		if err := q.Activate(mem, QueueSize, true); err != nil {
			t.Fatal(err)
		}
	}
	var kicks [2]*virtio.EventFDKick
	for i := range kicks {
		if kicks[i], err = virtio.NewEventFDKick(); err != nil {
			t.Skipf("no eventfd: %v", err)
		}
	}
	irq := queuetest.NewIRQ()
	if err := dev.Activate(mem, dev.Features(), qs, []virtio.Kick{kicks[0], kicks[1]}, irq); err != nil {
		t.Fatal(err)
	}
	if dev.run.loop == nil {
		t.Fatal("no event loop for a Pollable backend with eventfd kicks")
	}
	h := &harness{t: t, mem: mem, rx: rx, tx: tx}

	// Receive: a frame waits for a buffer, then lands.
	frame := append(hdrBytes(network.Header{}), ethFrame(300, 5)...)
	be.send(t, frame)
	time.Sleep(20 * time.Millisecond)
	a := h.alloc(rx, nil, 2048)
	rx.AddChain([]queuetest.Buf{{Addr: a, Len: 2048, Write: true}})
	kicks[RxQueue].Signal()
	if u := h.waitUsed(rx, 1); u[0].Len != uint32(len(frame)) {
		t.Fatalf("received used len %d, want %d", u[0].Len, len(frame))
	}
	// Out of receive buffers again, a second frame waits; transmit still
	// works meanwhile.
	be.send(t, append(hdrBytes(network.Header{}), ethFrame(400, 6)...))
	time.Sleep(20 * time.Millisecond)
	pkt := append(hdrBytes(network.Header{}), ethFrame(500, 7)...)
	ta := h.alloc(tx, pkt, len(pkt))
	tx.AddChain([]queuetest.Buf{{Addr: ta, Len: uint32(len(pkt))}})
	kicks[TxQueue].Signal()
	h.waitUsed(tx, 1)
	select {
	case got := <-be.fromGst:
		if !bytes.Equal(got, pkt) {
			t.Errorf("transmitted %d bytes, want %d", len(got), len(pkt))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing transmitted while receive waited for buffers")
	}
	a = h.alloc(rx, nil, 2048)
	rx.AddChain([]queuetest.Buf{{Addr: a, Len: 2048, Write: true}})
	kicks[RxQueue].Signal()
	if u := h.waitUsed(rx, 1); u[0].Len != uint32(network.HeaderLen+400) {
		t.Fatalf("second frame: used len %d", u[0].Len)
	}
	// Reset while the loop sleeps returns promptly.
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		dev.Reset()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Reset hung while the event loop slept")
	}
	if s := dev.Stats(); s.RxFrames != 2 || s.TxFrames != 1 || s.Failures != 0 {
		t.Errorf("stats %+v", s)
	}
	select {
	case err := <-irq.Failures:
		t.Errorf("failure reported: %v", err)
	default:
	}
}

// TestWaitSetWake: a wake before the wait ends it, every later wait ends
// the same way, and a wake after close does nothing (no write to a
// descriptor number that may since have been reused).
func TestWaitSetWake(t *testing.T) {
	t.Run("netpoller", func(t *testing.T) { testWaitSetWake(t, false) })
	t.Run("blocking", func(t *testing.T) { testWaitSetWake(t, true) })
}

func testWaitSetWake(t *testing.T, blocking bool) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	tap, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var kicks [2]*virtio.EventFDKick
	for i := range kicks {
		if kicks[i], err = virtio.NewEventFDKick(); err != nil {
			t.Skipf("no eventfd: %v", err)
		}
		defer kicks[i].Close()
	}
	ws, err := newWaitSet(tap, kicks[0], kicks[1], blocking)
	if err != nil {
		t.Fatal(err)
	}
	if err := kicks[1].Signal(); err != nil {
		t.Fatal(err)
	}
	if ready, err := ws.wait(); err != nil || ready != 1<<tokTxKick {
		t.Fatalf("wait = %#b, %v; want the transmit kick", ready, err)
	}
	ws.wake()
	for i := 0; i < 2; i++ {
		if _, err := ws.wait(); err != errLoopWoken {
			t.Fatalf("wait %d after wake: %v, want errLoopWoken", i, err)
		}
	}
	ws.close()
	ws.wake()
}

// TestYieldIfDue: a blocking loop records a yield once yieldEvery has
// passed since the last one, and not before; a netpoller wait never needs
// one.
func TestYieldIfDue(t *testing.T) {
	w := &waitSet{}
	w.yieldIfDue()
	if w.lastYield.IsZero() {
		t.Fatal("no yield on the first call")
	}
	later := time.Now().Add(time.Hour) // not due until an hour has passed
	w.lastYield = later
	w.yieldIfDue()
	if !w.lastYield.Equal(later) {
		t.Errorf("yielded %v before it was due", w.lastYield)
	}
	due := time.Now().Add(-yieldEvery)
	w.lastYield = due
	w.yieldIfDue()
	if !w.lastYield.After(due) {
		t.Errorf("no yield %v after the last", yieldEvery)
	}

	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer wr.Close()
	polled := &waitSet{poll: r} // stands for the epoll descriptor
	polled.yieldIfDue()
	if !polled.lastYield.IsZero() {
		t.Error("a netpoller wait yielded")
	}
}
