package usernet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/vmm-dev/vmm/network"
)

const nicID tcpip.NICID = 1

// Backend is a user-mode network: a network.Backend whose far side is an
// in-process netstack acting as gateway, DHCP server and NAT.
//
// ReadFrame and WriteFrame may be called concurrently with each other and
// with Close.
type Backend struct {
	cfg   Config
	log   *slog.Logger
	stack *stack.Stack
	link  *link
	dhcp  *dhcpServer
	stats counters

	// done is closed by Close; ctx is cancelled at the same time and
	// bounds every dial.
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	// wake holds a pending Wake (capacity 1: wake-ups do not accumulate).
	wake chan struct{}
	// pending holds the rest of a frame cut into segments for the guest
	// (link.forGuest); only the reading goroutine touches it.
	pending [][]byte

	// txMu is held for reading while a guest frame is inside the stack and
	// for writing while Close destroys the stack.
	txMu sync.RWMutex

	// mu protects closed, conns, tcpConns, udpFlows and the registration of
	// goroutines in wg (wg.Add happens only under mu while !closed).
	mu       sync.Mutex
	closed   bool
	conns    map[io.Closer]struct{}
	tcpConns int
	udpFlows int
	wg       sync.WaitGroup

	// Set up by New, read-only afterwards.
	listeners []io.Closer
	hostAddrs []netip.AddrPort
	dhcpConn  *gonet.UDPConn

	// dial opens host sockets for the NAT (net.Dialer.DialContext; tests
	// replace it before the first frame).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

var _ network.Backend = (*Backend)(nil)

// New builds the virtual network described by cfg, binds the host sockets
// of its forwards (so a port in use fails here) and starts serving. Close
// releases everything.
func New(cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		cfg:    cfg,
		log:    cfg.Log,
		dhcp:   newDHCPServer(cfg),
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[io.Closer]struct{}),
	}
	d := &net.Dialer{Timeout: dialTimeout}
	b.dial = d.DialContext
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()

	// Host sockets first: they are the likely failure.
	for _, f := range cfg.HostForwards {
		if err := b.listen(f); err != nil {
			return nil, err
		}
	}

	b.stack = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	b.link = newLink(gatewayMAC(cfg.GatewayIP), tcpip.AddrFrom4(cfg.GatewayIP.As4()), cfg.MTU, &b.stats)
	if err := b.setupStack(); err != nil {
		return nil, err
	}
	if err := b.startDHCP(); err != nil {
		return nil, err
	}

	b.mu.Lock()
	for i, l := range b.listeners {
		f := cfg.HostForwards[i]
		switch l := l.(type) {
		case net.Listener:
			b.wg.Add(1)
			go b.serveTCPForward(l, f)
		case *net.UDPConn:
			b.wg.Add(1)
			go b.serveUDPForward(l, f)
		}
	}
	b.wg.Add(1)
	go b.serveDHCP()
	b.mu.Unlock()

	ok = true
	b.log.Info("usernet: up", "subnet", cfg.Subnet, "gateway", cfg.GatewayIP, "guest", cfg.GuestIP, "forwards", len(cfg.HostForwards))
	return b, nil
}

// gatewayMAC derives the gateway's locally administered unicast MAC from its
// address, as QEMU's user networking does (52:55:0a:00:02:02).
func gatewayMAC(gw netip.Addr) tcpip.LinkAddress {
	a := gw.As4()
	return tcpip.LinkAddress([]byte{0x52, 0x55, a[0], a[1], a[2], a[3]})
}

func (b *Backend) setupStack() error {
	s := b.stack
	if err := s.CreateNICWithOptions(nicID, b.link, stack.NICOptions{Name: "usernet0"}); err != nil {
		return fmt.Errorf("usernet: create NIC: %s", err)
	}
	addr := tcpip.ProtocolAddress{
		Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpip.AddrFrom4(b.cfg.GatewayIP.As4()),
			PrefixLen: b.cfg.Subnet.Bits(),
		},
	}
	if err := s.AddProtocolAddress(nicID, addr, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("usernet: add gateway address: %s", err)
	}
	subnet, err := tcpip.NewSubnet(tcpip.AddrFrom4(b.cfg.Subnet.Addr().As4()), tcpip.MaskFromBytes(func() []byte { m := mask(b.cfg.Subnet); return m[:] }()))
	if err != nil {
		return fmt.Errorf("usernet: subnet: %w", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: subnet, NIC: nicID}})
	// Accept packets for any destination (the NAT terminates them) and
	// answer from any source address (the NAT's replies carry the real
	// peer's address).
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		return fmt.Errorf("usernet: promiscuous mode: %s", err)
	}
	if err := s.SetSpoofing(nicID, true); err != nil {
		return fmt.Errorf("usernet: spoofing: %s", err)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fmt.Errorf("usernet: TCP SACK: %s", err)
	}
	tcpFwd := tcp.NewForwarder(s, 0, maxTCPInFlight, b.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	udpFwd := udp.NewForwarder(s, b.handleUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, udpFwd.HandlePacket)
	return nil
}

// startDHCP binds the DHCP server's socket: port 67 on the NIC, any local
// address, allowed to send broadcasts.
func (b *Backend) startDHCP() error {
	var wq waiter.Queue
	ep, terr := b.stack.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return fmt.Errorf("usernet: dhcp endpoint: %s", terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	if terr := ep.Bind(tcpip.FullAddress{NIC: nicID, Port: dhcpServerPort}); terr != nil {
		ep.Close()
		return fmt.Errorf("usernet: dhcp bind: %s", terr)
	}
	b.dhcpConn = gonet.NewUDPConn(&wq, ep)
	return nil
}

// serveDHCP answers DHCP requests until Close.
func (b *Backend) serveDHCP() {
	defer b.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, _, err := b.dhcpConn.ReadFrom(buf)
		if err != nil {
			if b.isClosed() {
				return
			}
			continue // a datagram-level error; the socket is still usable
		}
		m, err := parseDHCP(buf[:n])
		if err != nil {
			continue
		}
		reply, dst, ok := b.dhcp.respond(m)
		if !ok {
			continue
		}
		// reply[dhcpMinLen+2] is the message type: build writes it first.
		switch reply[dhcpMinLen+2] {
		case dhcpAck:
			b.log.Info("usernet: dhcp ack", "client", net.HardwareAddr(m.chaddr[:6]).String(), "dst", dst)
		case dhcpNak:
			b.log.Info("usernet: dhcp nak", "client", net.HardwareAddr(m.chaddr[:6]).String(), "requested", m.requested)
		}
		to := &net.UDPAddr{IP: net.IP(dst.AsSlice()), Port: dhcpClientPort}
		if _, err := b.dhcpConn.WriteTo(reply, to); err != nil {
			b.log.Debug("usernet: dhcp reply", "err", err)
		}
	}
}

// ReadFrame implements network.Backend: it blocks until a frame for the
// guest is queued (or Close, or Wake), copies header+frame into buf and
// returns its length. Frames longer than buf are dropped.
func (b *Backend) ReadFrame(buf []byte) (int, error) { return b.read(buf, true) }

// TryReadFrame implements network.Backend: ReadFrame without waiting.
func (b *Backend) TryReadFrame(buf []byte) (int, error) { return b.read(buf, false) }

// Wake implements network.Backend.
func (b *Backend) Wake() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *Backend) read(buf []byte, wait bool) (int, error) {
	for {
		select {
		case <-b.done:
			return 0, network.ErrClosed
		case <-b.wake:
			return 0, network.ErrWoken
		default:
		}
		if len(b.pending) > 0 {
			f := b.pending[0]
			b.pending[0] = nil
			b.pending = b.pending[1:]
			if len(f) > len(buf) {
				b.stats.rxDropped.Add(1)
				continue
			}
			return copy(buf, f), nil
		}
		var f []byte
		if wait {
			select {
			case <-b.done:
				return 0, network.ErrClosed
			case <-b.wake:
				return 0, network.ErrWoken
			case f = <-b.link.rx:
			}
		} else {
			select {
			case f = <-b.link.rx:
			default:
				return 0, nil
			}
		}
		b.link.dequeued(f)
		b.pending = b.link.forGuest(f)
		if b.pending == nil {
			b.stats.rxDropped.Add(1)
		}
	}
}

// WriteFrame implements network.Backend: one header+frame from the guest.
// Malformed frames (too short, too long, an offload request in the header)
// are dropped and counted in Stats; they are not errors of the backend.
func (b *Backend) WriteFrame(bufs [][]byte) error {
	b.txMu.RLock()
	defer b.txMu.RUnlock()
	if b.isClosed() {
		return network.ErrClosed
	}
	b.link.deliver(bufs)
	return nil
}

// Features implements network.Backend: TCP segmentation and checksum
// offloads in both directions (see offloads).
func (b *Backend) Features() uint64 { return offloads }

// SetGuestOffloads implements network.Backend: from now on frames for the
// guest use only the offloads in features, which must have been offered.
func (b *Backend) SetGuestOffloads(features uint64) error {
	if features&^b.Features() != 0 {
		return fmt.Errorf("usernet: guest offloads %#x not offered", features)
	}
	b.link.guest.Store(features)
	return nil
}

// HostForwardAddrs returns the host address each of Config.HostForwards is
// bound to, in order (useful with port 0).
func (b *Backend) HostForwardAddrs() []netip.AddrPort {
	return append([]netip.AddrPort(nil), b.hostAddrs...)
}

// GatewayMAC returns the gateway's Ethernet address.
func (b *Backend) GatewayMAC() net.HardwareAddr {
	return net.HardwareAddr(gatewayMAC(b.cfg.GatewayIP))
}

// Stats are frame counters, as seen from the guest.
type Stats struct {
	RxFrames    uint64 // frames queued for the guest
	RxDropped   uint64 // frames for the guest dropped: queue full or longer than ReadFrame's buffer
	RxGSO       uint64 // of RxFrames, TCP super-frames the guest segments itself
	RxSegmented uint64 // large segments cut up here for a guest that does not take TSO
	TxFrames    uint64 // frames from the guest passed to the stack
	TxMalformed uint64 // frames from the guest dropped: runt, oversize, or a header asking what was not offered
}

// Stats returns the current counters.
func (b *Backend) Stats() Stats {
	s := &b.stats
	return Stats{
		RxFrames:    s.rxFrames.Load(),
		RxDropped:   s.rxDropped.Load(),
		RxGSO:       s.rxGSO.Load(),
		RxSegmented: s.rxSegmented.Load(),
		TxFrames:    s.txFrames.Load(),
		TxMalformed: s.txRunt.Load() + s.txOversize.Load() + s.txBadHd.Load(),
	}
}

// Close implements network.Backend: it closes the host listeners and every
// forwarded connection, waits for the backend's goroutines, and destroys the
// stack. ReadFrame and WriteFrame then return network.ErrClosed.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	conns := make([]io.Closer, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()

	close(b.done)
	b.cancel()
	for _, l := range b.listeners {
		l.Close()
	}
	if b.dhcpConn != nil {
		b.dhcpConn.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	b.wg.Wait()

	b.txMu.Lock()
	defer b.txMu.Unlock()
	if b.stack != nil {
		b.stack.Destroy()
	}
	b.log.Info("usernet: closed")
	return nil
}

func (b *Backend) isClosed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// track records c so that Close closes it; after Close it closes c at once
// and returns false.
func (b *Backend) track(c io.Closer) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		c.Close()
		return false
	}
	b.conns[c] = struct{}{}
	return true
}

func (b *Backend) untrack(c io.Closer) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
	c.Close()
}
