package network

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParseHostFwd(t *testing.T) {
	ok := []struct {
		in   string
		want Forward
	}{
		{"tcp:127.0.0.1:8080-:80", Forward{"tcp", netip.MustParseAddrPort("127.0.0.1:8080"), 80}},
		{"tcp::8080-:80", Forward{"tcp", netip.MustParseAddrPort("127.0.0.1:8080"), 80}},
		{"udp:0.0.0.0:5353-:53", Forward{"udp", netip.MustParseAddrPort("0.0.0.0:5353"), 53}},
		{"tcp:[::1]:2222-:22", Forward{"tcp", netip.MustParseAddrPort("[::1]:2222"), 22}},
		{"udp::65535-:1", Forward{"udp", netip.MustParseAddrPort("127.0.0.1:65535"), 1}},
	}
	for _, c := range ok {
		got, err := ParseHostFwd(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseHostFwd(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if again, err := ParseHostFwd(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q via %q: %+v, %v", c.in, got.String(), again, err)
		}
	}
	bad := []struct{ in, why string }{
		{"", "want proto"},
		{"tcp", "want proto"},
		{"sctp::80-:80", "not tcp or udp"},
		{"TCP::80-:80", "not tcp or udp"},
		{"tcp::8080:80", "missing '-'"},
		{"tcp:8080-:80", "want [addr]:port"},
		{"tcp::-:80", "missing port"},
		{"tcp::0-:80", "not in 1..65535"},
		{"tcp::65536-:80", "not in 1..65535"},
		{"tcp::+80-:80", "not a decimal number"},
		{"tcp::80-:0", "not in 1..65535"},
		{"tcp::80-:", "missing port"},
		{"tcp::80-80", "want [guestaddr]:port"},
		{"tcp::80-10.0.2.15:80", "only an empty guest address"},
		{"tcp:localhost:80-:80", "not an IPv4 address"},
		{"tcp:::1:80-:80", "not an IPv4 address"},
		{"tcp:[127.0.0.1]:80-:80", "not an IPv6 address"},
		{"tcp:[::1:80-:80", "unterminated"},
		{"tcp:[fe80::1%eth0]:80-:80", "not an IPv6 address"},
		{"tcp:1.2.3:80-:80", "not an IPv4 address"},
	}
	for _, c := range bad {
		_, err := ParseHostFwd(c.in)
		if err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("ParseHostFwd(%q) error %v, want one containing %q", c.in, err, c.why)
		}
	}
}

func ExampleParseHostFwd() {
	f, err := ParseHostFwd("tcp::2222-:22")
	fmt.Println(f.Proto, f.HostAddr, f.GuestPort, err)
	_, err = ParseHostFwd("tcp::2222-10.0.2.15:22")
	fmt.Println(err)
	// Output:
	// tcp 127.0.0.1:2222 22 <nil>
	// hostfwd "tcp::2222-10.0.2.15:22": guest address "10.0.2.15": only an empty guest address (the guest's DHCP address) is supported
}

// FuzzParseHostFwd: any string either fails to parse or yields a forward
// whose String parses back to the same forward, with ports in range.
func FuzzParseHostFwd(f *testing.F) {
	for _, s := range []string{"tcp:127.0.0.1:8080-:80", "udp::53-:53", "tcp:[::1]:22-:22", "tcp::0-:1", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fw, err := ParseHostFwd(s)
		if err != nil {
			return
		}
		if fw.GuestPort == 0 || fw.HostAddr.Port() == 0 || (fw.Proto != "tcp" && fw.Proto != "udp") {
			t.Fatalf("ParseHostFwd(%q) = %+v", s, fw)
		}
		again, err := ParseHostFwd(fw.String())
		if err != nil || again != fw {
			t.Fatalf("round trip of %q via %q: %+v, %v", s, fw.String(), again, err)
		}
	})
}
