package usernet

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Subnet != defaultSubnet || c.GatewayIP != defaultGateway || c.GuestIP != defaultGuest || c.MTU != 1500 ||
		c.UDPIdleTimeout != DefaultUDPIdleTimeout || c.Log == nil {
		t.Errorf("defaults: %+v", c)
	}
	c, err = Config{Subnet: netip.MustParsePrefix("192.168.7.9/29")}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Subnet.String() != "192.168.7.8/29" || c.GatewayIP.String() != "192.168.7.10" || c.GuestIP.String() != "192.168.7.11" {
		t.Errorf("small subnet defaults: %s %s %s", c.Subnet, c.GatewayIP, c.GuestIP)
	}
	if got := mask(netip.MustParsePrefix("10.0.0.0/8")); got != [4]byte{255, 0, 0, 0} {
		t.Errorf("mask /8 = %v", got)
	}
	if got := broadcast(netip.MustParsePrefix("10.0.2.0/24")); got.String() != "10.0.2.255" {
		t.Errorf("broadcast = %s", got)
	}
}

func TestConfigRejects(t *testing.T) {
	a := netip.MustParseAddr
	fw := func(proto, host string, port uint16) []Forward {
		return []Forward{{Proto: proto, HostAddr: netip.MustParseAddrPort(host), GuestPort: port}}
	}
	for _, c := range []struct {
		cfg Config
		why string
	}{
		{Config{Subnet: netip.MustParsePrefix("fd00::/64")}, "only IPv4"},
		{Config{Subnet: netip.MustParsePrefix("10.0.0.0/30")}, "prefix length"},
		{Config{Subnet: netip.MustParsePrefix("10.0.0.0/7")}, "prefix length"},
		{Config{GatewayIP: a("10.0.3.2")}, "gateway address"},
		{Config{GuestIP: a("10.0.2.0")}, "network or broadcast"},
		{Config{GuestIP: a("10.0.2.255")}, "network or broadcast"},
		{Config{GuestIP: a("10.0.2.2")}, "share the address"},
		{Config{GuestIP: a("fd00::2")}, "guest address"},
		{Config{DNS: []netip.Addr{a("::1")}}, "DNS server"},
		{Config{DNS: make([]netip.Addr, 9)}, "at most"},
		{Config{GuestMAC: net.HardwareAddr{1, 2, 3}}, "6-byte"},
		{Config{MTU: 100}, "MTU"},
		{Config{MTU: 70000}, "MTU"},
		{Config{UDPIdleTimeout: -1}, "negative"},
		{Config{HostForwards: fw("sctp", "127.0.0.1:1", 1)}, "not tcp or udp"},
		{Config{HostForwards: fw("tcp", "127.0.0.1:1", 0)}, "guest port 0"},
		{Config{HostForwards: []Forward{{Proto: "tcp", GuestPort: 1}}}, "invalid host address"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("New(%+v) error %v, want one containing %q", c.cfg, err, c.why)
		}
	}
}
