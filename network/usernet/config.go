package usernet

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
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

// Forward is one host -> guest port forward.
type Forward struct {
	// Proto is "tcp" or "udp".
	Proto string
	// HostAddr is the host address and port to listen on. Port 0 picks a free
	// port; Backend.HostForwardAddrs reports the one chosen.
	HostAddr netip.AddrPort
	// GuestPort is the port on Config.GuestIP that connections are sent to.
	GuestPort uint16
}

// String renders f in the form ParseHostFwd accepts.
func (f Forward) String() string {
	return fmt.Sprintf("%s:%s-:%d", f.Proto, f.HostAddr, f.GuestPort)
}

// ParseHostFwd parses a forward in QEMU's hostfwd syntax,
// "proto:[hostaddr]:hostport-[guestaddr]:guestport", for example
// "tcp:127.0.0.1:8080-:80". An empty host address means 127.0.0.1 (never all
// interfaces; write 0.0.0.0 for that). IPv6 host addresses go in brackets:
// "tcp:[::1]:8080-:80". The guest address must be empty: the guest is always
// Config.GuestIP. Ports must be 1..65535.
func ParseHostFwd(s string) (Forward, error) {
	var f Forward
	proto, rest, ok := strings.Cut(s, ":")
	if !ok {
		return f, fmt.Errorf("usernet: hostfwd %q: want proto:[hostaddr]:hostport-:guestport", s)
	}
	switch proto {
	case "tcp", "udp":
	default:
		return f, fmt.Errorf("usernet: hostfwd %q: protocol %q is not tcp or udp", s, proto)
	}
	host, guest, ok := strings.Cut(rest, "-")
	if !ok {
		return f, fmt.Errorf("usernet: hostfwd %q: missing '-' between host and guest parts", s)
	}
	hostAddr, err := parseHostPart(host)
	if err != nil {
		return f, fmt.Errorf("usernet: hostfwd %q: host part: %w", s, err)
	}
	gaddr, gport, ok := strings.Cut(guest, ":")
	if !ok {
		return f, fmt.Errorf("usernet: hostfwd %q: guest part %q: want [guestaddr]:port", s, guest)
	}
	if gaddr != "" {
		return f, fmt.Errorf("usernet: hostfwd %q: guest address %q: only an empty guest address (the guest's DHCP address) is supported", s, gaddr)
	}
	port, err := parsePort(gport)
	if err != nil {
		return f, fmt.Errorf("usernet: hostfwd %q: guest port: %w", s, err)
	}
	return Forward{Proto: proto, HostAddr: hostAddr, GuestPort: port}, nil
}

func parseHostPart(s string) (netip.AddrPort, error) {
	var zero netip.AddrPort
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return zero, fmt.Errorf("%q: want [addr]:port", s)
	}
	addrStr, portStr := s[:i], s[i+1:]
	port, err := parsePort(portStr)
	if err != nil {
		return zero, err
	}
	if addrStr == "" {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port), nil
	}
	if strings.HasPrefix(addrStr, "[") {
		if !strings.HasSuffix(addrStr, "]") {
			return zero, fmt.Errorf("%q: unterminated '['", s)
		}
		addrStr = addrStr[1 : len(addrStr)-1]
		a, err := netip.ParseAddr(addrStr)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return zero, fmt.Errorf("%q: %q is not an IPv6 address without zone", s, addrStr)
		}
		return netip.AddrPortFrom(a, port), nil
	}
	a, err := netip.ParseAddr(addrStr)
	if err != nil || !a.Is4() {
		return zero, fmt.Errorf("%q: %q is not an IPv4 address (host names are not resolved; IPv6 needs brackets)", s, addrStr)
	}
	return netip.AddrPortFrom(a, port), nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("missing port")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a decimal number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not in 1..65535", s)
	}
	return uint16(n), nil
}

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
