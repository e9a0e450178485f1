package usernet

import (
	"errors"
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/vmm-dev/vmm/network"
)

// Offloads of the user-mode network (virtio 1.2, 5.1.3): TCP segmentation
// and partial checksums in both directions, IPv4 only (the virtual network
// has no IPv6).
//
//   - To the guest (GUEST_CSUM, GUEST_TSO4): when the guest accepted both,
//     netstack's TCP hands the link segments of up to gsoMaxSize bytes with
//     the checksum left partial, and they travel to the guest as one frame
//     each, as a TAP with TSO does. A guest that did not accept them gets
//     MTU-sized frames with complete checksums.
//   - From the guest (CSUM, HOST_TSO4): a partially checksummed frame is
//     handed to netstack as already verified (it never left the machine),
//     and a TCP super-frame as the one large segment it stands for, as
//     receive offload (GRO) does.
const offloads = network.FCsum | network.FGuestCsum | network.FGuestTSO4 | network.FHostTSO4

// gsoMaxSize bounds netstack's segments for the guest: an IPv4 packet's
// total length fits 16 bits, and netstack keeps the payload below this
// minus header.TCPTotalHeaderMaximumSize.
const gsoMaxSize = 1<<16 - 1

// maxGSOFrame is the longest frame either direction carries with
// segmentation offload.
const maxGSOFrame = network.MaxFrameLen

// guestTakesTSO reports whether the guest accepted large TCP frames with
// partial checksums.
func guestTakesTSO(guest uint64) bool {
	const need = network.FGuestCsum | network.FGuestTSO4
	return guest&need == need
}

// gsoHeader returns the virtio-net header of a packet netstack built with
// host GSO options, for a guest that accepted them: the checksum to finish
// (the TCP header's, left partial by netstack) and, when the payload is
// longer than one segment, the segmentation the guest would have seen.
func gsoHeader(pkt *stack.PacketBuffer) network.Header {
	gso := pkt.GSOOptions
	l2 := len(pkt.LinkHeader().Slice())
	l3 := len(pkt.NetworkHeader().Slice())
	l4 := len(pkt.TransportHeader().Slice())
	var h network.Header
	if gso.NeedsCsum {
		h.Flags = network.HdrFNeedsCsum
		h.CsumStart = uint16(l2 + l3)
		h.CsumOffset = gso.CsumOffset
	}
	if gso.MSS > 0 && pkt.Data().Size() > int(gso.MSS) {
		h.GSOType = network.GSOTCPv4
		h.GSOSize = gso.MSS
		h.HdrLen = uint16(l2 + l3 + l4)
	}
	return h
}

var errNotTCPv4 = errors.New("not an Ethernet/IPv4/TCP frame")

// segmentTCPv4 cuts a TCP super-frame (Ethernet, IPv4, TCP header, payload)
// into frames of at most mss payload bytes each, with complete IPv4 and TCP
// checksums, for a guest that does not take offloads. Each result starts
// with a zeroed virtio-net header. The input comes from netstack, but is
// parsed with bounds checks all the same.
func segmentTCPv4(frame []byte, mss int) ([][]byte, error) {
	const l2 = header.EthernetMinimumSize
	if len(frame) < l2+header.IPv4MinimumSize || header.Ethernet(frame).Type() != header.IPv4ProtocolNumber {
		return nil, errNotTCPv4
	}
	ip := header.IPv4(frame[l2:])
	l3 := int(ip.HeaderLength())
	if l3 < header.IPv4MinimumSize || len(ip) < l3+header.TCPMinimumSize || ip.TransportProtocol() != header.TCPProtocolNumber {
		return nil, errNotTCPv4
	}
	if int(ip.TotalLength()) != len(ip) {
		return nil, fmt.Errorf("IPv4 total length %d, packet of %d bytes", ip.TotalLength(), len(ip))
	}
	tcp := header.TCP(ip[l3:])
	l4 := int(tcp.DataOffset())
	if l4 < header.TCPMinimumSize || len(tcp) < l4 {
		return nil, fmt.Errorf("TCP data offset %d in %d bytes", l4, len(tcp))
	}
	if mss <= 0 {
		mss = len(tcp) - l4
	}
	hdrs := l2 + l3 + l4
	payload := frame[hdrs:]
	flags := tcp.Flags()
	seq := tcp.SequenceNumber()
	id := ip.ID()
	var out [][]byte
	for off := 0; off == 0 || off < len(payload); off += mss {
		n := min(mss, len(payload)-off)
		seg := make([]byte, network.HeaderLen+hdrs+n)
		f := seg[network.HeaderLen:]
		copy(f, frame[:hdrs])
		copy(f[hdrs:], payload[off:off+n])
		sip := header.IPv4(f[l2:])
		sip.SetTotalLength(uint16(l3 + l4 + n))
		sip.SetID(id + uint16(len(out)))
		sip.SetChecksum(0)
		sip.SetChecksum(^sip.CalculateChecksum())
		stcp := header.TCP(f[l2+l3:])
		stcp.SetSequenceNumber(seq + uint32(off))
		sf := flags
		if off > 0 {
			sf &^= header.TCPFlagCwr // only the first segment carries CWR
		}
		if off+n < len(payload) {
			sf &^= header.TCPFlagFin | header.TCPFlagPsh // only the last carries FIN and PSH
		}
		stcp.SetFlags(uint8(sf))
		setTCPChecksum(sip, stcp)
		out = append(out, seg)
		if n == 0 {
			break
		}
	}
	return out, nil
}

// setTCPChecksum writes the complete checksum of a TCP segment (header and
// payload, all of tcp) carried in ip.
func setTCPChecksum(ip header.IPv4, tcp header.TCP) {
	tcp.SetChecksum(0)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcp)))
	xsum = checksum.Checksum(tcp, xsum)
	tcp.SetChecksum(^xsum)
}
