package usernet

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/vmm-dev/vmm/network"
)

// Raw frames, built the way a guest driver hands them over: a zeroed
// virtio-net header, then the Ethernet frame.

func arpRequestFrame(target netip.Addr) []byte {
	f := make([]byte, network.HeaderLen+header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(f[network.HeaderLen:]).Encode(&header.EthernetFields{
		SrcAddr: testGuestMAC, DstAddr: header.EthernetBroadcastAddress, Type: arp.ProtocolNumber,
	})
	a := header.ARP(f[network.HeaderLen+header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), testGuestMAC)
	src := netip.MustParseAddr("10.0.2.15").As4()
	copy(a.ProtocolAddressSender(), src[:])
	dst := target.As4()
	copy(a.ProtocolAddressTarget(), dst[:])
	return f
}

func udpFrame(srcMAC, dstMAC tcpip.LinkAddress, src, dst netip.AddrPort, payload []byte) []byte {
	udpLen := header.UDPMinimumSize + len(payload)
	ipLen := header.IPv4MinimumSize + udpLen
	f := make([]byte, network.HeaderLen+header.EthernetMinimumSize+ipLen)
	header.Ethernet(f[network.HeaderLen:]).Encode(&header.EthernetFields{SrcAddr: srcMAC, DstAddr: dstMAC, Type: ipv4.ProtocolNumber})
	ip := header.IPv4(f[network.HeaderLen+header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(ipLen), TTL: 64, Protocol: uint8(udp.ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(ip[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(udpLen)})
	copy(u.Payload(), payload) // checksum 0: none, valid for IPv4
	return f
}

// dhcpClientMsg builds a client message with the given options (already
// encoded as code, length, data).
func dhcpClientMsg(typ byte, xid uint32, mac []byte, ciaddr netip.Addr, opts ...byte) []byte {
	m := make([]byte, dhcpMinLen)
	m[0], m[1], m[2] = bootRequest, htypeEther, 6
	binary.BigEndian.PutUint32(m[4:], xid)
	if ciaddr.IsValid() {
		c := ciaddr.As4()
		copy(m[12:16], c[:])
	}
	copy(m[28:], mac)
	copy(m[dhcpFixedLen:], dhcpMagic[:])
	m = append(m, optMsgType, 1, typ)
	m = append(m, opts...)
	return append(m, optEnd)
}

func ipOpt(code byte, a netip.Addr) []byte {
	b := a.As4()
	return append([]byte{code, 4}, b[:]...)
}

// dhcpReply is a decoded server message, for checks.
type dhcpReply struct {
	ipDst  netip.Addr
	xid    uint32
	yiaddr netip.Addr
	opts   map[byte][]byte
}

func decodeDHCPReply(t *testing.T, ipDst netip.Addr, b []byte) dhcpReply {
	t.Helper()
	if len(b) < bootpMinLen || b[0] != bootReply {
		t.Fatalf("reply of %d bytes, op %d", len(b), b[0])
	}
	r := dhcpReply{ipDst: ipDst, xid: binary.BigEndian.Uint32(b[4:]), yiaddr: netip.AddrFrom4([4]byte(b[16:20])), opts: map[byte][]byte{}}
	o := b[dhcpMinLen:]
	for i := 0; i < len(o) && o[i] != optEnd; {
		if o[i] == optPad {
			i++
			continue
		}
		n := int(o[i+1])
		r.opts[o[i]] = o[i+2 : i+2+n]
		i += 2 + n
	}
	return r
}

// readFrame reads one frame from b, failing the test after 5 s.
func readFrame(t *testing.T, b *Backend) []byte {
	t.Helper()
	type res struct {
		f   []byte
		err error
	}
	c := make(chan res, 1)
	go func() {
		buf := make([]byte, 2048)
		n, err := b.ReadFrame(buf)
		c <- res{buf[:n], err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("ReadFrame: %v", r.err)
		}
		return r.f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame from the backend within 5 s")
		return nil
	}
}

// readDHCPReply reads frames until a UDP datagram to port 68 arrives.
func readDHCPReply(t *testing.T, b *Backend) dhcpReply {
	t.Helper()
	for {
		f := readFrame(t, b)[network.HeaderLen:]
		eth := header.Ethernet(f)
		if eth.Type() != ipv4.ProtocolNumber {
			continue
		}
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		if !ip.IsValid(len(ip)) || ip.TransportProtocol() != udp.ProtocolNumber {
			continue
		}
		u := header.UDP(ip.Payload())
		if u.DestinationPort() != dhcpClientPort || u.SourcePort() != dhcpServerPort {
			continue
		}
		return decodeDHCPReply(t, netip.AddrFrom4(ip.DestinationAddress().As4()), u.Payload())
	}
}
