package usernet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/vmm-dev/vmm/network"
)

func TestARPAndMalformedFrames(t *testing.T) {
	b := newTestBackend(t, Config{})
	hdr := make([]byte, network.HeaderLen)
	withHeader := func(h network.Header) []byte {
		f := append([]byte(nil), arpRequestFrame(testGW)...)
		_ = h.Encode(f)
		return f
	}
	bad := [][][]byte{
		nil,
		{{}},
		{{1, 2, 3}},
		{hdr},
		{hdr, make([]byte, 13)},
		{hdr, make([]byte, 14+4+1500+1)},   // longer than the MTU without GSO
		{hdr, make([]byte, maxGSOFrame+1)}, // longer than any frame
		{withHeader(network.Header{GSOType: network.GSOTCPv4, GSOSize: 1448})},         // GSO without NEEDS_CSUM
		{withHeader(network.Header{Flags: 1, GSOType: network.GSOTCPv4})},              // gso_size 0
		{withHeader(network.Header{Flags: 1, GSOType: network.GSOUDP, GSOSize: 1000})}, // not offered
		{withHeader(network.Header{Flags: 1, GSOType: network.GSOTCPv6, GSOSize: 1000})},
		{withHeader(network.Header{Flags: 1, GSOType: network.GSOTCPv4 | network.GSOECN, GSOSize: 1000})},
		{withHeader(network.Header{Flags: 8})}, // unknown flag
	}
	for _, bufs := range bad {
		if err := b.WriteFrame(bufs); err != nil {
			t.Fatalf("WriteFrame of a malformed frame: %v", err)
		}
	}
	if st := b.Stats(); st.TxMalformed != uint64(len(bad)) || st.TxFrames != 0 {
		t.Fatalf("stats after malformed frames: %+v", st)
	}
	// Garbage behind a good Ethernet header goes to netstack, which drops it.
	junk := arpRequestFrame(testGW)
	for i := network.HeaderLen + header.EthernetMinimumSize; i < len(junk); i++ {
		junk[i] = 0xff
	}
	b.WriteFrame([][]byte{junk})

	// The frame may arrive in pieces; the ARP request for the gateway is
	// answered with the gateway's MAC.
	f := arpRequestFrame(testGW)
	if err := b.WriteFrame([][]byte{f[:5], f[5:20], {}, f[20:]}); err != nil {
		t.Fatal(err)
	}
	reply := readFrame(t, b)
	if !bytes.Equal(reply[:network.HeaderLen], hdr) {
		t.Errorf("header % x, want zeros", reply[:network.HeaderLen])
	}
	eth := header.Ethernet(reply[network.HeaderLen:])
	if eth.Type() != arp.ProtocolNumber || eth.DestinationAddress() != testGuestMAC {
		t.Fatalf("reply is not ARP to the guest: % x", reply)
	}
	a := header.ARP(eth[header.EthernetMinimumSize:])
	if !a.IsValid() || a.Op() != header.ARPReply || !bytes.Equal(a.HardwareAddressSender(), b.GatewayMAC()) {
		t.Fatalf("bad ARP reply % x", a)
	}
	if want := (net.HardwareAddr{0x52, 0x55, 10, 0, 2, 2}); !bytes.Equal(b.GatewayMAC(), want) {
		t.Errorf("gateway MAC %s, want %s", b.GatewayMAC(), want)
	}
}

func TestReadFrameDropsLongFrames(t *testing.T) {
	b := newTestBackend(t, Config{})
	b.link.rx <- make([]byte, 100)
	b.link.rx <- append(make([]byte, network.HeaderLen), "short frame"...)
	buf := make([]byte, 50)
	n, err := b.ReadFrame(buf)
	if err != nil || string(buf[network.HeaderLen:n]) != "short frame" {
		t.Fatalf("ReadFrame = %q, %v", buf[:n], err)
	}
	if st := b.Stats(); st.RxDropped != 1 {
		t.Errorf("RxDropped = %d, want 1", st.RxDropped)
	}
}

func TestTryReadFrameAndWake(t *testing.T) {
	b := newTestBackend(t, Config{})
	buf := make([]byte, 64)
	if n, err := b.TryReadFrame(buf); n != 0 || err != nil {
		t.Fatalf("TryReadFrame of an empty queue = %d, %v", n, err)
	}
	b.link.rx <- append(make([]byte, network.HeaderLen), "queued"...)
	if n, err := b.TryReadFrame(buf); err != nil || string(buf[network.HeaderLen:n]) != "queued" {
		t.Fatalf("TryReadFrame = %q, %v", buf[:n], err)
	}
	// Wake-ups do not accumulate: two Wakes fail one read.
	b.Wake()
	b.Wake()
	if _, err := b.TryReadFrame(buf); !errors.Is(err, network.ErrWoken) {
		t.Fatalf("TryReadFrame after Wake: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.ReadFrame(buf)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("ReadFrame returned %v with nothing queued", err)
	case <-time.After(50 * time.Millisecond):
	}
	b.Wake()
	select {
	case err := <-done:
		if !errors.Is(err, network.ErrWoken) {
			t.Fatalf("ReadFrame after Wake: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wake did not end ReadFrame")
	}
	b.Close()
	if _, err := b.TryReadFrame(buf); !errors.Is(err, network.ErrClosed) {
		t.Errorf("TryReadFrame after Close: %v", err)
	}
}

func TestQueueFullDrops(t *testing.T) {
	b := newTestBackend(t, Config{})
	// Nobody reads: ARP replies pile up, then are dropped, and WriteFrame
	// never blocks.
	f := arpRequestFrame(testGW)
	for range rxQueueLen + 10 {
		if err := b.WriteFrame([][]byte{f}); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.RxFrames != rxQueueLen || st.RxDropped != 10 {
		t.Fatalf("stats %+v, want %d queued and 10 dropped", st, rxQueueLen)
	}
}

func TestPingGateway(t *testing.T) {
	b := newTestBackend(t, Config{})
	g := newTestGuest(t, b, testGuestIP, testGW)
	ping := func(dst netip.Addr) error {
		var wq waiter.Queue
		ep, terr := g.s.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
		if terr != nil {
			return errors.New(terr.String())
		}
		c := gonet.NewTCPConn(&wq, ep) // only for its blocking Read/Write
		defer c.Close()
		if terr := ep.Connect(tcpip.FullAddress{NIC: guestNIC, Addr: tcpip.AddrFrom4(dst.As4())}); terr != nil {
			return errors.New(terr.String())
		}
		req := make([]byte, header.ICMPv4MinimumSize+4)
		req[0] = byte(header.ICMPv4Echo)
		copy(req[header.ICMPv4MinimumSize:], "ping")
		if _, err := c.Write(req); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if n < len(req) || buf[0] != byte(header.ICMPv4EchoReply) || string(buf[header.ICMPv4MinimumSize:n]) != "ping" {
			return errors.New("bad echo reply")
		}
		return nil
	}
	if err := ping(testGW); err != nil {
		t.Fatalf("ping gateway: %v", err)
	}
	// Outside addresses are not answered (no ICMP NAT).
	if err := ping(netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Fatal("ping to an outside address was answered")
	}
}

// TestCloseWithActiveConnections opens a NATed TCP connection, a forwarded
// TCP connection and a UDP flow, closes the backend, and checks that the
// host sides see the end, that the API reports ErrClosed, and that no
// goroutine is left.
func TestCloseWithActiveConnections(t *testing.T) {
	before := runtime.NumGoroutine()

	// Host server holding connections open; reports their end.
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	hostEnded := make(chan error, 1)
	go func() {
		c, err := hl.Accept()
		if err != nil {
			hostEnded <- err
			return
		}
		defer c.Close()
		c.Write([]byte("hello"))
		_, err = io.Copy(io.Discard, c)
		hostEnded <- err
	}()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go udpEcho(pc)

	b, err := New(Config{HostForwards: []Forward{{Proto: "tcp", HostAddr: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 22}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	g := newTestGuest(t, b, testGuestIP, testGW)
	gl, err := gonet.ListenTCP(g.s, tcpip.FullAddress{NIC: guestNIC, Addr: tcpip.AddrFrom4(testGuestIP.As4()), Port: 22}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := gl.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("SSH-2.0-guest\r\n"))
		io.Copy(io.Discard, c)
		c.Close()
	}()

	// guest -> host
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gc, err := gonet.DialContextTCP(ctx, g.s, fullAddr(netip.AddrPortFrom(testGW, netip.MustParseAddrPort(hl.Addr().String()).Port())), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	buf := make([]byte, 64)
	if n, err := io.ReadFull(gc, buf[:5]); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("guest read %q, %v", buf[:n], err)
	}
	// host -> guest
	fc, err := net.Dial("tcp", b.HostForwardAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	fc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadFull(fc, buf[:15]); err != nil || !strings.HasPrefix(string(buf[:n]), "SSH-2.0") {
		t.Fatalf("host read %q, %v", buf[:n], err)
	}
	// UDP flow
	to := fullAddr(netip.AddrPortFrom(testGW, netip.MustParseAddrPort(pc.LocalAddr().String()).Port()))
	uc, err := gonet.DialUDP(g.s, nil, &to, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.Write([]byte("x"))
	uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := uc.Read(buf); err != nil {
		t.Fatal(err)
	}

	// A reader blocked in ReadFrame is woken by Close.
	blocked := make(chan error, 1)
	go func() {
		_, err := b.ReadFrame(make([]byte, 2048))
		blocked <- err
	}()

	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs")
	}
	if err := <-blocked; !errors.Is(err, network.ErrClosed) {
		t.Errorf("blocked ReadFrame: %v", err)
	}
	select {
	case <-hostEnded:
	case <-time.After(5 * time.Second):
		t.Fatal("host side of the NATed connection still open after Close")
	}
	if _, err := fc.Read(buf); err == nil {
		t.Error("forwarded host connection still open after Close")
	}
	if _, err := b.ReadFrame(buf); !errors.Is(err, network.ErrClosed) {
		t.Errorf("ReadFrame after Close: %v", err)
	}
	if err := b.WriteFrame([][]byte{arpRequestFrame(testGW)}); !errors.Is(err, network.ErrClosed) {
		t.Errorf("WriteFrame after Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	gc.Close()
	uc.Close()
	fc.Close()
	gl.Close()
	g.stop()
	hl.Close()
	pc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			var sb strings.Builder
			pprof.Lookup("goroutine").WriteTo(&sb, 1)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, sb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func FuzzWriteFrame(f *testing.F) {
	b, err := New(Config{UDPIdleTimeout: 50 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	// Never reach the real network from fuzz input.
	b.dial = func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("fuzz: no host dials")
	}
	gwMAC := tcpip.LinkAddress(b.GatewayMAC())
	f.Add(byte(0), arpRequestFrame(testGW))
	f.Add(byte(3), udpFrame(testGuestMAC, header.EthernetBroadcastAddress,
		netip.MustParseAddrPort("0.0.0.0:68"), netip.MustParseAddrPort("255.255.255.255:67"),
		dhcpClientMsg(dhcpDiscover, 7, []byte(testGuestMAC), netip.Addr{})))
	f.Add(byte(20), udpFrame(testGuestMAC, gwMAC,
		netip.MustParseAddrPort("10.0.2.15:5000"), netip.MustParseAddrPort("192.0.2.1:53"), []byte("query")))
	f.Add(byte(30), udpFrame(testGuestMAC, gwMAC,
		netip.MustParseAddrPort("10.0.2.15:5001"), netip.MustParseAddrPort("10.0.2.2:9"), []byte("to host")))
	f.Add(byte(1), []byte{})
	f.Fuzz(func(t *testing.T, split byte, frame []byte) {
		s := min(int(split), len(frame))
		if err := b.WriteFrame([][]byte{frame[:s], frame[s:]}); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case <-b.link.rx:
				continue
			default:
			}
			break
		}
	})
}

// TestARPOnlyForGateway checks that the spoofing NIC does not claim other
// addresses: an RFC 5227 probe for the guest's own address must go
// unanswered, or the guest would decline its lease.
func TestARPOnlyForGateway(t *testing.T) {
	b := newTestBackend(t, Config{})
	probe := arpRequestFrame(testGuestIP)
	a := header.ARP(probe[network.HeaderLen+header.EthernetMinimumSize:])
	copy(a.ProtocolAddressSender(), []byte{0, 0, 0, 0})
	for _, f := range [][]byte{probe, arpRequestFrame(netip.MustParseAddr("10.0.2.3")), arpRequestFrame(netip.MustParseAddr("192.0.2.1")), arpRequestFrame(testGW)} {
		b.WriteFrame([][]byte{f})
	}
	// Frames are handled in order, so the first reply must be the gateway's.
	reply := readFrame(t, b)
	r := header.ARP(reply[network.HeaderLen+header.EthernetMinimumSize:])
	if got := netip.AddrFrom4([4]byte(r.ProtocolAddressSender())); r.Op() != header.ARPReply || got != testGW {
		t.Fatalf("first ARP reply is for %s, want only %s answered", got, testGW)
	}
	if n := len(b.link.rx); n != 0 {
		t.Fatalf("%d more frames queued", n)
	}
}
