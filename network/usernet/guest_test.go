package usernet

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
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
// wired to the backend's ReadFrame and WriteFrame, with the zeroed
// virtio-net header a driver without offloads uses.
type testGuest struct {
	s      *stack.Stack
	ch     *channel.Endpoint
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

const guestNIC tcpip.NICID = 1

// newTestGuest starts a guest stack on b with the static address ip in
// 10.0.2.0/24 and a default route through gw. It stops in t.Cleanup, after
// closing b.
func newTestGuest(t *testing.T, b *Backend, ip, gw netip.Addr) *testGuest {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	ch := channel.New(256, 1500, testGuestMAC)
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
			pkt.DecRef()
			// Split like a driver's scatter list: header apart.
			if err := b.WriteFrame([][]byte{frame[:network.HeaderLen], frame[network.HeaderLen:]}); err != nil {
				return
			}
		}
	}()
	go func() { // backend -> guest
		defer g.wg.Done()
		buf := make([]byte, network.HeaderLen+14+1500)
		for {
			n, err := b.ReadFrame(buf)
			if err != nil {
				return
			}
			if n < network.HeaderLen {
				t.Errorf("ReadFrame returned %d bytes, shorter than the header", n)
				continue
			}
			for i, c := range buf[:network.HeaderLen] {
				if c != 0 {
					t.Errorf("header byte %d = %#x, want 0", i, c)
				}
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
				Payload: buffer.MakeWithData(append([]byte(nil), buf[network.HeaderLen:n]...)),
			})
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

// stop ends the guest's pumps (the backend must be closed first) and
// destroys its stack.
func (g *testGuest) stop() {
	g.cancel()
	g.wg.Wait()
	g.s.Destroy()
}
