package usernet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// DHCP (RFC 2131) message layout and the options (RFC 2132) the server uses.
const (
	dhcpServerPort = 67
	dhcpClientPort = 68

	dhcpFixedLen = 236 // op .. file
	dhcpMinLen   = dhcpFixedLen + 4
	bootpMinLen  = 300 // BOOTP minimum size; replies are padded to it

	bootRequest = 1
	bootReply   = 2
	htypeEther  = 1

	dhcpDiscover = 1
	dhcpOffer    = 2
	dhcpRequest  = 3
	dhcpDecline  = 4
	dhcpAck      = 5
	dhcpNak      = 6
	dhcpRelease  = 7
	dhcpInform   = 8

	optPad         = 0
	optSubnetMask  = 1
	optRouter      = 3
	optDNS         = 6
	optMTU         = 26
	optBroadcast   = 28
	optRequestedIP = 50
	optLeaseTime   = 51
	optMsgType     = 53
	optServerID    = 54
	optEnd         = 255

	dhcpLease = 24 * time.Hour
)

var dhcpMagic = [4]byte{99, 130, 83, 99}

var (
	errDHCPShort    = errors.New("usernet: dhcp: message shorter than 240 bytes")
	errDHCPNotReq   = errors.New("usernet: dhcp: not an Ethernet BOOTREQUEST")
	errDHCPMagic    = errors.New("usernet: dhcp: bad magic cookie")
	errDHCPTrunc    = errors.New("usernet: dhcp: option runs past the end of the message")
	errDHCPNoType   = errors.New("usernet: dhcp: no message type option")
	errDHCPBadOptLn = errors.New("usernet: dhcp: option has the wrong length")
)

// dhcpMsg is the part of a client's message the server looks at.
type dhcpMsg struct {
	xid       [4]byte
	flags     uint16
	ciaddr    netip.Addr
	giaddr    netip.Addr
	chaddr    [16]byte
	msgType   byte
	requested netip.Addr // option 50; invalid when absent
	serverID  netip.Addr // option 54; invalid when absent
}

// parseDHCP parses a client message. Every length comes from b and is
// checked against it.
func parseDHCP(b []byte) (dhcpMsg, error) {
	var m dhcpMsg
	if len(b) < dhcpMinLen {
		return m, errDHCPShort
	}
	if b[0] != bootRequest || b[1] != htypeEther || b[2] != 6 {
		return m, errDHCPNotReq
	}
	if !bytes.Equal(b[dhcpFixedLen:dhcpMinLen], dhcpMagic[:]) {
		return m, errDHCPMagic
	}
	copy(m.xid[:], b[4:8])
	m.flags = binary.BigEndian.Uint16(b[10:12])
	m.ciaddr = netip.AddrFrom4([4]byte(b[12:16]))
	m.giaddr = netip.AddrFrom4([4]byte(b[24:28]))
	copy(m.chaddr[:], b[28:44])

	opts := b[dhcpMinLen:]
	for i := 0; i < len(opts); {
		code := opts[i]
		if code == optPad {
			i++
			continue
		}
		if code == optEnd {
			break
		}
		if i+1 >= len(opts) {
			return m, errDHCPTrunc
		}
		n := int(opts[i+1])
		if i+2+n > len(opts) {
			return m, errDHCPTrunc
		}
		data := opts[i+2 : i+2+n]
		i += 2 + n
		switch code {
		case optMsgType:
			if n != 1 {
				return m, fmt.Errorf("%w: message type, %d bytes", errDHCPBadOptLn, n)
			}
			if m.msgType == 0 {
				m.msgType = data[0]
			}
		case optRequestedIP:
			if n != 4 {
				return m, fmt.Errorf("%w: requested address, %d bytes", errDHCPBadOptLn, n)
			}
			m.requested = netip.AddrFrom4([4]byte(data))
		case optServerID:
			if n != 4 {
				return m, fmt.Errorf("%w: server identifier, %d bytes", errDHCPBadOptLn, n)
			}
			m.serverID = netip.AddrFrom4([4]byte(data))
		}
	}
	if m.msgType == 0 {
		return m, errDHCPNoType
	}
	return m, nil
}

// dhcpServer decides the replies of the gateway's DHCP server. It holds no
// lease state: there is one address, and it always belongs to the guest.
type dhcpServer struct {
	gateway  netip.Addr
	guest    netip.Addr
	mask     [4]byte
	bcast    netip.Addr
	dns      []netip.Addr
	mtu      uint32
	guestMAC []byte // nil: answer any client
}

func newDHCPServer(c Config) *dhcpServer {
	return &dhcpServer{
		gateway:  c.GatewayIP,
		guest:    c.GuestIP,
		mask:     mask(c.Subnet),
		bcast:    broadcast(c.Subnet),
		dns:      c.DNS,
		mtu:      c.MTU,
		guestMAC: c.GuestMAC,
	}
}

// respond returns the reply to m and where to send it (port 68), or
// ok=false when the server stays silent.
func (s *dhcpServer) respond(m dhcpMsg) (reply []byte, dst netip.Addr, ok bool) {
	if s.guestMAC != nil && !bytes.Equal(m.chaddr[:6], s.guestMAC) {
		return nil, dst, false
	}
	if m.giaddr != netip.IPv4Unspecified() {
		// No relay agents on a point-to-point virtual link.
		return nil, dst, false
	}
	limited := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	switch m.msgType {
	case dhcpDiscover:
		return s.build(m, dhcpOffer), limited, true
	case dhcpRequest:
		if m.serverID.IsValid() && m.serverID != s.gateway {
			return nil, dst, false // the client chose another server
		}
		want := m.requested
		if !want.IsValid() {
			want = m.ciaddr
		}
		if want != s.guest {
			return s.build(m, dhcpNak), limited, true
		}
		if m.ciaddr == s.guest {
			return s.build(m, dhcpAck), s.guest, true // renewal: unicast
		}
		return s.build(m, dhcpAck), limited, true
	case dhcpInform:
		dst = limited
		if m.ciaddr == s.guest {
			dst = s.guest
		}
		return s.build(m, dhcpAck), dst, true
	default: // DECLINE, RELEASE, server messages: nothing to say.
		return nil, dst, false
	}
}

// build encodes a reply of type typ to m.
func (s *dhcpServer) build(m dhcpMsg, typ byte) []byte {
	b := make([]byte, dhcpMinLen, bootpMinLen)
	b[0], b[1], b[2] = bootReply, htypeEther, 6
	copy(b[4:8], m.xid[:])
	binary.BigEndian.PutUint16(b[10:12], m.flags)
	inform := m.msgType == dhcpInform
	if typ != dhcpNak && (inform || m.msgType == dhcpRequest) {
		c := m.ciaddr.As4()
		copy(b[12:16], c[:])
	}
	if typ != dhcpNak && !inform {
		y := s.guest.As4()
		copy(b[16:20], y[:])
	}
	copy(b[28:44], m.chaddr[:])
	copy(b[dhcpFixedLen:], dhcpMagic[:])

	gw := s.gateway.As4()
	b = append(b, optMsgType, 1, typ)
	b = append(b, optServerID, 4)
	b = append(b, gw[:]...)
	if typ != dhcpNak {
		if !inform {
			b = binary.BigEndian.AppendUint32(append(b, optLeaseTime, 4), uint32(dhcpLease/time.Second))
		}
		b = append(append(b, optSubnetMask, 4), s.mask[:]...)
		b = append(append(b, optRouter, 4), gw[:]...)
		bc := s.bcast.As4()
		b = append(append(b, optBroadcast, 4), bc[:]...)
		if len(s.dns) > 0 {
			b = append(b, optDNS, byte(4*len(s.dns)))
			for _, d := range s.dns {
				a := d.As4()
				b = append(b, a[:]...)
			}
		}
		if s.mtu != DefaultMTU {
			b = binary.BigEndian.AppendUint16(append(b, optMTU, 2), uint16(s.mtu))
		}
	}
	b = append(b, optEnd)
	for len(b) < bootpMinLen {
		b = append(b, optPad)
	}
	return b
}
