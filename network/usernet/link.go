package usernet

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/vmm-dev/vmm/network"
)

// rxQueueLen and rxQueueBytes bound the frames waiting for the guest. When
// either is reached, further frames are dropped: TCP retransmits, UDP is
// lossy anyway, and the stack never blocks on a guest that does not read.
// The byte bound matters with segmentation offload, whose frames reach
// 64 KiB.
const (
	rxQueueLen   = 1024
	rxQueueBytes = 8 << 20
)

// vlanOverhead allows one 802.1Q tag in a guest frame.
const vlanOverhead = 4

// counters are the backend's drop and traffic counters.
type counters struct {
	rxFrames, rxDropped, rxGSO, rxSegmented atomic.Uint64
	txFrames, txRunt, txOversize, txBadHd   atomic.Uint64
}

// link is the netstack link endpoint of the guest-facing NIC: Ethernet
// framing in both directions, frames for the guest on a bounded channel,
// frames from the guest delivered synchronously to the stack.
type link struct {
	mac    tcpip.LinkAddress
	gw     tcpip.Address // the only address ARP requests are answered for
	mtu    uint32
	rx     chan []byte  // header + frame, for ReadFrame
	queued atomic.Int64 // bytes in rx
	stats  *counters

	// guest holds the offload features the guest accepted (SetGuestOffloads).
	guest atomic.Uint64

	// mu protects dispatcher.
	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
}

var (
	_ stack.LinkEndpoint = (*link)(nil)
	_ stack.GSOEndpoint  = (*link)(nil)
)

func newLink(mac tcpip.LinkAddress, gw tcpip.Address, mtu uint32, stats *counters) *link {
	return &link{mac: mac, gw: gw, mtu: mtu, rx: make(chan []byte, rxQueueLen), stats: stats}
}

// MTU implements stack.LinkEndpoint: the IP packet size.
func (l *link) MTU() uint32 { return l.mtu }

// SetMTU implements stack.LinkEndpoint; the MTU is fixed by the Config.
func (l *link) SetMTU(uint32) {}

// MaxHeaderLength implements stack.LinkEndpoint.
func (l *link) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (l *link) LinkAddress() tcpip.LinkAddress { return l.mac }

// SetLinkAddress implements stack.LinkEndpoint; the address is fixed.
func (l *link) SetLinkAddress(tcpip.LinkAddress) {}

// GSOMaxSize implements stack.GSOEndpoint.
func (l *link) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements stack.GSOEndpoint: segmentation by the "host"
// (the guest's driver) once the guest accepted it. Netstack asks when a TCP
// connection is set up, so connections made before a renegotiation may still
// send large segments; forGuest cuts those up as they leave the queue.
func (l *link) SupportedGSO() stack.SupportedGSO {
	if guestTakesTSO(l.guest.Load()) {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// Capabilities implements stack.LinkEndpoint: Ethernet needs ARP, and
// frames from the guest are not checksummed again. They never crossed a
// wire, and with VIRTIO_NET_F_CSUM (offered) a Linux guest leaves the
// checksums of TCP and UDP partial anyway; a guest that fills in wrong ones
// only has its own traffic accepted as it sent it.
func (l *link) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
}

// Attach implements stack.LinkEndpoint.
func (l *link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (l *link) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

// Wait implements stack.LinkEndpoint; the link has no goroutines.
func (l *link) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (l *link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint: prepends the Ethernet header.
func (l *link) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements stack.LinkEndpoint.
func (l *link) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// Close implements stack.LinkEndpoint. The rx channel is never closed (a
// late WritePackets must not panic); ReadFrame watches the backend's done
// channel instead.
func (l *link) Close() {
	l.mu.Lock()
	l.dispatcher = nil
	l.mu.Unlock()
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (l *link) SetOnCloseAction(func()) {}

// WritePackets implements stack.LinkWriter: frames from the stack to the
// guest. It copies each packet behind its virtio-net header and queues it
// without blocking; a full queue drops the packet. A segmentation-offload
// packet is queued as it is, with its offloads in the header: whether the
// guest takes them is decided when the frame leaves the queue (forGuest),
// so a renegotiation never strands frames built for the other setting.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		n++
		frame := make([]byte, network.HeaderLen, network.HeaderLen+pkt.Size())
		for _, s := range pkt.AsSlices() {
			frame = append(frame, s...)
		}
		switch pkt.GSOOptions.Type {
		case stack.GSONone:
		case stack.GSOTCPv4:
			h := gsoHeader(pkt)
			_ = h.Encode(frame) // frame starts with HeaderLen bytes
		default:
			l.stats.rxDropped.Add(1) // no other kind is ever asked for
			continue
		}
		l.enqueue(frame)
	}
	return n, nil
}

// forGuest returns a dequeued frame as the guest can take it now: as it is
// if it asks for no offload or the guest takes TSO, else cut into complete
// segments (segmentTCPv4). nil means drop it.
func (l *link) forGuest(frame []byte) [][]byte {
	h, err := network.DecodeHeader(frame)
	if err != nil {
		return nil
	}
	if h.Flags&network.HdrFNeedsCsum == 0 && h.GSOType == network.GSONone {
		return [][]byte{frame}
	}
	if guestTakesTSO(l.guest.Load()) {
		if h.GSOType != network.GSONone {
			l.stats.rxGSO.Add(1)
		}
		return [][]byte{frame}
	}
	segs, err := segmentTCPv4(frame[network.HeaderLen:], int(h.GSOSize))
	if err != nil {
		return nil
	}
	l.stats.rxSegmented.Add(1)
	return segs
}

// enqueue queues one header+frame for the guest, or drops it when the queue
// is full.
func (l *link) enqueue(frame []byte) {
	size := int64(len(frame))
	if l.queued.Add(size) > rxQueueBytes {
		l.queued.Add(-size)
		l.stats.rxDropped.Add(1)
		return
	}
	select {
	case l.rx <- frame:
		l.stats.rxFrames.Add(1)
	default:
		l.queued.Add(-size)
		l.stats.rxDropped.Add(1)
	}
}

// dequeued accounts for a frame taken off rx.
func (l *link) dequeued(frame []byte) { l.queued.Add(-int64(len(frame))) }

// deliver hands one guest frame (header + Ethernet frame, as the guest's
// buffers in order) to the stack. Malformed frames are counted and dropped;
// the Ethernet payload is validated by netstack (but for transport
// checksums, see Capabilities). A TCP super-frame is delivered as the one
// large segment it stands for.
func (l *link) deliver(bufs [][]byte) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if total < network.HeaderLen+header.EthernetMinimumSize {
		l.stats.txRunt.Add(1)
		return
	}
	if total > network.HeaderLen+maxGSOFrame {
		l.stats.txOversize.Add(1)
		return
	}
	// Gather the header apart and the frame straight into a netstack view.
	var hdr [network.HeaderLen]byte
	hn := 0
	v := buffer.NewView(total - network.HeaderLen)
	for _, b := range bufs {
		if hn < len(hdr) {
			c := copy(hdr[hn:], b)
			hn += c
			b = b[c:]
		}
		v.Write(b)
	}
	h, err := network.DecodeHeader(hdr[:])
	switch {
	case err != nil, h.Flags&^(network.HdrFNeedsCsum|network.HdrFDataValid) != 0:
		l.stats.txBadHd.Add(1)
		v.Release()
		return
	case h.GSOType == network.GSONone:
		if total > network.HeaderLen+header.EthernetMinimumSize+vlanOverhead+int(l.mtu) {
			l.stats.txOversize.Add(1)
			v.Release()
			return
		}
	case h.GSOType != network.GSOTCPv4 || h.Flags&network.HdrFNeedsCsum == 0 || h.GSOSize == 0:
		// Only TCPv4 segmentation is offered, and it needs NEEDS_CSUM
		// (virtio 1.2, 5.1.6.2).
		l.stats.txBadHd.Add(1)
		v.Release()
		return
	}
	l.stats.txFrames.Add(1)

	l.mu.RLock()
	d := l.dispatcher
	l.mu.RUnlock()
	if d == nil {
		v.Release()
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
	defer pkt.DecRef()
	if !l.ParseHeader(pkt) {
		return
	}
	eth := header.Ethernet(pkt.LinkHeader().Slice())
	switch dst := eth.DestinationAddress(); {
	case dst == header.EthernetBroadcastAddress:
		pkt.PktType = tcpip.PacketBroadcast
	case header.IsMulticastEthernetAddress(dst):
		pkt.PktType = tcpip.PacketMulticast
	case dst == l.mac:
		pkt.PktType = tcpip.PacketHost
	default:
		// Unicast to another station: a real NIC filters it out too.
		return
	}
	if eth.Type() == header.ARPProtocolNumber && !l.arpForGateway(pkt) {
		return
	}
	d.DeliverNetworkPacket(eth.Type(), pkt)
}

// arpForGateway reports whether an ARP packet may reach the stack. The NIC
// spoofs (it must, to answer for NATed peers), and a spoofing NIC answers ARP
// requests for every address: it would claim the guest's own address when
// the guest probes it before use (RFC 5227) and the guest would decline its
// lease. Only requests for the gateway are let through; replies are (they
// resolve the guest's address).
func (l *link) arpForGateway(pkt *stack.PacketBuffer) bool {
	a := header.ARP(pkt.Data().AsRange().ToSlice())
	if !a.IsValid() {
		return false
	}
	if a.Op() != header.ARPRequest {
		return true
	}
	return tcpip.AddrFrom4Slice(a.ProtocolAddressTarget()) == l.gw
}
