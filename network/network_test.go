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
