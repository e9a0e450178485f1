package usernet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// listen binds the host socket of one forward.
func (b *Backend) listen(f Forward) error {
	switch f.Proto {
	case "tcp":
		l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(f.HostAddr))
		if err != nil {
			return fmt.Errorf("usernet: forward %s: %w", f, err)
		}
		b.listeners = append(b.listeners, l)
		b.hostAddrs = append(b.hostAddrs, l.Addr().(*net.TCPAddr).AddrPort())
	case "udp":
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(f.HostAddr))
		if err != nil {
			return fmt.Errorf("usernet: forward %s: %w", f, err)
		}
		b.listeners = append(b.listeners, c)
		b.hostAddrs = append(b.hostAddrs, c.LocalAddr().(*net.UDPAddr).AddrPort())
	default:
		return fmt.Errorf("usernet: forward %s: protocol %q is not tcp or udp", f, f.Proto)
	}
	return nil
}

// guestAddr is the netstack address of the guest's port.
func (b *Backend) guestAddr(port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(b.cfg.GuestIP.As4()), Port: port}
}

// serveTCPForward accepts host connections until Close and splices each to
// the guest's port.
func (b *Backend) serveTCPForward(l net.Listener, f Forward) {
	defer b.wg.Done()
	backoff := time.Duration(0)
	for {
		c, err := l.Accept()
		if err != nil {
			if b.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			b.log.Warn("usernet: forward accept", "forward", f.String(), "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-b.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		if !b.enterTCP() {
			c.Close() // closed, or too many connections
			continue
		}
		go func() {
			defer b.leaveTCP()
			ctx, cancel := context.WithTimeout(b.ctx, dialTimeout)
			defer cancel()
			gc, err := gonet.DialContextTCP(ctx, b.stack, b.guestAddr(f.GuestPort), ipv4.ProtocolNumber)
			if err != nil {
				b.log.Debug("usernet: forward dial guest", "forward", f.String(), "err", err)
				c.Close()
				return
			}
			b.splice(gc, c)
		}()
	}
}

// udpForwardFlow is one host peer of a UDP forward: a netstack socket
// connected to the guest's port, used for that peer only.
type udpForwardFlow struct {
	guest *gonet.UDPConn
	last  atomic.Int64 // UnixNano of the last datagram either way
}

// serveUDPForward relays datagrams between host peers of pc and the guest's
// port, one netstack socket per peer, until Close.
func (b *Backend) serveUDPForward(pc *net.UDPConn, f Forward) {
	defer b.wg.Done()
	// flowsMu protects flows; flows are removed by their own goroutine.
	var flowsMu sync.Mutex
	flows := make(map[netip.AddrPort]*udpForwardFlow)
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if b.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a datagram-level error, e.g. an ICMP report
		}
		flowsMu.Lock()
		fl := flows[from]
		flowsMu.Unlock()
		if fl == nil {
			if !b.enterUDP() {
				continue // closed or too many flows: drop
			}
			gc, err := gonet.DialUDP(b.stack, nil, &[]tcpip.FullAddress{b.guestAddr(f.GuestPort)}[0], ipv4.ProtocolNumber)
			if err != nil {
				b.leaveUDP()
				b.log.Debug("usernet: udp forward dial guest", "forward", f.String(), "err", err)
				continue
			}
			fl = &udpForwardFlow{guest: gc}
			fl.last.Store(time.Now().UnixNano())
			flowsMu.Lock()
			flows[from] = fl
			flowsMu.Unlock()
			go func() {
				defer b.leaveUDP()
				b.udpForwardReturn(pc, from, fl)
				flowsMu.Lock()
				delete(flows, from)
				flowsMu.Unlock()
			}()
		}
		fl.last.Store(time.Now().UnixNano())
		fl.guest.Write(buf[:n]) // a lost datagram is UDP's normal failure
	}
}

// udpForwardReturn copies the guest's replies of one flow back to the host
// peer until the flow is idle or closed.
func (b *Backend) udpForwardReturn(pc *net.UDPConn, peer netip.AddrPort, fl *udpForwardFlow) {
	if !b.track(fl.guest) {
		return
	}
	defer b.untrack(fl.guest)
	idle := b.cfg.UDPIdleTimeout
	buf := make([]byte, maxDatagram)
	for {
		if err := fl.guest.SetReadDeadline(time.Unix(0, fl.last.Load()).Add(idle)); err != nil {
			return
		}
		n, err := fl.guest.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, fl.last.Load())) < idle {
				continue
			}
			return
		}
		fl.last.Store(time.Now().UnixNano())
		pc.WriteToUDPAddrPort(buf[:n], peer)
	}
}
