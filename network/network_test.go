package network

import (
	"bytes"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Flags: HdrFNeedsCsum, GSOType: GSOTCPv4 | GSOECN, HdrLen: 0x0102, GSOSize: 0x0304,
		CsumStart: 0x0506, CsumOffset: 0x0708, NumBuffers: 0x090a}
	var b [HeaderLen]byte
	if err := h.Encode(b[:]); err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 0x81, 2, 1, 4, 3, 6, 5, 8, 7, 0x0a, 9}
	if !bytes.Equal(b[:], want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
	got, err := DecodeHeader(b[:])
	if err != nil || got != h {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, h)
	}
	if _, err := DecodeHeader(b[:HeaderLen-1]); err == nil {
		t.Error("short header decoded")
	}
	if err := h.Encode(b[:3]); err == nil {
		t.Error("encoded into a short buffer")
	}
}

func TestMAC(t *testing.T) {
	m, err := ParseMAC("52:54:00:12:34:56")
	if err != nil || m.String() != "52:54:00:12:34:56" {
		t.Fatalf("ParseMAC = %v, %v", m, err)
	}
	for _, bad := range []string{"", "01:00:5e:00:00:01", "00:00:00:00:00:00", "52:54:00:12:34", "zz:54:00:12:34:56", "52:54:00:12:34:56:78:9a"} {
		if _, err := ParseMAC(bad); err == nil {
			t.Errorf("ParseMAC(%q) accepted", bad)
		}
	}
	a, b := GenerateMAC("tap:0"), GenerateMAC("tap:1")
	if a == b || a != GenerateMAC("tap:0") {
		t.Errorf("generated MACs not stable and distinct: %v %v", a, b)
	}
	if a[0]&1 != 0 || a[0]&2 == 0 {
		t.Errorf("generated MAC %v is not locally administered unicast", a)
	}
}

func TestParseHostFwd(t *testing.T) {
	f, err := ParseHostFwd("tcp:127.0.0.1:8080-:80")
	if err != nil || f.Proto != "tcp" || f.Host.String() != "127.0.0.1:8080" || f.GuestAddr.IsValid() || f.GuestPort != 80 {
		t.Fatalf("got %+v, %v", f, err)
	}
	f, err = ParseHostFwd("udp::5353-10.0.2.15:53")
	if err != nil || f.Host.String() != "127.0.0.1:5353" || f.GuestAddr.String() != "10.0.2.15" || f.GuestPort != 53 {
		t.Fatalf("got %+v, %v", f, err)
	}
	for _, bad := range []string{"", "tcp", "sctp:1-:2", "tcp:8080:80", "tcp::0-:80", "tcp::8080-:70000",
		"tcp:nothost:8080-:80", "tcp::8080-", "tcp::8080-::1:80", "tcp::8080-:x"} {
		if f, err := ParseHostFwd(bad); err == nil {
			t.Errorf("ParseHostFwd(%q) = %+v", bad, f)
		}
	}
}

func FuzzParseHostFwd(f *testing.F) {
	f.Add("tcp:127.0.0.1:8080-:80")
	f.Add("udp:[::1]:53-10.0.2.15:53")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHostFwd(s)
		if err != nil {
			return
		}
		if h.Host.Port() == 0 || h.GuestPort == 0 || !h.Host.Addr().IsValid() {
			t.Fatalf("accepted %q as %+v", s, h)
		}
	})
}
