package usernet

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/vmm-dev/vmm/network"
)

// testData returns n pseudo-random bytes.
func testData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// hostServer accepts connections on a host loopback port and runs serve on
// each (which need not close it).
func hostServer(t *testing.T, serve func(net.Conn)) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return netip.MustParseAddrPort(l.Addr().String())
}

// hostSink reads each connection to EOF and answers with the SHA-256 of
// what it read.
func hostSink(t *testing.T) netip.AddrPort {
	return hostServer(t, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err == nil {
			c.Write(h.Sum(nil))
		}
	})
}

// hostSource sends data on each connection, then closes it.
func hostSource(t *testing.T, data []byte) netip.AddrPort {
	return hostServer(t, func(c net.Conn) { c.Write(data) })
}

// guestDial connects from the guest stack to port of the gateway.
func guestDial(t *testing.T, g *testGuest, port uint16) *gonet.TCPConn {
	t.Helper()
	c, err := gonet.DialTCP(g.s, fullAddr(netip.AddrPortFrom(testGW, port)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("guest dial: %v", err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// transfer moves data host->guest and guest->host through the backend and
// through a host forward (where netstack makes the connection to the
// guest), checking every byte.
func transfer(t *testing.T, b *Backend, g *testGuest, data []byte) {
	t.Helper()
	// Guest downloads from the host.
	c := guestDial(t, g, hostSource(t, data).Port())
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("host->guest: %d of %d bytes, equal %v, %v", len(got), len(data), bytes.Equal(got, data), err)
	}
	// Guest uploads to the host.
	c = guestDial(t, g, hostSink(t).Port())
	if _, err := c.Write(data); err != nil {
		t.Fatalf("guest->host write: %v", err)
	}
	c.CloseWrite()
	sum, err := io.ReadAll(c)
	c.Close()
	if want := sha256.Sum256(data); err != nil || !bytes.Equal(sum, want[:]) {
		t.Fatalf("guest->host: host read a different stream (%v)", err)
	}
	// The host downloads from the guest through the forward.
	l, err := gonet.ListenTCP(g.s, tcpip.FullAddress{NIC: guestNIC, Addr: tcpip.AddrFrom4(testGuestIP.As4()), Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write(data)
		c.Close()
	}()
	hc, err := net.DialTimeout("tcp", b.HostForwardAddrs()[0].String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hc.SetDeadline(time.Now().Add(30 * time.Second))
	got, err = io.ReadAll(hc)
	hc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("guest->host via forward: %d of %d bytes, %v", len(got), len(data), err)
	}
}

func TestTCPOffloads(t *testing.T) {
	data := testData(4<<20, 1)
	for _, tc := range []struct {
		name     string
		features uint64
	}{
		{"none", 0},
		{"checksum only", network.FCsum | network.FGuestCsum},
		{"all", offloads},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBackend(t, Config{HostForwards: []Forward{{Proto: "tcp", HostAddr: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 80}}})
			g := newOffloadGuest(t, b, testGuestIP, testGW, tc.features)
			transfer(t, b, g, data)
			st := b.Stats()
			if g.dropped.Load() != 0 || st.TxMalformed != 0 || st.RxSegmented != 0 {
				t.Errorf("guest dropped %d frames; backend stats %+v", g.dropped.Load(), st)
			}
			tso := tc.features == offloads
			if (st.RxGSO > 0) != tso || (g.receivedGSO.Load() > 0) != tso || (g.sentGSO.Load() > 0) != tso {
				t.Errorf("GSO frames to the guest %d (guest saw %d), from the guest %d; want some: %v",
					st.RxGSO, g.receivedGSO.Load(), g.sentGSO.Load(), tso)
			}
			t.Logf("stats %+v, guest sent %d GSO frames", st, g.sentGSO.Load())
		})
	}
}

// A guest that withdraws TSO while a connection made with it is open (a
// driver reset) gets that connection's large segments cut up.
func TestTSOWithdrawn(t *testing.T) {
	data := testData(8<<20, 2)
	b := newTestBackend(t, Config{})
	g := newOffloadGuest(t, b, testGuestIP, testGW, offloads)
	c := guestDial(t, g, hostSource(t, data).Port())
	defer c.Close()
	got := make([]byte, 1<<20)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	g.setOffloads(t, b, 0)
	rest, err := io.ReadAll(c)
	got = append(got, rest...)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d of %d bytes, equal %v, %v", len(got), len(data), bytes.Equal(got, data), err)
	}
	if st := b.Stats(); st.RxSegmented == 0 {
		t.Errorf("no segment was cut up: %+v", st)
	}
}

// tcpSuperFrame builds an Ethernet/IPv4/TCP frame with payloadLen bytes and
// the TCP checksum left partial, as netstack hands it with host GSO.
func tcpSuperFrame(payloadLen int, flags header.TCPFlags) []byte {
	opts := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps
	l4 := header.TCPMinimumSize + len(opts)
	f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+l4+payloadLen)
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: "\x52\x55\x0a\x00\x02\x02", DstAddr: testGuestMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(ip)), ID: 100, TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 0, 2, 2}), DstAddr: tcpip.AddrFrom4([4]byte{10, 0, 2, 15}),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: 80, DstPort: 40000, SeqNum: 0xfffff000, AckNum: 7, DataOffset: uint8(l4), Flags: flags, WindowSize: 512})
	copy(tcp[header.TCPMinimumSize:], opts)
	for i := range payloadLen {
		tcp[l4+i] = byte(i * 7)
	}
	return f
}

func TestSegmentTCPv4(t *testing.T) {
	for _, tc := range []struct {
		payload, mss int
		segments     int
	}{
		{0, 1448, 1},
		{1000, 1448, 1},
		{1448, 1448, 1},
		{1449, 1448, 2},
		{60000, 1448, 42},
		{3000, 0, 1}, // no MSS: one segment
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.payload, tc.mss), func(t *testing.T) {
			in := tcpSuperFrame(tc.payload, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin|header.TCPFlagCwr)
			segs, err := segmentTCPv4(in, tc.mss)
			if err != nil {
				t.Fatal(err)
			}
			if len(segs) != tc.segments {
				t.Fatalf("%d segments, want %d", len(segs), tc.segments)
			}
			inTCP := header.TCP(in[header.EthernetMinimumSize+header.IPv4MinimumSize:])
			var payload []byte
			for i, s := range segs {
				if !bytes.Equal(s[:network.HeaderLen], make([]byte, network.HeaderLen)) {
					t.Errorf("segment %d: header % x, want zeros", i, s[:network.HeaderLen])
				}
				f := s[network.HeaderLen:]
				ip := header.IPv4(f[header.EthernetMinimumSize:])
				if !ip.IsChecksumValid() || int(ip.TotalLength()) != len(ip) || ip.ID() != 100+uint16(i) {
					t.Errorf("segment %d: IPv4 checksum valid %v, length %d of %d, ID %d", i, ip.IsChecksumValid(), ip.TotalLength(), len(ip), ip.ID())
				}
				tcp := header.TCP(ip.Payload())
				data := tcp.Payload()
				if tc.mss > 0 && len(data) > tc.mss {
					t.Errorf("segment %d: %d bytes, MSS %d", i, len(data), tc.mss)
				}
				xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcp)))
				if tcp.CalculateChecksum(checksum.Checksum(data, xsum)) != 0xffff {
					t.Errorf("segment %d: bad TCP checksum", i)
				}
				if want := inTCP.SequenceNumber() + uint32(len(payload)); tcp.SequenceNumber() != want {
					t.Errorf("segment %d: seq %#x, want %#x", i, tcp.SequenceNumber(), want)
				}
				last := i == len(segs)-1
				fl := tcp.Flags()
				if fl.Contains(header.TCPFlagFin) != last || fl.Contains(header.TCPFlagPsh) != last || fl.Contains(header.TCPFlagCwr) != (i == 0) || !fl.Contains(header.TCPFlagAck) {
					t.Errorf("segment %d of %d: flags %s", i, len(segs), fl)
				}
				if !bytes.Equal(tcp.Options(), inTCP.Options()) {
					t.Errorf("segment %d: options % x", i, tcp.Options())
				}
				payload = append(payload, data...)
			}
			if !bytes.Equal(payload, inTCP.Payload()) {
				t.Errorf("payload not preserved")
			}
		})
	}
}

func TestSegmentTCPv4Rejects(t *testing.T) {
	good := tcpSuperFrame(3000, header.TCPFlagAck)
	for name, mutate := range map[string]func([]byte) []byte{
		"short":        func(f []byte) []byte { return f[:20] },
		"not IPv4":     func(f []byte) []byte { f[12] = 0x86; f[13] = 0xdd; return f },
		"UDP":          func(f []byte) []byte { f[14+9] = 17; return f },
		"IHL 4":        func(f []byte) []byte { f[14] = 0x44; return f },
		"total length": func(f []byte) []byte { f[14+2]++; return f },
		"truncated":    func(f []byte) []byte { return f[:len(f)-1] },
		"data offset":  func(f []byte) []byte { f[14+20+12] = 0xf0; return f[:14+20+40] },
	} {
		f := mutate(append([]byte(nil), good...))
		if _, err := segmentTCPv4(f, 1448); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzSegmentTCPv4(f *testing.F) {
	f.Add(tcpSuperFrame(3000, header.TCPFlagAck), 1448)
	f.Add(tcpSuperFrame(0, header.TCPFlagSyn), 0)
	f.Fuzz(func(t *testing.T, frame []byte, mss int) {
		segs, err := segmentTCPv4(frame, mss%70000)
		if err != nil {
			return
		}
		for _, s := range segs {
			if len(s) > network.HeaderLen+len(frame) {
				t.Fatalf("segment of %d bytes from a %d-byte frame", len(s), len(frame))
			}
		}
	})
}
