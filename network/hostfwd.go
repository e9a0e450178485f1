package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// HostFwd forwards connections to a host address into the guest (user-mode
// networking): "tcp:127.0.0.1:8080-:80" listens on 127.0.0.1:8080 and
// connects to the guest's port 80.
type HostFwd struct {
	Proto     string         // "tcp" or "udp"
	Host      netip.AddrPort // where the host listens
	GuestAddr netip.Addr     // guest address; invalid (zero) means the guest's DHCP address
	GuestPort uint16
}

func (f HostFwd) String() string {
	g := ""
	if f.GuestAddr.IsValid() {
		g = f.GuestAddr.String()
	}
	return fmt.Sprintf("%s:%s-%s:%d", f.Proto, f.Host, g, f.GuestPort)
}

// ParseHostFwd parses PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT, where
// PROTO is tcp or udp, the host address defaults to 127.0.0.1 and both ports
// are 1..65535.
func ParseHostFwd(s string) (HostFwd, error) {
	bad := func(why string) (HostFwd, error) {
		return HostFwd{}, fmt.Errorf("hostfwd %q: %s (want tcp:127.0.0.1:8080-:80)", s, why)
	}
	proto, rest, ok := strings.Cut(s, ":")
	if !ok || (proto != "tcp" && proto != "udp") {
		return bad("protocol must be tcp or udp")
	}
	host, guest, ok := strings.Cut(rest, "-")
	if !ok {
		return bad("no '-' between host and guest side")
	}
	ha, hp, err := splitAddrPort(host)
	if err != nil {
		return bad("host side: " + err.Error())
	}
	if !ha.IsValid() {
		ha = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	ga, gp, err := splitAddrPort(guest)
	if err != nil {
		return bad("guest side: " + err.Error())
	}
	if ga.IsValid() && !ga.Is4() {
		return bad("guest address must be IPv4")
	}
	return HostFwd{Proto: proto, Host: netip.AddrPortFrom(ha, hp), GuestAddr: ga, GuestPort: gp}, nil
}

// splitAddrPort splits "[ADDR]:PORT"; an empty ADDR gives the zero Addr.
func splitAddrPort(s string) (netip.Addr, uint16, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.Addr{}, 0, fmt.Errorf("%q has no ':PORT'", s)
	}
	a, p := strings.TrimSuffix(strings.TrimPrefix(s[:i], "["), "]"), s[i+1:]
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return netip.Addr{}, 0, fmt.Errorf("port %q not in 1..65535", p)
	}
	if a == "" {
		return netip.Addr{}, uint16(port), nil
	}
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("address %q: %v", a, err)
	}
	return addr.Unmap(), uint16(port), nil
}
