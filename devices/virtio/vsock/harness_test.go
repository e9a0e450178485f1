package vsock

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
	"github.com/vmm-dev/vmm/memory"
)

const (
	testCID    = 7
	rxBufSize  = 4096 // payload bytes per receive buffer, as Linux posts them
	rxBuffers  = 64
	txSlotSize = hdrLen + 4096
	txSlots    = 64
)

// packet is what the fake guest received or sends.
type packet struct {
	h       header
	payload []byte
}

func (p packet) String() string {
	return fmt.Sprintf("op %d %d:%d->%d:%d len %d flags %d buf %d fwd %d",
		p.h.op, p.h.srcCID, p.h.srcPort, p.h.dstCID, p.h.dstPort, p.h.len, p.h.flags, p.h.bufAlloc, p.h.fwdCnt)
}

// fakeGuest is a driver for the three queues of a device under test, with
// the host end's sockets in a temporary directory.
type fakeGuest struct {
	t              *testing.T
	dev            *Device
	path           string
	mem            *memory.Guest
	rx, tx, ev     *queuetest.Driver
	rxKick, txKick *virtio.ChanKick
	irq            *queuetest.IRQ

	rxAddr map[uint16]uint64 // receive chain head -> its buffer
	txFree []uint64
	txAddr map[uint16]uint64
}

// newFakeGuest makes a device, applies opts to it and activates it, with
// rxBuffers receive buffers posted.
func newFakeGuest(t *testing.T, opts ...func(*Device)) *fakeGuest {
	t.Helper()
	return newFakeGuestPosting(t, rxBuffers, opts...)
}

// newFakeGuestPosting is newFakeGuest with posted receive buffers.
func newFakeGuestPosting(t *testing.T, posted int, opts ...func(*Device)) *fakeGuest {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.sock")
	dev, err := New(Config{GuestCID: testCID, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	for _, o := range opts {
		o(dev)
	}
	g := &fakeGuest{t: t, dev: dev, path: path, rxAddr: map[uint16]uint64{}, txAddr: map[uint16]uint64{}}
	if g.mem, err = memory.New([]memory.RegionSpec{{Base: 0, Size: 8 << 20}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.mem.Close() })
	if g.rx, err = queuetest.New(g.mem, 128, 0x10000, 2<<20); err != nil {
		t.Fatal(err)
	}
	if g.tx, err = queuetest.New(g.mem, 128, 0x210000, 2<<20); err != nil {
		t.Fatal(err)
	}
	if g.ev, err = queuetest.New(g.mem, 16, 0x410000, 64<<10); err != nil {
		t.Fatal(err)
	}
	var qs []*queue.Queue
	for _, d := range []*queuetest.Driver{g.rx, g.tx, g.ev} {
		q := d.Queue()
		if err := q.Activate(g.mem, QueueSize, true); err != nil {
			t.Fatal(err)
		}
		qs = append(qs, q)
	}
	for range posted {
		a, err := g.rx.Alloc(hdrLen + rxBufSize)
		if err != nil {
			t.Fatal(err)
		}
		g.postRx(a)
	}
	for range txSlots {
		a, err := g.tx.Alloc(txSlotSize)
		if err != nil {
			t.Fatal(err)
		}
		g.txFree = append(g.txFree, a)
	}
	g.rxKick, g.txKick = virtio.NewChanKick(), virtio.NewChanKick()
	g.irq = queuetest.NewIRQ()
	kicks := []virtio.Kick{g.rxKick, g.txKick, virtio.NewChanKick()}
	if err := dev.Activate(g.mem, dev.Features(), qs, kicks, g.irq); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Reset)
	return g
}

// postRx offers the receive buffer at a as Linux 6.1 does: the header and
// the payload in two descriptors.
func (g *fakeGuest) postRx(a uint64) {
	g.t.Helper()
	head, err := g.rx.AddChain([]queuetest.Buf{{Addr: a, Len: hdrLen, Write: true}, {Addr: a + hdrLen, Len: rxBufSize, Write: true}})
	if err != nil {
		g.t.Fatal(err)
	}
	g.rxAddr[head] = a
}

// hdr is a header from the guest's socket at port to the host's.
func hdr(op uint16, guestPort, hostPort uint32) header {
	return header{srcCID: testCID, dstCID: HostCID, srcPort: guestPort, dstPort: hostPort,
		typ: typeStream, op: op, bufAlloc: 256 << 10}
}

// send transmits one packet (payload at most 4096 bytes).
func (g *fakeGuest) send(h header, payload []byte) {
	g.t.Helper()
	h.len = uint32(len(payload))
	g.sendRaw(h, payload)
}

// sendRaw transmits h as it is (its length may lie) and payload.
func (g *fakeGuest) sendRaw(h header, payload []byte) {
	g.t.Helper()
	g.reclaimTx()
	deadline := time.Now().Add(10 * time.Second)
	for len(g.txFree) == 0 {
		if time.Now().After(deadline) {
			g.t.Fatal("the device does not complete transmitted packets")
		}
		time.Sleep(time.Millisecond)
		g.reclaimTx()
	}
	a := g.txFree[len(g.txFree)-1]
	g.txFree = g.txFree[:len(g.txFree)-1]
	var b [hdrLen]byte
	h.encode(b[:])
	if err := g.mem.WriteAt(append(b[:], payload...), a); err != nil {
		g.t.Fatal(err)
	}
	bufs := []queuetest.Buf{{Addr: a, Len: hdrLen}}
	if len(payload) > 0 {
		bufs = append(bufs, queuetest.Buf{Addr: a + hdrLen, Len: uint32(len(payload))})
	}
	head, err := g.tx.AddChain(bufs)
	if err != nil {
		g.t.Fatal(err)
	}
	g.txAddr[head] = a
	g.txKick.Signal()
}

func (g *fakeGuest) reclaimTx() {
	g.t.Helper()
	used, err := g.tx.Used()
	if err != nil {
		g.t.Fatal(err)
	}
	for _, u := range used {
		a, ok := g.txAddr[uint16(u.ID)]
		if !ok {
			g.t.Fatalf("tx used id %d was not in flight", u.ID)
		}
		delete(g.txAddr, uint16(u.ID))
		g.txFree = append(g.txFree, a)
	}
}

// poll returns the packets received since the last call, re-posting their
// buffers.
func (g *fakeGuest) poll() []packet {
	g.t.Helper()
	used, err := g.rx.Used()
	if err != nil {
		g.t.Fatal(err)
	}
	var out []packet
	for _, u := range used {
		a, ok := g.rxAddr[uint16(u.ID)]
		if !ok {
			g.t.Fatalf("rx used id %d was not posted", u.ID)
		}
		delete(g.rxAddr, uint16(u.ID))
		if u.Len < hdrLen {
			g.t.Fatalf("rx used length %d, shorter than a header", u.Len)
		}
		b := make([]byte, u.Len)
		if err := g.mem.ReadAt(b, a); err != nil {
			g.t.Fatal(err)
		}
		p := packet{h: decodeHeader(b), payload: b[hdrLen:]}
		if int(p.h.len) != len(p.payload) {
			g.t.Fatalf("packet %v: used length %d", p, u.Len)
		}
		out = append(out, p)
		g.postRx(a)
	}
	if len(used) > 0 {
		g.rxKick.Signal()
	}
	return out
}

// recv waits for the next packet.
func (g *fakeGuest) recv() packet {
	g.t.Helper()
	ps := g.recvN(1)
	return ps[0]
}

// recvN waits for n packets.
func (g *fakeGuest) recvN(n int) []packet {
	g.t.Helper()
	var out []packet
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n {
		out = append(out, g.poll()...)
		if len(out) >= n {
			break
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("received %d packets %v, want %d", len(out), out, n)
		}
		time.Sleep(time.Millisecond)
	}
	if len(out) > n {
		g.t.Fatalf("received %v, want %d packets", out, n)
	}
	return out
}

// quiet checks that nothing arrives for a while.
func (g *fakeGuest) quiet(d time.Duration) {
	g.t.Helper()
	time.Sleep(d)
	if ps := g.poll(); len(ps) > 0 {
		g.t.Fatalf("unexpected packets %v", ps)
	}
}

// expect checks a received packet's operation and ports.
func expect(t *testing.T, p packet, op uint16, hostPort, guestPort uint32) {
	t.Helper()
	if p.h.op != op || p.h.srcCID != HostCID || p.h.dstCID != testCID || p.h.srcPort != hostPort ||
		p.h.dstPort != guestPort || p.h.typ != typeStream {
		t.Fatalf("got %v, want op %d %d:%d->%d:%d", p, op, HostCID, hostPort, testCID, guestPort)
	}
}

// hostListen listens on the socket guest connects to port go to.
func (g *fakeGuest) hostListen(port uint32) *net.UnixListener {
	g.t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("%s_%d", g.path, port), Net: "unix"})
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { ln.Close() })
	return ln
}

// guestConnect opens a connection from the guest's port to the host's
// port, whose listener ln accepts it.
func (g *fakeGuest) guestConnect(ln *net.UnixListener, guestPort, hostPort uint32) *net.UnixConn {
	g.t.Helper()
	g.send(hdr(opRequest, guestPort, hostPort), nil)
	expect(g.t, g.recv(), opResponse, hostPort, guestPort)
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.AcceptUnix()
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads n bytes from c.
func readAll(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	for got := 0; got < n; {
		k, err := c.Read(b[got:])
		if err != nil {
			t.Fatalf("read %d of %d bytes: %v", got, n, err)
		}
		got += k
	}
	return b
}

// collect gathers the payload of RW packets until want bytes arrived,
// acknowledging each as a reader would.
func (g *fakeGuest) collect(want int, guestPort uint32) []byte {
	g.t.Helper()
	var buf bytes.Buffer
	deadline := time.Now().Add(20 * time.Second)
	for buf.Len() < want {
		for _, p := range g.poll() {
			if p.h.op != opRW || p.h.dstPort != guestPort {
				g.t.Fatalf("got %v while collecting data", p)
			}
			buf.Write(p.payload)
			// A reader took it all: tell the host (a credit update).
			h := hdr(opCreditUpdate, guestPort, p.h.srcPort)
			h.fwdCnt = uint32(buf.Len())
			g.send(h, nil)
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("collected %d of %d bytes", buf.Len(), want)
		}
		time.Sleep(time.Millisecond)
	}
	return buf.Bytes()
}
