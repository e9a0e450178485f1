package network

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Forward is one host -> guest port forward.
type Forward struct {
	// Proto is "tcp" or "udp".
	Proto string
	// HostAddr is the host address and port to listen on. Port 0 picks a free
	// port; the backend reports the one chosen.
	HostAddr netip.AddrPort
	// GuestPort is the port on the guest's address that connections are sent to.
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
// the guest's address. Ports must be 1..65535.
func ParseHostFwd(s string) (Forward, error) {
	var f Forward
	proto, rest, ok := strings.Cut(s, ":")
	if !ok {
		return f, fmt.Errorf("hostfwd %q: want proto:[hostaddr]:hostport-:guestport", s)
	}
	switch proto {
	case "tcp", "udp":
	default:
		return f, fmt.Errorf("hostfwd %q: protocol %q is not tcp or udp", s, proto)
	}
	host, guest, ok := strings.Cut(rest, "-")
	if !ok {
		return f, fmt.Errorf("hostfwd %q: missing '-' between host and guest parts", s)
	}
	hostAddr, err := parseHostPart(host)
	if err != nil {
		return f, fmt.Errorf("hostfwd %q: host part: %w", s, err)
	}
	gaddr, gport, ok := strings.Cut(guest, ":")
	if !ok {
		return f, fmt.Errorf("hostfwd %q: guest part %q: want [guestaddr]:port", s, guest)
	}
	if gaddr != "" {
		return f, fmt.Errorf("hostfwd %q: guest address %q: only an empty guest address (the guest's DHCP address) is supported", s, gaddr)
	}
	port, err := parsePort(gport)
	if err != nil {
		return f, fmt.Errorf("hostfwd %q: guest port: %w", s, err)
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
