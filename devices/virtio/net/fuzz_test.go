package net

import (
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
	"github.com/vmm-dev/vmm/network"
)

// FuzzTxFrame feeds guest-controlled bytes, split into up to three
// buffers, and negotiated features through the transmit path: it must never
// panic, and whatever reaches the backend must have a valid header, no
// receive-only flags and exactly the guest's frame behind it.
func FuzzTxFrame(f *testing.F) {
	seed := func(hd network.Header, n int) []byte {
		return append(hdrBytes(hd), ethFrame(n, 1)...)
	}
	all := network.OffloadFeatures
	f.Add(seed(network.Header{}, 60), uint16(5), uint16(30), uint64(0))
	f.Add(seed(network.Header{Flags: network.HdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}, 100), uint16(12), uint16(40), all)
	f.Add(seed(network.Header{Flags: network.HdrFNeedsCsum, GSOType: network.GSOTCPv4, GSOSize: 1448, HdrLen: 54, CsumStart: 34, CsumOffset: 16}, 3000), uint16(1), uint16(2), all)
	f.Add(seed(network.Header{Flags: network.HdrFNeedsCsum, CsumStart: 0xffff, CsumOffset: 0xffff}, 60), uint16(0), uint16(0), all)
	f.Add(seed(network.Header{GSOType: network.GSOTCPv6 | network.GSOECN, GSOSize: 1}, 60), uint16(3), uint16(9), all)
	f.Add([]byte{1, 2, 3}, uint16(1), uint16(2), all)
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 1 << 20}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, s1, s2 uint16, features uint64) {
		if len(data) > 1<<19 {
			return
		}
		features &= network.OffloadFeatures
		be := newFakeBackend(network.OffloadFeatures)
		be.fromGst = make(chan []byte, 1)
		d, err := New(Config{MAC: testMAC, Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		if err := mem.WriteAt(data, 0x1000); err != nil {
			t.Fatal(err)
		}
		n := uint64(len(data))
		a, b := min(uint64(s1), n), min(uint64(s2), n)
		if a > b {
			a, b = b, a
		}
		c := &queue.Chain{Descs: []queue.Desc{
			{Addr: 0x1000, Len: uint32(a)},
			{Addr: 0x1000 + a, Len: uint32(b - a)},
			{Addr: 0x1000 + b, Len: uint32(n - b)},
		}}
		r := &activation{mem: mem, features: features, done: make(chan struct{})}
		var st txState
		if err := d.transmit(r, c, &st); err != nil {
			t.Fatalf("transmit: %v", err)
		}
		select {
		case got := <-be.fromGst:
			if len(got) != len(data) {
				t.Fatalf("backend got %d bytes of %d", len(got), len(data))
			}
			h, err := network.DecodeHeader(got)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckTxHeader(h, len(got)-network.HeaderLen, features); err != nil {
				t.Fatalf("sent a frame with a bad header: %v", err)
			}
			if h.Flags&network.HdrFDataValid != 0 || h.NumBuffers != 0 {
				t.Fatalf("header not sanitized: %+v", h)
			}
			if string(got[network.HeaderLen:]) != string(data[network.HeaderLen:]) {
				t.Fatal("frame bytes changed")
			}
		default:
			h, herr := network.DecodeHeader(data)
			if herr == nil && CheckTxHeader(h, len(data)-network.HeaderLen, features) == nil {
				t.Fatal("a valid frame was dropped")
			}
		}
	})
}

// FuzzRxHeader: whatever a backend hands over, the header delivered to the
// guest only uses what the guest negotiated.
func FuzzRxHeader(f *testing.F) {
	f.Add([]byte{1, 1, 0, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0}, 1000, network.OffloadFeatures)
	f.Add([]byte{2, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9}, 60, uint64(0))
	f.Fuzz(func(t *testing.T, hb []byte, frameLen int, features uint64) {
		h, err := network.DecodeHeader(hb)
		if err != nil {
			return
		}
		out, err := checkRxHeader(h, frameLen, features)
		if err != nil {
			return
		}
		if frameLen < MinFrameLen || frameLen > MaxFrameLen || out.NumBuffers != 0 {
			t.Fatalf("accepted %+v len %d", out, frameLen)
		}
		if features&network.FGuestCsum == 0 && out != (network.Header{}) {
			t.Fatalf("offload header %+v for a guest without GUEST_CSUM", out)
		}
		if out.Flags&network.HdrFNeedsCsum != 0 && int(out.CsumStart)+int(out.CsumOffset)+2 > frameLen {
			t.Fatalf("checksum outside the frame: %+v", out)
		}
		if g := out.GSOType &^ network.GSOECN; g != network.GSONone && out.GSOSize == 0 {
			t.Fatalf("GSO without size: %+v", out)
		}
	})
}
