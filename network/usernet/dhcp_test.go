package usernet

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestDHCPLease runs DISCOVER/OFFER/REQUEST/ACK as raw frames against the
// backend, the way a fresh guest (udhcpc) does, from 0.0.0.0 to broadcast.
func TestDHCPLease(t *testing.T) {
	dns := netip.MustParseAddr("192.0.2.53")
	b := newTestBackend(t, Config{DNS: []netip.Addr{dns}, GuestMAC: net.HardwareAddr(testGuestMAC)})
	from := netip.AddrPortFrom(netip.IPv4Unspecified(), dhcpClientPort)
	to := netip.AddrPortFrom(netip.MustParseAddr("255.255.255.255"), dhcpServerPort)
	send := func(msg []byte) {
		f := udpFrame(testGuestMAC, header.EthernetBroadcastAddress, from, to, msg)
		if err := b.WriteFrame([][]byte{f}); err != nil {
			t.Fatal(err)
		}
	}

	send(dhcpClientMsg(dhcpDiscover, 0x1234, []byte(testGuestMAC), netip.Addr{}))
	offer := readDHCPReply(t, b)
	if offer.xid != 0x1234 || offer.opts[optMsgType][0] != dhcpOffer || offer.yiaddr != testGuestIP {
		t.Fatalf("offer: %+v", offer)
	}
	if offer.ipDst != netip.MustParseAddr("255.255.255.255") {
		t.Errorf("offer sent to %s, want broadcast", offer.ipDst)
	}
	server := netip.AddrFrom4([4]byte(offer.opts[optServerID]))
	if server != testGW {
		t.Fatalf("server identifier %s", server)
	}

	send(dhcpClientMsg(dhcpRequest, 0x1235, []byte(testGuestMAC), netip.Addr{},
		append(ipOpt(optRequestedIP, offer.yiaddr), ipOpt(optServerID, server)...)...))
	ack := readDHCPReply(t, b)
	if ack.xid != 0x1235 || ack.opts[optMsgType][0] != dhcpAck || ack.yiaddr != testGuestIP {
		t.Fatalf("ack: %+v", ack)
	}
	for code, want := range map[byte][]byte{
		optSubnetMask: {255, 255, 255, 0},
		optRouter:     {10, 0, 2, 2},
		optBroadcast:  {10, 0, 2, 255},
		optDNS:        {192, 0, 2, 53},
		optLeaseTime:  {0, 1, 0x51, 0x80}, // 86400 s
	} {
		if got := ack.opts[code]; !bytes.Equal(got, want) {
			t.Errorf("option %d = %v, want %v", code, got, want)
		}
	}
	if _, ok := ack.opts[optMTU]; ok {
		t.Errorf("MTU option sent for MTU 1500")
	}

	// A request for another address is refused.
	send(dhcpClientMsg(dhcpRequest, 0x1236, []byte(testGuestMAC), netip.Addr{}, ipOpt(optRequestedIP, netip.MustParseAddr("10.0.2.99"))...))
	if nak := readDHCPReply(t, b); nak.opts[optMsgType][0] != dhcpNak || nak.xid != 0x1236 {
		t.Fatalf("want NAK, got %+v", nak)
	}
}

func TestDHCPRespond(t *testing.T) {
	cfg, err := Config{MTU: 9000, GuestMAC: net.HardwareAddr(testGuestMAC)}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := newDHCPServer(cfg)
	mac := []byte(testGuestMAC)
	other := []byte{2, 0, 0, 0, 0, 1}
	bcast := netip.MustParseAddr("255.255.255.255")
	cases := []struct {
		name     string
		msg      []byte
		wantType byte // 0: silence
		wantDst  netip.Addr
	}{
		{"discover", dhcpClientMsg(dhcpDiscover, 1, mac, netip.Addr{}), dhcpOffer, bcast},
		{"discover from another MAC", dhcpClientMsg(dhcpDiscover, 1, other, netip.Addr{}), 0, netip.Addr{}},
		{"request", dhcpClientMsg(dhcpRequest, 1, mac, netip.Addr{}, ipOpt(optRequestedIP, testGuestIP)...), dhcpAck, bcast},
		{"request for another server", dhcpClientMsg(dhcpRequest, 1, mac, netip.Addr{}, append(ipOpt(optRequestedIP, testGuestIP), ipOpt(optServerID, netip.MustParseAddr("10.0.2.3"))...)...), 0, netip.Addr{}},
		{"request wrong address", dhcpClientMsg(dhcpRequest, 1, mac, netip.Addr{}, ipOpt(optRequestedIP, netip.MustParseAddr("10.0.2.16"))...), dhcpNak, bcast},
		{"request without address", dhcpClientMsg(dhcpRequest, 1, mac, netip.Addr{}), dhcpNak, bcast},
		{"renewal", dhcpClientMsg(dhcpRequest, 1, mac, testGuestIP), dhcpAck, testGuestIP},
		{"renewal of a foreign address", dhcpClientMsg(dhcpRequest, 1, mac, netip.MustParseAddr("192.168.1.5")), dhcpNak, bcast},
		{"inform", dhcpClientMsg(dhcpInform, 1, mac, testGuestIP), dhcpAck, testGuestIP},
		{"release", dhcpClientMsg(dhcpRelease, 1, mac, testGuestIP), 0, netip.Addr{}},
		{"decline", dhcpClientMsg(dhcpDecline, 1, mac, netip.Addr{}), 0, netip.Addr{}},
		{"offer from a client", dhcpClientMsg(dhcpOffer, 1, mac, netip.Addr{}), 0, netip.Addr{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := parseDHCP(c.msg)
			if err != nil {
				t.Fatal(err)
			}
			reply, dst, ok := s.respond(m)
			if c.wantType == 0 {
				if ok {
					t.Fatalf("replied %d bytes, want silence", len(reply))
				}
				return
			}
			if !ok {
				t.Fatal("no reply")
			}
			r := decodeDHCPReply(t, dst, reply)
			if r.opts[optMsgType][0] != c.wantType || dst != c.wantDst {
				t.Fatalf("type %d to %s, want %d to %s", r.opts[optMsgType][0], dst, c.wantType, c.wantDst)
			}
			if c.wantType == dhcpAck && m.msgType == dhcpRequest {
				if got := r.opts[optMTU]; !bytes.Equal(got, []byte{0x23, 0x28}) {
					t.Errorf("MTU option %v, want 9000", got)
				}
			}
			if c.wantType == dhcpNak && (r.yiaddr != netip.IPv4Unspecified() || r.opts[optRouter] != nil) {
				t.Errorf("NAK carries an address or options: %+v", r)
			}
			if m.msgType == dhcpInform && (r.yiaddr != netip.IPv4Unspecified() || r.opts[optLeaseTime] != nil) {
				t.Errorf("ACK to INFORM carries a lease: %+v", r)
			}
		})
	}
}

func TestParseDHCPRejects(t *testing.T) {
	good := dhcpClientMsg(dhcpDiscover, 1, []byte(testGuestMAC), netip.Addr{})
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"empty":            nil,
		"short":            good[:239],
		"reply op":         mod(func(b []byte) []byte { b[0] = bootReply; return b }),
		"not ethernet":     mod(func(b []byte) []byte { b[1] = 6; return b }),
		"hlen":             mod(func(b []byte) []byte { b[2] = 16; return b }),
		"magic":            mod(func(b []byte) []byte { b[236] = 0; return b }),
		"no type":          mod(func(b []byte) []byte { return append(b[:dhcpMinLen], optEnd) }),
		"truncated length": mod(func(b []byte) []byte { return append(b[:dhcpMinLen], optRouter) }),
		"truncated data":   mod(func(b []byte) []byte { return append(b[:dhcpMinLen], optMsgType, 5, 1) }),
		"type length":      mod(func(b []byte) []byte { return append(b[:dhcpMinLen], optMsgType, 2, 1, 1) }),
		"requested length": mod(func(b []byte) []byte { return append(b[:len(b)-1], optRequestedIP, 3, 1, 2, 3) }),
		"server length":    mod(func(b []byte) []byte { return append(b[:len(b)-1], optServerID, 5, 1, 2, 3, 4, 5) }),
	} {
		if _, err := parseDHCP(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	// No end option and trailing pads are fine.
	if _, err := parseDHCP(good[:len(good)-1]); err != nil {
		t.Errorf("without end option: %v", err)
	}
}

func FuzzDHCP(f *testing.F) {
	mac := []byte(testGuestMAC)
	f.Add(dhcpClientMsg(dhcpDiscover, 1, mac, netip.Addr{}))
	f.Add(dhcpClientMsg(dhcpRequest, 2, mac, netip.Addr{}, append(ipOpt(optRequestedIP, testGuestIP), ipOpt(optServerID, testGW)...)...))
	f.Add(dhcpClientMsg(dhcpRequest, 3, mac, testGuestIP))
	f.Add(dhcpClientMsg(dhcpInform, 4, mac, testGuestIP, optPad, optPad, 12, 3, 'v', 'm', 'm'))
	cfgs := []Config{{}, {GuestMAC: net.HardwareAddr(mac), DNS: []netip.Addr{testGW}, MTU: 1400}}
	var servers []*dhcpServer
	for _, c := range cfgs {
		c, err := c.withDefaults()
		if err != nil {
			f.Fatal(err)
		}
		servers = append(servers, newDHCPServer(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseDHCP(b)
		if err != nil {
			return
		}
		for _, s := range servers {
			reply, dst, ok := s.respond(m)
			if !ok {
				continue
			}
			if len(reply) < bootpMinLen || reply[0] != bootReply || !bytes.Equal(reply[4:8], b[4:8]) || !bytes.Equal(reply[28:44], b[28:44]) {
				t.Fatalf("bad reply % x", reply)
			}
			if dst != s.guest && dst != netip.MustParseAddr("255.255.255.255") {
				t.Fatalf("reply to %s", dst)
			}
		}
	})
}
