package vsock

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{GuestCID: 2, Path: "/tmp/x"}, "guest CID 2"},
		{Config{GuestCID: 1 << 32, Path: "/tmp/x"}, "guest CID"},
		{Config{GuestCID: 0xffffffff, Path: "/tmp/x"}, "guest CID"},
		{Config{GuestCID: 3}, "no socket path"},
		{Config{GuestCID: 3, Path: "/" + strings.Repeat("a", 100)}, "too long"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
	if err := (Config{GuestCID: 3, Path: "/tmp/v.sock"}).Validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
}

func TestConfigSpaceIsTheCID(t *testing.T) {
	d, err := New(Config{GuestCID: 0x12345678, Path: filepath.Join(t.TempDir(), "s")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b := make([]byte, 8)
	d.ReadConfig(0, b)
	if v := binary.LittleEndian.Uint64(b); v != 0x12345678 {
		t.Fatalf("config reads %#x", v)
	}
	b4 := make([]byte, 4)
	d.ReadConfig(4, b4)
	if !bytes.Equal(b4, make([]byte, 4)) {
		t.Fatalf("high half %x", b4)
	}
	d.ReadConfig(8, b4)
	if !bytes.Equal(b4, make([]byte, 4)) {
		t.Fatalf("beyond the config %x", b4)
	}
	if d.DeviceID() != 19 || len(d.QueueMaxSizes()) != 3 {
		t.Fatalf("id %d, %d queues", d.DeviceID(), len(d.QueueMaxSizes()))
	}
}

func TestNewReplacesStaleSocket(t *testing.T) {
	// hostsock's tests cover the cases; this one checks the device uses it.
	path := filepath.Join(t.TempDir(), "v.sock")
	d, err := New(Config{GuestCID: 3, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d, err = New(Config{GuestCID: 3, Path: path}); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	defer d.Close()
	if _, err := New(Config{GuestCID: 3, Path: path}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("live socket: %v", err)
	}
}

func TestGuestConnectAndExchange(t *testing.T) {
	g := newFakeGuest(t)
	ln := g.hostListen(5000)
	c := g.guestConnect(ln, 1025, 5000)

	g.send(hdr(opRW, 1025, 5000), []byte("hello from the guest"))
	if got := readAll(t, c, 20); string(got) != "hello from the guest" {
		t.Fatalf("host read %q", got)
	}
	if _, err := c.Write([]byte("hello from the host")); err != nil {
		t.Fatal(err)
	}
	p := g.recv()
	expect(t, p, opRW, 5000, 1025)
	if string(p.payload) != "hello from the host" || p.h.bufAlloc != connBuf || p.h.fwdCnt != 20 {
		t.Fatalf("got %v %q", p, p.payload)
	}

	// The host program half-closes: the guest reads end of file.
	c.CloseWrite()
	expect(t, g.recv(), opShutdown, 5000, 1025)

	// The guest closes: the host reads end of file, the guest gets its reset.
	h := hdr(opShutdown, 1025, 5000)
	h.flags = shutRcv | shutSend
	g.send(h, nil)
	expect(t, g.recv(), opReset, 5000, 1025)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("host read %d, %v after the guest closed", n, err)
	}
	s := g.dev.Stats()
	if s.GuestConnects != 1 || s.TxBytes != 20 || s.RxBytes != 19 || s.BadPackets != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestGuestConnectRefused(t *testing.T) {
	g := newFakeGuest(t)
	g.send(hdr(opRequest, 1025, 5999), nil)
	expect(t, g.recv(), opReset, 5999, 1025)
	// Data for a connection that does not exist is answered with a reset;
	// a reset is not.
	g.send(hdr(opRW, 1026, 5999), []byte("x"))
	expect(t, g.recv(), opReset, 5999, 1026)
	g.send(hdr(opReset, 1027, 5999), nil)
	g.quiet(50 * time.Millisecond)
	if s := g.dev.Stats(); s.Refused != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// hostConnect connects a host program to the device and asks for the
// guest's port.
func (g *fakeGuest) hostConnect(port uint32) net.Conn {
	g.t.Helper()
	c, err := net.Dial("unix", g.path)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %d\n", port)
	return c
}

func TestHostConnect(t *testing.T) {
	g := newFakeGuest(t)
	c := g.hostConnect(1234)
	req := g.recv()
	if req.h.op != opRequest || req.h.dstPort != 1234 || req.h.srcPort < ephemeralBase {
		t.Fatalf("got %v, want a request to port 1234", req)
	}
	local := req.h.srcPort
	g.send(hdr(opResponse, 1234, local), nil)
	line := readAll(t, c, len(fmt.Sprintf("OK %d\n", local)))
	if string(line) != fmt.Sprintf("OK %d\n", local) {
		t.Fatalf("host program read %q", line)
	}
	fmt.Fprint(c, "ping")
	p := g.recv()
	expect(t, p, opRW, local, 1234)
	if string(p.payload) != "ping" {
		t.Fatalf("guest read %q", p.payload)
	}
	g.send(hdr(opRW, 1234, local), []byte("pong"))
	if got := readAll(t, c, 4); string(got) != "pong" {
		t.Fatalf("host read %q", got)
	}
	// The guest resets: the host program's connection ends.
	g.send(hdr(opReset, 1234, local), nil)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the guest's reset: %v", err)
	}
	if s := g.dev.Stats(); s.HostConnects != 1 || s.Resets != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHostConnectGuestRefuses(t *testing.T) {
	g := newFakeGuest(t)
	c := g.hostConnect(1234)
	req := g.recv()
	g.send(hdr(opReset, 1234, req.h.srcPort), nil)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 16)); err != io.EOF {
		t.Fatalf("host program read %d, %v; want end of file", n, err)
	}
}

func TestHostConnectBadLines(t *testing.T) {
	for _, line := range []string{"CONNECT\n", "CONNECT x\n", "connect 5\n", "CONNECT 4294967296\n", strings.Repeat("C", 40)} {
		g := newFakeGuest(t)
		c, err := net.Dial("unix", g.path)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, line)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		// Unread bytes make the close a reset.
		if n, err := c.Read(make([]byte, 16)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("line %q: host program read %d, %v; want end of file", line, n, err)
		}
		c.Close()
		g.quiet(20 * time.Millisecond)
	}
}

func TestHostConnectTimesOut(t *testing.T) {
	g := newFakeGuest(t, func(d *Device) { d.connectTimeout = 100 * time.Millisecond })
	// The host program never finishes its line.
	silent, err := net.Dial("unix", g.path)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// The guest never answers the request.
	c := g.hostConnect(1234)
	req := g.recv()
	for _, conn := range []net.Conn{silent, c} {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after the timeout: %v", err)
		}
	}
	expect(t, g.recv(), opReset, req.h.srcPort, 1234)
}

func TestHostToGuestRespectsCredit(t *testing.T) {
	g := newFakeGuest(t)
	ln := g.hostListen(5000)
	h := hdr(opRequest, 1025, 5000)
	h.bufAlloc = 16 << 10
	g.send(h, nil)
	expect(t, g.recv(), opResponse, 5000, 1025)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 1<<20)
	rand.Read(data)
	go c.Write(data)
	// Without a credit update the device sends exactly the guest's buffer.
	var got []byte
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 16<<10 && time.Now().Before(deadline) {
		for _, p := range g.poll() {
			got = append(got, p.payload...)
		}
	}
	g.quiet(50 * time.Millisecond)
	if len(got) != 16<<10 {
		t.Fatalf("got %d bytes before any credit update, want %d", len(got), 16<<10)
	}
	// A reader that keeps acknowledging gets everything.
	u := hdr(opCreditUpdate, 1025, 5000)
	u.bufAlloc, u.fwdCnt = 16<<10, 16<<10
	g.send(u, nil)
	var rest []byte
	for len(got)+len(rest) < len(data) && time.Now().Before(deadline.Add(10*time.Second)) {
		for _, p := range g.poll() {
			rest = append(rest, p.payload...)
			u.fwdCnt = uint32(len(got) + len(rest))
			g.send(u, nil)
		}
	}
	if !bytes.Equal(append(got, rest...), data) {
		t.Fatalf("guest got %d bytes, not the %d sent", len(got)+len(rest), len(data))
	}
}

func TestGuestToHostBulkAndCredit(t *testing.T) {
	g := newFakeGuest(t)
	ln := g.hostListen(5000)
	c := g.guestConnect(ln, 1025, 5000)
	data := make([]byte, 4<<20)
	rand.Read(data)
	read := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(c)
		read <- b
	}()
	// An honest driver: never more in flight than the credit allows.
	var sent, fwd uint32
	bufAlloc := uint32(connBuf)
	deadline := time.Now().Add(20 * time.Second)
	for int(sent) < len(data) {
		for _, p := range g.poll() {
			if p.h.op != opCreditUpdate {
				t.Fatalf("got %v", p)
			}
			fwd, bufAlloc = p.h.fwdCnt, p.h.bufAlloc
		}
		room := bufAlloc - (sent - fwd)
		n := min(uint32(len(data))-sent, room, 4096)
		if n == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no credit after %d bytes", sent)
			}
			time.Sleep(time.Millisecond)
			continue
		}
		g.send(hdr(opRW, 1025, 5000), data[sent:sent+n])
		sent += n
	}
	h := hdr(opShutdown, 1025, 5000)
	h.flags = shutSend | shutRcv
	g.send(h, nil)
	select {
	case b := <-read:
		if !bytes.Equal(b, data) {
			t.Fatalf("host read %d bytes, not the %d sent", len(b), len(data))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("host read did not end")
	}
	// Credit updates may still be queued before the reset.
	for reset := false; !reset; {
		for _, p := range g.poll() {
			switch {
			case p.h.op == opReset:
				reset = true
			case p.h.op != opCreditUpdate:
				t.Fatalf("got %v", p)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no reset after the guest closed")
		}
		time.Sleep(time.Millisecond)
	}
	if s := g.dev.Stats(); s.CreditOverruns != 0 || s.TxBytes != uint64(len(data)) {
		t.Fatalf("stats %+v", s)
	}
}

func TestGuestOverrunsCredit(t *testing.T) {
	g := newFakeGuest(t)
	ln := g.hostListen(5000)
	c := g.guestConnect(ln, 1025, 5000)
	_ = c // never read: the socket fills, then the device's buffer
	chunk := make([]byte, 4096)
	var reset bool
	for i := 0; i < 2048 && !reset; i++ {
		g.send(hdr(opRW, 1025, 5000), chunk)
		for _, p := range g.poll() {
			if p.h.op == opReset {
				reset = true
			}
		}
	}
	if !reset {
		t.Fatal("8 MiB beyond the credit and no reset")
	}
	if s := g.dev.Stats(); s.CreditOverruns != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMalformedPacketsAreDropped(t *testing.T) {
	g := newFakeGuest(t)
	wrongSrc := hdr(opRequest, 1025, 5000)
	wrongSrc.srcCID = 8
	wrongDst := hdr(opRequest, 1025, 5000)
	wrongDst.dstCID = 3
	for _, h := range []header{wrongSrc, wrongDst} {
		g.send(h, nil)
	}
	// A length beyond the chain.
	lie := hdr(opRW, 1025, 5000)
	lie.len = 100
	var b [hdrLen]byte
	lie.encode(b[:])
	// addRaw adds a chain of one buffer, in flight on the slot it takes.
	addRaw := func(addr uint64, n uint32) {
		slot := g.txFree[len(g.txFree)-1]
		g.txFree = g.txFree[:len(g.txFree)-1]
		if addr == 0 {
			addr = slot
		}
		head, err := g.tx.AddChain([]queuetest.Buf{{Addr: addr, Len: n}})
		if err != nil {
			t.Fatal(err)
		}
		g.txAddr[head] = slot
	}
	g.mem.WriteAt(b[:], g.txFree[len(g.txFree)-1])
	addRaw(0, hdrLen)
	// A chain shorter than a header, and one outside guest memory.
	addRaw(0, 10)
	addRaw(64<<20, hdrLen)
	g.txKick.Signal()
	g.quiet(100 * time.Millisecond)
	if s := g.dev.Stats(); s.BadPackets < 4 {
		t.Fatalf("stats %+v", s)
	}
	// An unknown type or operation is answered with a reset.
	dgram := hdr(opRequest, 1025, 5000)
	dgram.typ = 2
	g.send(dgram, nil)
	expect(t, g.recv(), opReset, 5000, 1025)
	// The device still works.
	ln := g.hostListen(5000)
	g.guestConnect(ln, 1026, 5000)
}

func TestHeaderOnlyReceiveBuffers(t *testing.T) {
	g := newFakeGuestPosting(t, 0)
	ln := g.hostListen(5000)
	// postSmall offers a buffer with room for a header only and returns
	// the used length the device gives it.
	postSmall := func() uint32 {
		t.Helper()
		a, err := g.rx.Alloc(hdrLen)
		if err != nil {
			t.Fatal(err)
		}
		head, err := g.rx.AddChain([]queuetest.Buf{{Addr: a, Len: hdrLen, Write: true}})
		if err != nil {
			t.Fatal(err)
		}
		g.rxKick.Signal()
		deadline := time.Now().Add(10 * time.Second)
		for {
			u, err := g.rx.Used()
			if err != nil {
				t.Fatal(err)
			}
			if len(u) == 1 && u[0].ID == uint32(head) {
				return u[0].Len
			}
			if len(u) != 0 || time.Now().After(deadline) {
				t.Fatalf("used %v, want head %d", u, head)
			}
			time.Sleep(time.Millisecond)
		}
	}
	g.send(hdr(opRequest, 1025, 5000), nil)
	if n := postSmall(); n != hdrLen { // the response fits
		t.Fatalf("response: used length %d", n)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the data is in the device's socket
	if n := postSmall(); n != 0 {     // no data fits: back empty
		t.Fatalf("header-only buffer with data waiting: used length %d, want 0", n)
	}
	big, err := g.rx.Alloc(hdrLen + rxBufSize)
	if err != nil {
		t.Fatal(err)
	}
	g.postRx(big)
	g.rxKick.Signal()
	p := g.recv()
	expect(t, p, opRW, 5000, 1025)
	if string(p.payload) != "data" {
		t.Fatalf("got %v %q", p, p.payload)
	}
}

func TestResetClosesConnections(t *testing.T) {
	g := newFakeGuest(t)
	ln := g.hostListen(5000)
	c := g.guestConnect(ln, 1025, 5000)
	g.dev.Reset()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after reset: %v", err)
	}
	// The listening socket survives a reset.
	hc, err := net.Dial("unix", g.path)
	if err != nil {
		t.Fatal(err)
	}
	hc.Close()
}
