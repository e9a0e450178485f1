package usernet

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/vmm-dev/vmm/network"
)

var testGuestMAC = tcpip.LinkAddress([]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56})

// testGuest is a second netstack playing the guest: its Ethernet NIC is
// wired to the backend's ReadFrame and WriteFrame through the virtio-net
// header, as a driver with the offloads it accepted would use it.
type testGuest struct {
	s      *stack.Stack
	ch     *channel.Endpoint
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// features are the offloads the guest accepted (SetGuestOffloads).
	features atomic.Uint64
	// Frames the guest sent and received with segmentation offload, and
	// frames it dropped because they asked for an offload it did not
	// accept (the device drops those too).
	sentGSO, receivedGSO, dropped atomic.Uint64
}

const guestNIC tcpip.NICID = 1

// newTestGuest starts a guest stack on b with the static address ip in
// 10.0.2.0/24 and a default route through gw, taking no offloads. It stops
// in t.Cleanup, after closing b.
func newTestGuest(t *testing.T, b *Backend, ip, gw netip.Addr) *testGuest {
	return newOffloadGuest(t, b, ip, gw, 0)
}

// newOffloadGuest is newTestGuest for a guest that accepted the offload
// features given (a subset of b.Features()). It checks every frame from
// the backend against them and drops (and counts) those that ask for an
// offload the guest did not accept.
func newOffloadGuest(t *testing.T, b *Backend, ip, gw netip.Addr, features uint64) *testGuest {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	// Room for a whole window of segments: a test guest that drops its own
	// frames under load would stall in retransmission timeouts.
	ch := channel.New(4096, 1500, testGuestMAC)
	if features&(network.FCsum|network.FHostTSO4) == network.FCsum|network.FHostTSO4 {
		ch.SupportedGSOKind = stack.HostGSOSupported
	}
	if err := s.CreateNIC(guestNIC, ethernet.New(ch)); err != nil {
		t.Fatalf("guest NIC: %s", err)
	}
	if err := s.AddProtocolAddress(guestNIC, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(ip.As4()), PrefixLen: 24},
	}, stack.AddressProperties{}); err != nil {
		t.Fatalf("guest address: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(gw.As4()), NIC: guestNIC}})

	ctx, cancel := context.WithCancel(context.Background())
	g := &testGuest{s: s, ch: ch, cancel: cancel}
	g.setOffloads(t, b, features)
	g.wg.Add(2)
	go func() { // guest -> backend
		defer g.wg.Done()
		for {
			pkt := ch.ReadContext(ctx)
			if pkt == nil {
				return
			}
			frame := make([]byte, network.HeaderLen, network.HeaderLen+pkt.Size())
			for _, v := range pkt.AsSlices() {
				frame = append(frame, v...)
			}
			if pkt.GSOOptions.Type != stack.GSONone {
				h := gsoHeader(pkt)
				_ = h.Encode(frame)
				if h.GSOType != network.GSONone {
					g.sentGSO.Add(1)
				}
			}
			pkt.DecRef()
			// Split like a driver's scatter list: header apart.
			if err := b.WriteFrame([][]byte{frame[:network.HeaderLen], frame[network.HeaderLen:]}); err != nil {
				return
			}
		}
	}()
	go func() { // backend -> guest
		defer g.wg.Done()
		buf := make([]byte, network.HeaderLen+maxGSOFrame)
		for {
			n, err := b.ReadFrame(buf)
			if err != nil {
				return
			}
			h, err := network.DecodeHeader(buf[:n])
			if err != nil {
				t.Errorf("ReadFrame returned %d bytes: %v", n, err)
				continue
			}
			frameLen := n - network.HeaderLen
			if err := checkOffloads(h, frameLen, g.features.Load()); err != nil {
				t.Logf("frame for the guest dropped: %v", err)
				g.dropped.Add(1)
				continue
			}
			if h.GSOType != network.GSONone {
				g.receivedGSO.Add(1)
			}
			frame := append([]byte(nil), buf[network.HeaderLen:n]...)
			if h.Flags&network.HdrFNeedsCsum != 0 {
				// Finish the checksum as a driver that does not trust it
				// would, so the guest's stack verifies the partial one.
				at := int(h.CsumStart) + int(h.CsumOffset)
				checksum.Put(frame[at:], ^checksum.Checksum(frame[h.CsumStart:], 0))
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
			ch.InjectInbound(0, pkt)
			pkt.DecRef()
		}
	}()
	t.Cleanup(func() {
		b.Close()
		g.stop()
	})
	return g
}

// setOffloads renegotiates the guest's offloads, as a driver reset would.
func (g *testGuest) setOffloads(t *testing.T, b *Backend, features uint64) {
	t.Helper()
	if err := b.SetGuestOffloads(features); err != nil {
		t.Fatal(err)
	}
	g.features.Store(features)
}

// checkOffloads checks a frame's header against the offloads the guest
// accepted and its length against the MTU a guest without TSO uses.
func checkOffloads(h network.Header, frameLen int, features uint64) error {
	if features&network.FGuestCsum == 0 && h != (network.Header{}) {
		return fmt.Errorf("header %+v for a guest without GUEST_CSUM", h)
	}
	if h.GSOType != network.GSONone && (features&network.FGuestTSO4 == 0 || h.GSOType != network.GSOTCPv4) {
		return fmt.Errorf("GSO type %d for a guest with features %#x", h.GSOType, features)
	}
	if h.GSOType == network.GSONone && frameLen > header.EthernetMinimumSize+1500 {
		return fmt.Errorf("%d-byte frame without GSO", frameLen)
	}
	if h.GSOType != network.GSONone && (h.GSOSize == 0 || int(h.HdrLen) >= frameLen || h.Flags&network.HdrFNeedsCsum == 0) {
		return fmt.Errorf("bad GSO header %+v for a %d-byte frame", h, frameLen)
	}
	if h.Flags&network.HdrFNeedsCsum != 0 && int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
		return fmt.Errorf("checksum at %d+%d beyond a %d-byte frame", h.CsumStart, h.CsumOffset, frameLen)
	}
	return nil
}

// stop ends the guest's pumps (the backend must be closed first) and
// destroys its stack.
func (g *testGuest) stop() {
	g.cancel()
	g.wg.Wait()
	g.s.Destroy()
}
