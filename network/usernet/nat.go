package usernet

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// maxTCPInFlight bounds guest connections being dialled on the host at
	// once; further SYNs are ignored (the guest retransmits them).
	maxTCPInFlight = 128
	// maxTCPConns bounds open TCP connections (NATed and forwarded
	// together), so a guest cannot exhaust the VMM's file descriptors.
	maxTCPConns = 1024
	// maxUDPFlows bounds concurrent UDP flows (NATed and forwarded).
	maxUDPFlows = 256
	// dialTimeout bounds a host dial for a guest connection and a netstack
	// dial for a host forward.
	dialTimeout = 10 * time.Second
	// maxDatagram is the largest UDP payload.
	maxDatagram = 65535
)

// target maps the destination a guest addressed to the host address to dial:
// the gateway stands for the host's loopback; other addresses of the virtual
// subnet, and broadcast, multicast, loopback and unspecified addresses are
// not reachable.
func (b *Backend) target(a tcpip.Address) (netip.Addr, bool) {
	if a.Len() != 4 {
		return netip.Addr{}, false
	}
	ip := netip.AddrFrom4(a.As4())
	switch {
	case ip == b.cfg.GatewayIP:
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
	case b.cfg.Subnet.Contains(ip), ip.IsUnspecified(), ip.IsMulticast(), ip.IsLoopback(),
		ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, false
	}
	return ip, true
}

// handleTCP runs in its own goroutine for each guest SYN to a destination
// nothing in the stack listens on: it dials the destination from the host
// and only then completes the guest's handshake, so a refused host
// connection is a reset for the guest.
func (b *Backend) handleTCP(r *tcp.ForwarderRequest) {
	if !b.enterTCP() {
		r.Complete(!b.isClosed()) // over the limit: refuse
		return
	}
	defer b.leaveTCP()
	id := r.ID()
	dst, ok := b.target(id.LocalAddress)
	if !ok {
		r.Complete(true)
		return
	}
	to := netip.AddrPortFrom(dst, id.LocalPort)
	hc, err := b.dial(b.ctx, "tcp", to.String())
	if err != nil {
		b.log.Debug("usernet: tcp nat dial", "to", to, "err", err)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		b.log.Debug("usernet: tcp nat accept", "to", to, "err", terr)
		r.Complete(true)
		hc.Close()
		return
	}
	r.Complete(false)
	b.splice(gonet.NewTCPConn(&wq, ep), hc)
}

// splice copies both ways between two stream connections until both
// directions end, half-closing on EOF, and closes both. It must run in a
// goroutine registered in b.wg.
func (b *Backend) splice(guest, host net.Conn) {
	if !b.track(guest) {
		host.Close()
		return
	}
	defer b.untrack(guest)
	if !b.track(host) {
		return
	}
	defer b.untrack(host)

	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(host, guest)
	}()
	pipe(guest, host)
	<-done
}

// pipe copies src to dst. On EOF it half-closes dst; on an error it closes
// both so the opposite direction ends too.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
}

// handleUDP is called by the stack for a guest datagram that no endpoint
// claims: it opens a flow (a netstack endpoint connected to the guest and a
// host socket connected to the destination) that lives until idle.
func (b *Backend) handleUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst, ok := b.target(id.LocalAddress)
	if !ok {
		return false
	}
	if !b.enterUDP() {
		return true // closed or too many flows: drop
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		b.leaveUDP()
		return true
	}
	guest := gonet.NewUDPConn(&wq, ep)
	go func() {
		defer b.leaveUDP()
		to := netip.AddrPortFrom(dst, id.LocalPort)
		host, err := b.dial(b.ctx, "udp", to.String())
		if err != nil {
			b.log.Debug("usernet: udp nat dial", "to", to, "err", err)
			guest.Close()
			return
		}
		b.relayUDP(guest, host)
	}()
	return true
}

// enterTCP registers a goroutine that owns a TCP connection; it fails
// after Close or when maxTCPConns are open.
func (b *Backend) enterTCP() bool { return b.enter(&b.tcpConns, maxTCPConns) }

func (b *Backend) leaveTCP() { b.leave(&b.tcpConns) }

// enterUDP registers a UDP flow goroutine; it fails after Close or when
// maxUDPFlows are open.
func (b *Backend) enterUDP() bool { return b.enter(&b.udpFlows, maxUDPFlows) }

func (b *Backend) leaveUDP() { b.leave(&b.udpFlows) }

// enter counts one more goroutine in *n (guarded by b.mu) and in b.wg,
// unless the backend is closed or *n has reached limit.
func (b *Backend) enter(n *int, limit int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || *n >= limit {
		return false
	}
	*n++
	b.wg.Add(1)
	return true
}

// leave undoes enter.
func (b *Backend) leave(n *int) {
	b.mu.Lock()
	*n--
	b.mu.Unlock()
	b.wg.Done()
}

// relayUDP copies datagrams both ways between two connected UDP sockets
// until neither direction has carried traffic for the idle timeout, or
// Close.
func (b *Backend) relayUDP(guest, host net.Conn) {
	if !b.track(guest) {
		host.Close()
		return
	}
	defer b.untrack(guest)
	if !b.track(host) {
		return
	}
	defer b.untrack(host)

	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.copyDatagrams(guest, host, &last)
	}()
	b.copyDatagrams(host, guest, &last)
	<-done
}

// copyDatagrams copies datagrams from src to dst until src fails or the
// flow (both directions, through last) has been idle for the timeout; then
// it closes both sockets.
func (b *Backend) copyDatagrams(dst, src net.Conn, last *atomic.Int64) {
	defer func() {
		src.Close()
		dst.Close()
	}()
	idle := b.cfg.UDPIdleTimeout
	buf := make([]byte, maxDatagram)
	for {
		if err := src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle)); err != nil {
			return
		}
		n, err := src.Read(buf)
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				if time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other direction was active
				}
				return
			case errors.Is(err, syscall.ECONNREFUSED):
				continue // an ICMP error for an earlier datagram
			default:
				return
			}
		}
		last.Store(time.Now().UnixNano())
		// A failed write loses one datagram, as UDP may.
		dst.Write(buf[:n])
	}
}
