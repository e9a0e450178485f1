package usernet

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vmm-dev/vmm/network"
)

// Defaults, the same addresses QEMU's user networking uses.
const (
	DefaultMTU            = 1500
	DefaultUDPIdleTimeout = 60 * time.Second
	// maxMTU keeps a frame (header + Ethernet + MTU) well inside 64 KiB.
	maxMTU = 65000
	minMTU = 576
	// maxDNS bounds the resolvers advertised over DHCP.
	maxDNS = 8
)

var (
	defaultSubnet  = netip.MustParsePrefix("10.0.2.0/24")
	defaultGateway = netip.MustParseAddr("10.0.2.2")
	defaultGuest   = netip.MustParseAddr("10.0.2.15")
)

// Config describes the virtual network. The zero value is a usable network:
// 10.0.2.0/24, gateway 10.0.2.2, guest 10.0.2.15, MTU 1500, no forwards.
type Config struct {
	// Subnet is the virtual IPv4 network. Default 10.0.2.0/24.
	Subnet netip.Prefix
	// GatewayIP is the backend's own address: router, DHCP server, and an
	// alias of the host's 127.0.0.1 for connections from the guest.
	// Default: the subnet's address + 2 (10.0.2.2).
	GatewayIP netip.Addr
	// GuestIP is the one address the DHCP server leases, and the target of
	// host forwards. Default: the subnet's address + 15 (10.0.2.15).
	GuestIP netip.Addr
	// DNS lists resolvers advertised to the guest over DHCP (option 6). The
	// backend runs no resolver itself: queries to these addresses are NATed
	// like any UDP flow (an address equal to GatewayIP reaches the host's
	// 127.0.0.1:53). Empty means no DNS option is sent.
	DNS []netip.Addr
	// GuestMAC, if set, is the only client the DHCP server answers.
	GuestMAC net.HardwareAddr
	// MTU of the virtual link (IP packet size). Default 1500. The guest must
	// be told the same value (virtio-net MTU feature or DHCP option 26, which
	// is sent when MTU is not 1500).
	MTU uint32
	// UDPIdleTimeout ends a NATed or forwarded UDP flow after this long
	// without traffic in either direction. Default 60 s.
	UDPIdleTimeout time.Duration
	// HostForwards are host -> guest port forwards. Their host sockets are
	// bound by New, so a port in use is an error before the guest boots.
	HostForwards []Forward
	// Log receives connection-level events (never one line per frame).
	// nil discards them.
	Log *slog.Logger
}

// Forward is one host -> guest port forward (network.Forward, which
// network.ParseHostFwd parses; it lives there so that the VMM can parse
// --net user,hostfwd= without linking netstack).
type Forward = network.Forward

// withDefaults fills the zero fields of c and validates the result.
func (c Config) withDefaults() (Config, error) {
	if !c.Subnet.IsValid() {
		c.Subnet = defaultSubnet
	}
	if !c.Subnet.Addr().Is4() {
		return c, fmt.Errorf("usernet: subnet %s: only IPv4 is supported", c.Subnet)
	}
	c.Subnet = c.Subnet.Masked()
	if b := c.Subnet.Bits(); b < 8 || b > 29 {
		return c, fmt.Errorf("usernet: subnet %s: prefix length must be 8..29", c.Subnet)
	}
	if !c.GatewayIP.IsValid() {
		c.GatewayIP = offset(c.Subnet.Addr(), 2)
	}
	if !c.GuestIP.IsValid() {
		c.GuestIP = offset(c.Subnet.Addr(), 15)
		if c.GuestIP == c.GatewayIP || !c.Subnet.Contains(c.GuestIP) {
			c.GuestIP = offset(c.Subnet.Addr(), 3)
		}
	}
	for _, x := range []struct {
		name string
		a    netip.Addr
	}{{"gateway", c.GatewayIP}, {"guest", c.GuestIP}} {
		if !x.a.Is4() || !c.Subnet.Contains(x.a) {
			return c, fmt.Errorf("usernet: %s address %s is not an IPv4 address in %s", x.name, x.a, c.Subnet)
		}
		if x.a == c.Subnet.Addr() || x.a == broadcast(c.Subnet) {
			return c, fmt.Errorf("usernet: %s address %s is the network or broadcast address of %s", x.name, x.a, c.Subnet)
		}
	}
	if c.GatewayIP == c.GuestIP {
		return c, fmt.Errorf("usernet: gateway and guest share the address %s", c.GuestIP)
	}
	// Copies: the caller may reuse its slices.
	c.DNS = slices.Clone(c.DNS)
	c.GuestMAC = slices.Clone(c.GuestMAC)
	c.HostForwards = slices.Clone(c.HostForwards)
	if len(c.DNS) > maxDNS {
		return c, fmt.Errorf("usernet: %d DNS servers, at most %d", len(c.DNS), maxDNS)
	}
	for _, d := range c.DNS {
		if !d.Is4() || d.IsUnspecified() || d.IsMulticast() {
			return c, fmt.Errorf("usernet: DNS server %s is not a unicast IPv4 address", d)
		}
	}
	if c.GuestMAC != nil && len(c.GuestMAC) != 6 {
		return c, fmt.Errorf("usernet: guest MAC %s is not a 6-byte Ethernet address", c.GuestMAC)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < minMTU || c.MTU > maxMTU {
		return c, fmt.Errorf("usernet: MTU %d is not in %d..%d", c.MTU, minMTU, maxMTU)
	}
	if c.UDPIdleTimeout == 0 {
		c.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if c.UDPIdleTimeout < 0 {
		return c, fmt.Errorf("usernet: negative UDP idle timeout %s", c.UDPIdleTimeout)
	}
	for _, f := range c.HostForwards {
		if f.Proto != "tcp" && f.Proto != "udp" {
			return c, fmt.Errorf("usernet: forward %s: protocol %q is not tcp or udp", f, f.Proto)
		}
		if !f.HostAddr.Addr().IsValid() || f.HostAddr.Addr().Zone() != "" {
			return c, fmt.Errorf("usernet: forward %s: invalid host address", f)
		}
		if f.GuestPort == 0 {
			return c, fmt.Errorf("usernet: forward %s: guest port 0", f)
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// offset returns the IPv4 address a + n (no wrap-around check; callers
// check the result against the subnet).
func offset(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// broadcast returns the directed broadcast address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// mask returns the subnet mask of an IPv4 prefix.
func mask(p netip.Prefix) [4]byte {
	m := ^uint32(0) << (32 - p.Bits())
	return [4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
}
