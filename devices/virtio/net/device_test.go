package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
	"github.com/vmm-dev/vmm/memory"
	"github.com/vmm-dev/vmm/network"
)

// fakeBackend is a network.Backend over channels.
type fakeBackend struct {
	feats    uint64
	toGuest  chan []byte // header+frame the "host" sends
	fromGst  chan []byte // header+frame the guest sent
	closed   chan struct{}
	wake     chan struct{} // a pending Wake
	once     sync.Once
	mu       sync.Mutex
	offloads uint64
	writeErr error
}

func newFakeBackend(feats uint64) *fakeBackend {
	return &fakeBackend{feats: feats, toGuest: make(chan []byte, 16), fromGst: make(chan []byte, 64), closed: make(chan struct{}), wake: make(chan struct{}, 1)}
}

func (b *fakeBackend) ReadFrame(buf []byte) (int, error) { return b.read(buf, true) }

func (b *fakeBackend) TryReadFrame(buf []byte) (int, error) { return b.read(buf, false) }

func (b *fakeBackend) Wake() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *fakeBackend) read(buf []byte, wait bool) (int, error) {
	for {
		var f []byte
		select {
		case <-b.closed:
			return 0, network.ErrClosed
		case <-b.wake:
			return 0, network.ErrWoken
		case f = <-b.toGuest:
		default:
			if !wait {
				return 0, nil
			}
			select {
			case f = <-b.toGuest:
			case <-b.closed:
				return 0, network.ErrClosed
			case <-b.wake:
				return 0, network.ErrWoken
			}
		}
		if len(f) > len(buf) {
			continue
		}
		return copy(buf, f), nil
	}
}

func (b *fakeBackend) WriteFrame(bufs [][]byte) error {
	select {
	case <-b.closed:
		return network.ErrClosed
	default:
	}
	b.mu.Lock()
	err, to := b.writeErr, b.fromGst
	b.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case to <- bytes.Join(bufs, nil):
		return nil
	case <-b.closed:
		return network.ErrClosed
	}
}

func (b *fakeBackend) Features() uint64 { return b.feats }

func (b *fakeBackend) SetGuestOffloads(f uint64) error {
	b.mu.Lock()
	b.offloads = f
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

type harness struct {
	t        *testing.T
	mem      *memory.Guest
	be       *fakeBackend
	dev      *Device
	rx, tx   *queuetest.Driver
	kicks    [2]*virtio.ChanKick
	irq      *queuetest.IRQ
	features uint64
}

var testMAC = network.MAC{0x52, 0x54, 0, 0x12, 0x34, 0x56}

// newHarness activates a device with the given features (offered ones
// only) over a fake backend offering backendFeats.
func newHarness(t *testing.T, backendFeats uint64, mask func(uint64) uint64) *harness {
	t.Helper()
	h := &harness{t: t, be: newFakeBackend(backendFeats), irq: queuetest.NewIRQ()}
	var err error
	if h.mem, err = memory.New([]memory.RegionSpec{{Base: 0, Size: 4 << 20}}); err != nil {
		t.Fatal(err)
	}
	if h.dev, err = New(Config{MAC: testMAC, Backend: h.be}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.dev.Close()
		h.mem.Close()
	})
	h.features = h.dev.Features()
	if mask != nil {
		h.features = mask(h.features)
	}
	eventIdx := h.features&virtio.FRingEventIdx != 0
	if h.rx, err = queuetest.New(h.mem, 16, 0x1000, 1<<20); err != nil {
		t.Fatal(err)
	}
	if h.tx, err = queuetest.New(h.mem, 16, 0x200000, 1<<20); err != nil {
		t.Fatal(err)
	}
	qs := []*queue.Queue{h.rx.Queue(), h.tx.Queue()}
	for _, q := range qs {
		if err := q.Activate(h.mem, QueueSize, eventIdx); err != nil {
			t.Fatal(err)
		}
	}
	h.kicks = [2]*virtio.ChanKick{virtio.NewChanKick(), virtio.NewChanKick()}
	if err := h.dev.Activate(h.mem, h.features, qs, []virtio.Kick{h.kicks[0], h.kicks[1]}, h.irq); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) alloc(drv *queuetest.Driver, data []byte, n int) uint64 {
	h.t.Helper()
	a, err := drv.Alloc(uint64(n))
	if err != nil {
		h.t.Fatal(err)
	}
	if data != nil {
		if err := h.mem.WriteAt(data, a); err != nil {
			h.t.Fatal(err)
		}
	}
	return a
}

// waitUsed polls the used ring of drv until n entries appeared.
func (h *harness) waitUsed(drv *queuetest.Driver, n int) []queuetest.Used {
	h.t.Helper()
	var got []queuetest.Used
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n {
		u, err := drv.Used()
		if err != nil {
			h.t.Fatal(err)
		}
		got = append(got, u...)
		if time.Now().After(deadline) {
			h.t.Fatalf("%d used entries after 5s, want %d", len(got), n)
		}
		time.Sleep(time.Millisecond)
	}
	return got
}

func hdrBytes(hd network.Header) []byte {
	b := make([]byte, network.HeaderLen)
	hd.Encode(b)
	return b
}

func ethFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seed + byte(i*7)
	}
	return f
}

func TestConfigAndFeatures(t *testing.T) {
	if _, err := New(Config{MAC: testMAC}); err == nil {
		t.Error("New without a backend")
	}
	if _, err := New(Config{MAC: network.MAC{1, 2, 3, 4, 5, 6}, Backend: newFakeBackend(0)}); err == nil {
		t.Error("New with a multicast MAC")
	}
	d, err := New(Config{MAC: testMAC, Backend: newFakeBackend(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := virtio.FVersion1 | virtio.FRingEventIdx | virtio.FRingIndirectDesc | network.FMAC | network.FStatus | network.FMrgRxbuf
	if d.Features() != want {
		t.Errorf("features %#x, want %#x", d.Features(), want)
	}
	var cfg [12]byte
	d.ReadConfig(0, cfg[:])
	if !bytes.Equal(cfg[:6], testMAC[:]) || cfg[6] != statusLinkUp || cfg[8] != 1 || cfg[10] != 0 {
		t.Errorf("config % x", cfg)
	}
	d.WriteConfig(0, []byte{9, 9, 9, 9, 9, 9})
	var b [2]byte
	d.ReadConfig(configSize, b[:])
	d.ReadConfig(1<<63, b[:])
	if b != [2]byte{} {
		t.Error("config beyond its end not zero")
	}
	d.ReadConfig(0, cfg[:6])
	if !bytes.Equal(cfg[:6], testMAC[:]) {
		t.Error("MAC writable")
	}
	// Offloads follow their dependencies (virtio 1.2, 5.1.3.1).
	for _, c := range []struct{ backend, want uint64 }{
		{network.OffloadFeatures, network.OffloadFeatures},
		{network.FGuestTSO4 | network.FGuestECN | network.FHostTSO6, 0},
		{network.FCsum | network.FHostTSO4 | network.FHostECN | network.FGuestECN, network.FCsum | network.FHostTSO4 | network.FHostECN},
		{network.FGuestCsum | network.FGuestUFO | network.FMTU, network.FGuestCsum | network.FGuestUFO},
	} {
		if got := offered(c.backend); got != c.want {
			t.Errorf("offered(%#x) = %#x, want %#x", c.backend, got, c.want)
		}
	}
}

func TestTransmit(t *testing.T) {
	h := newHarness(t, network.OffloadFeatures, nil)
	frame := ethFrame(1000, 1)
	hd := network.Header{Flags: network.HdrFNeedsCsum, CsumStart: 34, CsumOffset: 16, NumBuffers: 7}
	pkt := append(hdrBytes(hd), frame...)
	a := h.alloc(h.tx, pkt, len(pkt))
	// Header split across descriptors, the rest through an indirect table.
	if _, err := h.tx.AddChain([]queuetest.Buf{{Addr: a, Len: 5}, {Addr: a + 5, Len: 100}, {Addr: a + 105, Len: uint32(len(pkt) - 105)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.tx.AddIndirect([]queuetest.Buf{{Addr: a, Len: 12}, {Addr: a + 12, Len: uint32(len(pkt) - 12)}}); err != nil {
		t.Fatal(err)
	}
	h.kicks[TxQueue].Signal()
	used := h.waitUsed(h.tx, 2)
	for _, u := range used {
		if u.Len != 0 {
			t.Errorf("tx used len %d", u.Len)
		}
	}
	want := append(hdrBytes(network.Header{Flags: network.HdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}), frame...)
	for i := 0; i < 2; i++ {
		select {
		case got := <-h.be.fromGst:
			if !bytes.Equal(got, want) {
				t.Errorf("frame %d: backend got %d bytes, want %d (num_buffers must be cleared)", i, len(got), len(want))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("backend got no frame")
		}
	}
	if s := h.dev.Stats(); s.TxFrames != 2 || s.TxBytes != 2000 || s.TxDropped != 0 {
		t.Errorf("stats %+v", s)
	}
	if h.be.offloads != rxOffloads(h.features) {
		t.Errorf("backend offloads %#x, want %#x", h.be.offloads, rxOffloads(h.features))
	}
}

// TestTransmitHostile: bad frames are dropped, their chains completed with
// 0 bytes, and the queue goes on.
func TestTransmitHostile(t *testing.T) {
	// Negotiate no offloads: GSO and checksum requests are then invalid.
	h := newHarness(t, network.OffloadFeatures, func(f uint64) uint64 { return f &^ network.OffloadFeatures })
	good := append(hdrBytes(network.Header{}), ethFrame(60, 3)...)
	cases := []struct {
		name string
		pkt  []byte
		n    int
	}{
		{"header only partly present", good[:8], 8},
		{"runt frame", good[:network.HeaderLen+10], network.HeaderLen + 10},
		{"oversized frame", nil, network.HeaderLen + MaxFrameLen + 1},
		{"csum not negotiated", append(hdrBytes(network.Header{Flags: network.HdrFNeedsCsum}), ethFrame(60, 0)...), 0},
		{"gso not negotiated", append(hdrBytes(network.Header{Flags: network.HdrFNeedsCsum, GSOType: network.GSOTCPv4, GSOSize: 1448}), ethFrame(60, 0)...), 0},
		{"unknown flags", append(hdrBytes(network.Header{Flags: 0x80}), ethFrame(60, 0)...), 0},
	}
	for _, c := range cases {
		n := c.n
		if n == 0 {
			n = len(c.pkt)
		}
		a := h.alloc(h.tx, c.pkt, n)
		if _, err := h.tx.AddChain([]queuetest.Buf{{Addr: a, Len: uint32(n)}}); err != nil {
			t.Fatal(err)
		}
	}
	// A chain with a buffer outside guest RAM.
	if _, err := h.tx.AddChain([]queuetest.Buf{{Addr: 1 << 40, Len: 100}}); err != nil {
		t.Fatal(err)
	}
	// And a good frame after all of them.
	a := h.alloc(h.tx, good, len(good))
	if _, err := h.tx.AddChain([]queuetest.Buf{{Addr: a, Len: uint32(len(good))}}); err != nil {
		t.Fatal(err)
	}
	h.kicks[TxQueue].Signal()
	used := h.waitUsed(h.tx, len(cases)+2)
	for _, u := range used {
		if u.Len != 0 {
			t.Errorf("used len %d", u.Len)
		}
	}
	select {
	case got := <-h.be.fromGst:
		if !bytes.Equal(got, good) {
			t.Error("good frame mangled")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("good frame not sent")
	}
	select {
	case got := <-h.be.fromGst:
		t.Errorf("a bad frame reached the backend: %d bytes", len(got))
	default:
	}
	if s := h.dev.Stats(); s.TxFrames != 1 || s.TxDropped != uint64(len(cases)+1) || s.BadChains != 1 {
		t.Errorf("stats %+v", s)
	}
	// Backend refusals drop the frame only.
	h.be.mu.Lock()
	h.be.writeErr = errors.New("link down")
	h.be.mu.Unlock()
	if _, err := h.tx.AddChain([]queuetest.Buf{{Addr: a, Len: uint32(len(good))}}); err != nil {
		t.Fatal(err)
	}
	h.kicks[TxQueue].Signal()
	h.waitUsed(h.tx, 1)
	select {
	case err := <-h.irq.Failures:
		t.Fatalf("device failed on a backend refusal: %v", err)
	default:
	}
}

// TestBrokenTxRing: an impossible avail.idx breaks the device, which
// reports it; a later Reset and Close return.
func TestBrokenTxRing(t *testing.T) {
	h := newHarness(t, 0, nil)
	if err := h.tx.SetAvailIdx(1000); err != nil {
		t.Fatal(err)
	}
	h.kicks[TxQueue].Signal()
	select {
	case err := <-h.irq.Failures:
		if !errors.Is(err, queue.ErrGuest) {
			t.Errorf("failure %v does not wrap ErrGuest", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure reported")
	}
	h.dev.Reset()
	if s := h.dev.Stats(); s.Failures != 1 {
		t.Errorf("failures %d", s.Failures)
	}
}

// TestBrokenRxRing: a broken receive ring fails the device when a frame
// needs a buffer; the transmit side stops too.
func TestBrokenRxRing(t *testing.T) {
	h := newHarness(t, 0, nil)
	if err := h.rx.SetAvailIdx(0x8000); err != nil {
		t.Fatal(err)
	}
	h.be.toGuest <- append(hdrBytes(network.Header{}), ethFrame(100, 1)...)
	select {
	case err := <-h.irq.Failures:
		if !errors.Is(err, queue.ErrGuest) {
			t.Errorf("failure %v does not wrap ErrGuest", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure reported")
	}
	h.dev.Reset()
	if s := h.dev.Stats(); s.Failures != 1 {
		t.Errorf("failures %d", s.Failures)
	}
}

func (h *harness) postRx(n int, count int) []uint64 {
	var addrs []uint64
	for range count {
		a := h.alloc(h.rx, nil, n)
		if _, err := h.rx.AddChain([]queuetest.Buf{{Addr: a, Len: uint32(n), Write: true}}); err != nil {
			h.t.Fatal(err)
		}
		addrs = append(addrs, a)
	}
	h.kicks[RxQueue].Signal()
	return addrs
}

func (h *harness) read(a uint64, n uint32) []byte {
	b := make([]byte, n)
	if err := h.mem.ReadAt(b, a); err != nil {
		h.t.Fatal(err)
	}
	return b
}

// TestReceive: a frame waits for a buffer (back-pressure), then lands in
// one chain with num_buffers 1.
func TestReceive(t *testing.T) {
	h := newHarness(t, 0, func(f uint64) uint64 { return f &^ network.FMrgRxbuf })
	frame := ethFrame(1500, 9)
	h.be.toGuest <- append(hdrBytes(network.Header{NumBuffers: 99}), frame...)
	time.Sleep(20 * time.Millisecond)
	if u, _ := h.rx.Used(); len(u) != 0 {
		t.Fatal("used entries without buffers")
	}
	addrs := h.postRx(2048, 1)
	u := h.waitUsed(h.rx, 1)
	if u[0].Len != uint32(len(frame)+network.HeaderLen) {
		t.Fatalf("used len %d", u[0].Len)
	}
	got := h.read(addrs[0], u[0].Len)
	if want := append(hdrBytes(network.Header{NumBuffers: 1}), frame...); !bytes.Equal(got, want) {
		t.Errorf("received % x..., want % x...", got[:16], want[:16])
	}
	// A frame too large for a buffer is dropped; the chain returns empty.
	h.be.toGuest <- append(hdrBytes(network.Header{}), ethFrame(3000, 1)...)
	h.postRx(2048, 1)
	u = h.waitUsed(h.rx, 1)
	if u[0].Len != 0 {
		t.Errorf("oversized frame: used len %d", u[0].Len)
	}
	if s := h.dev.Stats(); s.RxFrames != 1 || s.RxDropped != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestReceiveBatch: frames that queued up in the backend while the guest
// had no buffers are delivered in one go, with one interrupt for all.
func TestReceiveBatch(t *testing.T) {
	h := newHarness(t, 0, nil)
	const n = 8
	for i := range n {
		h.be.toGuest <- append(hdrBytes(network.Header{}), ethFrame(100+i, byte(i))...)
	}
	time.Sleep(20 * time.Millisecond) // the worker holds frame 0 and waits for buffers
	h.postRx(2048, n)
	u := h.waitUsed(h.rx, n)
	for i, e := range u {
		if e.Len != uint32(network.HeaderLen+100+i) {
			t.Errorf("frame %d: used len %d", i, e.Len)
		}
	}
	time.Sleep(20 * time.Millisecond)
	got := h.irq.Notified(RxQueue)
	if got != 1 {
		t.Errorf("%d rx interrupts for a batch of %d frames, want 1", got, n)
	}
}

// TestResetWhileReading: Reset returns while the rx worker is blocked in
// the backend's ReadFrame (no host traffic), and after re-activation
// frames flow again.
func TestResetWhileReading(t *testing.T) {
	h := newHarness(t, 0, nil)
	time.Sleep(20 * time.Millisecond) // the worker blocks in ReadFrame
	done := make(chan struct{})
	go func() {
		h.dev.Reset()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Reset hung while the rx worker waited for the backend")
	}
	rx, err := queuetest.New(h.mem, 16, 0x1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := queuetest.New(h.mem, 16, 0x200000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	qs := []*queue.Queue{rx.Queue(), tx.Queue()}
	for _, q := range qs {
		if err := q.Activate(h.mem, QueueSize, true); err != nil {
			t.Fatal(err)
		}
	}
	h.kicks = [2]*virtio.ChanKick{virtio.NewChanKick(), virtio.NewChanKick()}
	if err := h.dev.Activate(h.mem, h.features, qs, []virtio.Kick{h.kicks[0], h.kicks[1]}, h.irq); err != nil {
		t.Fatal(err)
	}
	h.rx = rx
	h.postRx(2048, 1)
	frame := append(hdrBytes(network.Header{}), ethFrame(64, 3)...)
	h.be.toGuest <- frame
	if u := h.waitUsed(rx, 1); u[0].Len != uint32(len(frame)) {
		t.Errorf("after re-activation: used len %d", u[0].Len)
	}
}

// TestReceiveMergeable: a frame spreads over several chains.
func TestReceiveMergeable(t *testing.T) {
	h := newHarness(t, network.OffloadFeatures, nil)
	frame := ethFrame(2500, 5)
	hd := network.Header{Flags: network.HdrFDataValid}
	h.be.toGuest <- append(hdrBytes(hd), frame...)
	addrs := h.postRx(1000, 4)
	u := h.waitUsed(h.rx, 3)
	var got []byte
	for i, e := range u {
		got = append(got, h.read(addrs[i], e.Len)...)
	}
	hd.NumBuffers = 3
	if want := append(hdrBytes(hd), frame...); !bytes.Equal(got, want) {
		t.Errorf("merged frame differs: %d bytes, want %d; header % x", len(got), len(want), got[:12])
	}
	if binary.LittleEndian.Uint16(got[10:]) != 3 {
		t.Error("num_buffers != 3")
	}
	// With mergeable buffers the backend keeps receive GSO: a GSO frame is
	// delivered like any other, all its buffers published at once.
	if want := h.features & network.OffloadFeatures; h.be.offloads != want {
		t.Errorf("backend offloads %#x, want %#x", h.be.offloads, want)
	}
	big := append(hdrBytes(network.Header{Flags: network.HdrFNeedsCsum, GSOType: network.GSOTCPv4, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}), ethFrame(900, 1)...)
	h.be.toGuest <- big
	u = h.waitUsed(h.rx, 1)
	if u[0].Len != uint32(len(big)) {
		t.Errorf("GSO frame: used len %d, want %d", u[0].Len, len(big))
	}
	if s := h.dev.Stats(); s.RxDropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestReceiveBigPackets: without MRG_RXBUF, receive GSO is allowed and a
// GSO frame lands in one large chain.
func TestReceiveBigPackets(t *testing.T) {
	h := newHarness(t, network.OffloadFeatures, func(f uint64) uint64 { return f &^ network.FMrgRxbuf })
	if h.be.offloads != h.features&network.OffloadFeatures {
		t.Errorf("backend offloads %#x, want %#x", h.be.offloads, h.features&network.OffloadFeatures)
	}
	hd := network.Header{Flags: network.HdrFNeedsCsum, GSOType: network.GSOTCPv4 | network.GSOECN, GSOSize: 1448, HdrLen: 66, CsumStart: 34, CsumOffset: 16}
	big := append(hdrBytes(hd), ethFrame(30000, 1)...)
	h.be.toGuest <- big
	a := h.alloc(h.rx, nil, 65562)
	if _, err := h.rx.AddIndirect([]queuetest.Buf{{Addr: a, Len: 12, Write: true}, {Addr: a + 12, Len: 65550, Write: true}}); err != nil {
		t.Fatal(err)
	}
	h.kicks[RxQueue].Signal()
	u := h.waitUsed(h.rx, 1)
	hd.NumBuffers = 1
	if want := append(hdrBytes(hd), big[12:]...); u[0].Len != uint32(len(big)) || !bytes.Equal(h.read(a, u[0].Len), want) {
		t.Errorf("GSO frame: used len %d", u[0].Len)
	}
}

// TestReceiveHostile: rx chains that cannot take a header are returned
// empty, a malformed chain too, and delivery goes on.
func TestReceiveHostile(t *testing.T) {
	h := newHarness(t, 0, nil)
	tiny := h.alloc(h.rx, nil, 8)
	if _, err := h.rx.AddChain([]queuetest.Buf{{Addr: tiny, Len: 8, Write: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rx.AddChain([]queuetest.Buf{{Addr: 1 << 40, Len: 100, Write: true}}); err != nil {
		t.Fatal(err)
	}
	ro := h.alloc(h.rx, nil, 2048)
	if _, err := h.rx.AddChain([]queuetest.Buf{{Addr: ro, Len: 2048}}); err != nil {
		t.Fatal(err) // device-readable only: no room for a frame
	}
	addrs := h.postRx(2048, 1)
	frame := append(hdrBytes(network.Header{}), ethFrame(100, 2)...)
	h.be.toGuest <- frame
	u := h.waitUsed(h.rx, 4)
	for _, e := range u[:3] {
		if e.Len != 0 {
			t.Errorf("bad chain %d: used len %d", e.ID, e.Len)
		}
	}
	if u[3].Len != uint32(len(frame)) || !bytes.Equal(h.read(addrs[0], 12)[:10], frame[:10]) {
		t.Errorf("frame not delivered after bad chains: %+v", u[3])
	}
	// Offloads the guest did not take are refused: with no GUEST_CSUM.
	h.be.toGuest <- append(hdrBytes(network.Header{Flags: network.HdrFNeedsCsum, CsumStart: 14, CsumOffset: 6}), ethFrame(100, 2)...)
	h.be.toGuest <- append(hdrBytes(network.Header{}), ethFrame(5, 2)...) // runt
	h.be.toGuest <- frame
	h.postRx(2048, 1)
	u = h.waitUsed(h.rx, 1)
	if u[0].Len != uint32(len(frame)) {
		t.Errorf("used len %d", u[0].Len)
	}
	if s := h.dev.Stats(); s.RxDropped != 2 || s.BadChains != 3 {
		t.Errorf("stats %+v", s)
	}
}

// TestResetWhileWaiting: Reset returns while the rx worker waits for
// buffers, and while it waits for the backend; the device activates again
// and delivers.
func TestResetWhileWaiting(t *testing.T) {
	h := newHarness(t, 0, nil)
	h.be.toGuest <- append(hdrBytes(network.Header{}), ethFrame(100, 1)...)
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		h.dev.Reset()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Reset hung")
	}
	h.dev.Reset() // no-op
	// Activate again on fresh rings.
	rx, err := queuetest.New(h.mem, 16, 0x1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	tx, _ := queuetest.New(h.mem, 16, 0x200000, 1<<20)
	qs := []*queue.Queue{rx.Queue(), tx.Queue()}
	for _, q := range qs {
		q.Activate(h.mem, QueueSize, true)
	}
	k := []virtio.Kick{virtio.NewChanKick(), virtio.NewChanKick()}
	if err := h.dev.Activate(h.mem, h.features, qs, k, h.irq); err != nil {
		t.Fatal(err)
	}
	h.rx = rx
	frame := append(hdrBytes(network.Header{}), ethFrame(200, 4)...)
	h.be.toGuest <- frame
	a := h.alloc(rx, nil, 2048)
	rx.AddChain([]queuetest.Buf{{Addr: a, Len: 2048, Write: true}})
	k[0].(*virtio.ChanKick).Signal()
	u := h.waitUsed(rx, 1)
	if u[0].Len != uint32(len(frame)) {
		t.Errorf("after re-activation: used len %d", u[0].Len)
	}
	if err := h.dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.dev.Activate(h.mem, h.features, qs, []virtio.Kick{virtio.NewChanKick(), virtio.NewChanKick()}, h.irq); err == nil {
		t.Error("Activate after Close succeeded")
	}
}

func TestActivateChecks(t *testing.T) {
	be := newFakeBackend(0)
	d, _ := New(Config{MAC: testMAC, Backend: be})
	defer d.Close()
	mem, _ := memory.New([]memory.RegionSpec{{Base: 0, Size: 1 << 20}})
	defer mem.Close()
	k := func() []virtio.Kick { return []virtio.Kick{virtio.NewChanKick(), virtio.NewChanKick()} }
	irq := queuetest.NewIRQ()
	if err := d.Activate(mem, virtio.FVersion1, []*queue.Queue{nil, nil}, k(), irq); err == nil {
		t.Error("activated without queues")
	}
	if err := d.Activate(mem, 0, []*queue.Queue{nil, nil}, k(), irq); err == nil {
		t.Error("activated without VERSION_1")
	}
	if err := d.Activate(mem, virtio.FVersion1|1<<60, []*queue.Queue{nil, nil}, k(), irq); err == nil {
		t.Error("activated with unoffered features")
	}
	if err := d.Activate(mem, virtio.FVersion1, nil, nil, irq); err == nil {
		t.Error("activated with no kicks")
	}
}

// TestTransmitLargeFrameNotifiesEarly: once a large frame is sent, the
// guest (which asked for an interrupt at the first completion) hears of it
// before the next frame is sent, not when the ring has been drained: TCP
// small queues keep a guest socket from sending more until then.
func TestTransmitLargeFrameNotifiesEarly(t *testing.T) {
	h := newHarness(t, network.OffloadFeatures, nil)
	h.be.mu.Lock()
	h.be.fromGst = make(chan []byte) // WriteFrame waits for the test
	h.be.mu.Unlock()
	t.Cleanup(func() { h.be.Close() }) // before the device: frees a blocked WriteFrame
	if err := h.tx.SetUsedEvent(0); err != nil {
		t.Fatal(err)
	}
	pkt := append(hdrBytes(network.Header{}), ethFrame(40<<10, 3)...)
	for range 2 {
		a := h.alloc(h.tx, pkt, len(pkt))
		if _, err := h.tx.AddChain([]queuetest.Buf{{Addr: a, Len: uint32(len(pkt))}}); err != nil {
			t.Fatal(err)
		}
	}
	h.kicks[TxQueue].Signal()
	recv := func() {
		t.Helper()
		select {
		case <-h.be.fromGst:
		case <-time.After(5 * time.Second):
			t.Fatal("backend got no frame")
		}
	}
	notified := func() int {
		return h.irq.Notified(TxQueue)
	}
	recv()
	// The device now completes the first frame and blocks sending the
	// second until the next recv.
	deadline := time.Now().Add(5 * time.Second)
	for notified() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no transmit interrupt after the first large frame")
		}
		time.Sleep(time.Millisecond)
	}
	recv()
	h.waitUsed(h.tx, 2)
}
